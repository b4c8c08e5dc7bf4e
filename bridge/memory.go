package bridge

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/atomicfile"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// memory keeps one vehicle's last known door state in DATA_DIR, so that a restart
// publishes it at once and waits for the poll that is due instead of spending a
// Smartcar call to learn what it already knew.
type memory struct {
	path string
}

type savedState struct {
	State      string       `json:"state"`
	Attributes attributes   `json:"attributes"`
	KnownAt    time.Time    `json:"known_at"`         // when the state was last learned from the car
	Charge     *savedCharge `json:"charge,omitempty"` // the last successful read
	ReadAt     time.Time    `json:"read_at"`
}

// savedCharge is the last read as kept on disk. Files written before API v3
// hold the charge limit as v2.0's fraction, socLimit; it is read into percent.
type savedCharge struct {
	smartcar.ChargeState
	SocLimit *float64 `json:"socLimit,omitempty"`
}

func (c *savedCharge) state() *smartcar.ChargeState {
	if c == nil {
		return nil
	}
	st := c.ChargeState
	if st.LimitPercent == nil && c.SocLimit != nil {
		st.LimitPercent = new(smartcar.PercentFromFraction(*c.SocLimit))
	}
	return &st
}

func saveCharge(st *smartcar.ChargeState) *savedCharge {
	if st == nil {
		return nil
	}
	return &savedCharge{ChargeState: *st}
}

func newMemory(dir, vehicleID string) *memory {
	if dir == "" {
		return nil
	}
	// Vehicle ids are [a-zA-Z0-9_-]+ (discovery checks), safe as a file name.
	return &memory{path: filepath.Join(dir, "state-"+vehicleID+".json")}
}

func (m *memory) load(log logrus.FieldLogger) (savedState, bool) {
	var s savedState
	if m == nil {
		return s, false
	}
	data, err := os.ReadFile(m.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.WithError(err).Warn("cannot read the saved door state; starting afresh")
		}
		return s, false
	}
	if err := json.Unmarshal(data, &s); err != nil || s.State == "" {
		log.WithError(err).Warn("ignoring an unreadable saved door state")
		return savedState{}, false
	}
	return s, true
}

func (m *memory) save(log logrus.FieldLogger, s savedState) {
	if m == nil {
		return
	}
	data, err := json.Marshal(s)
	if err == nil {
		err = atomicfile.Write(m.path, data, 0o600)
	}
	if err != nil {
		log.WithError(err).Warn("cannot save the door state; a restart will read it again")
	}
}
