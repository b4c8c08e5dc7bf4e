package smartcar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/atomicfile"
)

// UsageFile is the call ledger's file name inside DATA_DIR.
const UsageFile = "usage.json"

// usageFlushEvery coalesces ledger writes: an fsync per call would be
// wasteful, and losing up to a minute of counts in a crash only makes the
// month's total a little low.
const usageFlushEvery = time.Minute

// Usage counts Smartcar calls per vehicle for the current calendar month
// (UTC), which is what Smartcar bills, persisted so the month's total
// survives restarts. It is a CallObserver and safe for concurrent use.
// (Counts by endpoint and outcome, for /metrics, are status.Metrics's.)
//
// Every API request counts, whatever its outcome: Smartcar may bill a failed
// one, and a count that errs high is the safe side of a quota. Token requests
// are not counted: they are not vehicle API calls.
type Usage struct {
	path string // "" keeps the ledger in memory only
	now  func() time.Time

	mu        sync.Mutex
	ledger    usageLedger
	dirty     bool
	lastWrite time.Time
	writeErr  error // last failed write, reported by Flush
}

// usageLedger is the file format.
type usageLedger struct {
	Month    string         `json:"month"` // "2006-01", UTC
	Total    int            `json:"total"` // every API call this month, vehicle list included
	Vehicles map[string]int `json:"vehicles"`
	Day      string         `json:"day"` // "2006-01-02", UTC
	Today    int            `json:"today"`
}

// UsageSnapshot is the ledger as of one moment.
type UsageSnapshot struct {
	Month    string         // "2006-01", UTC
	Vehicles map[string]int // calls this month per vehicle id
	Total    int            // calls this month, app-wide
	Today    int            // calls today (UTC), app-wide
}

// NewUsage returns an empty ledger kept in path (e.g. DATA_DIR/usage.json;
// "" for memory only). now is the clock (time.Now when nil). Call Load to
// pick up the month so far.
func NewUsage(path string, now func() time.Time) *Usage {
	if now == nil {
		now = time.Now
	}
	return &Usage{path: path, now: now}
}

// Load reads the ledger file. A missing file is an empty ledger. A file that
// does not parse is reported; counting restarts at zero and the next write
// replaces it, since a lost count is better than no count.
func (u *Usage) Load() error {
	if u.path == "" {
		return nil
	}
	data, err := os.ReadFile(u.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load call ledger: %w", err)
	}
	var l usageLedger
	if err := json.Unmarshal(data, &l); err != nil {
		return fmt.Errorf("load call ledger %s: %w", u.path, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ledger = l
	u.rollLocked(u.now())
	return nil
}

// ObserveCall counts c and writes the ledger if the last write is a minute
// old or more.
func (u *Usage) ObserveCall(c Call) {
	if c.Endpoint == EndpointToken {
		return
	}
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rollLocked(now)
	u.ledger.Total++
	u.ledger.Today++
	if c.VehicleID != "" {
		if u.ledger.Vehicles == nil {
			u.ledger.Vehicles = map[string]int{}
		}
		u.ledger.Vehicles[c.VehicleID]++
	}
	u.dirty = true
	if now.Sub(u.lastWrite) >= usageFlushEvery {
		u.writeLocked(now)
	}
}

// Flush writes the ledger if it changed since the last write; call it on
// shutdown. It reports the last write error, if any.
func (u *Usage) Flush() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.dirty {
		u.writeLocked(u.now())
	}
	return u.writeErr
}

// Snapshot returns the month's and day's totals as of now. Counts from an
// earlier month or day read as zero.
func (u *Usage) Snapshot(now time.Time) UsageSnapshot {
	u.mu.Lock()
	defer u.mu.Unlock()
	month, day := usagePeriods(now)
	s := UsageSnapshot{Month: month, Vehicles: map[string]int{}}
	if u.ledger.Month != month {
		return s
	}
	maps.Copy(s.Vehicles, u.ledger.Vehicles)
	s.Total = u.ledger.Total
	if u.ledger.Day == day {
		s.Today = u.ledger.Today
	}
	return s
}

// Summary is the daily log line, e.g.
// "Smartcar calls this month (2025-06): V1: 12, V2: 3; all: 17; today: 4".
func (u *Usage) Summary(now time.Time) string {
	s := u.Snapshot(now)
	var b strings.Builder
	b.WriteString("Smartcar calls this month (")
	b.WriteString(s.Month)
	b.WriteString("): ")
	ids := slices.Sorted(maps.Keys(s.Vehicles))
	if len(ids) == 0 {
		b.WriteString("no vehicle calls")
	}
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(id)
		b.WriteString(": ")
		b.WriteString(strconv.Itoa(s.Vehicles[id]))
	}
	fmt.Fprintf(&b, "; all: %d; today: %d", s.Total, s.Today)
	return b.String()
}

// rollLocked starts a new month or day when now has moved past the ledger's.
func (u *Usage) rollLocked(now time.Time) {
	month, day := usagePeriods(now)
	if u.ledger.Month != month {
		u.ledger = usageLedger{Month: month, Day: day}
		u.dirty = true
	}
	if u.ledger.Day != day {
		u.ledger.Day, u.ledger.Today = day, 0
		u.dirty = true
	}
}

// writeLocked persists the ledger atomically. A failure is kept for Flush,
// and the ledger stays dirty so a later call tries again.
func (u *Usage) writeLocked(now time.Time) {
	u.lastWrite = now
	if u.path == "" {
		u.dirty = false
		return
	}
	data, err := json.MarshalIndent(u.ledger, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(u.path), 0o700)
	}
	if err == nil {
		err = atomicfile.Write(u.path, data, 0o600)
	}
	if err != nil {
		u.writeErr = fmt.Errorf("save call ledger %s: %w", u.path, err)
		return
	}
	u.dirty, u.writeErr = false, nil
}

// usagePeriods names now's calendar month and day in UTC, Smartcar's billing
// clock.
func usagePeriods(now time.Time) (month, day string) {
	now = now.UTC()
	return now.Format("2006-01"), now.Format("2006-01-02")
}

// Report hands the summary to report once every interval until ctx ends: the
// daily log line with the month's running totals.
func (u *Usage) Report(ctx context.Context, every time.Duration, report func(summary string)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			report(u.Summary(u.now()))
		}
	}
}
