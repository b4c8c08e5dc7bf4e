package smartcar

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

func TestUsageCountsClientCalls(t *testing.T) {
	e := newEnv(t)
	u := NewUsage(filepath.Join(e.dir, UsageFile), e.clock.Now)
	c, _ := e.client(t, WithObserver(u))
	ctx := ctxT(t)

	if _, err := v2(c).ids(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := v2(c).vehicle(ctx, c, smartcarsim.TeslaID); err != nil {
		t.Fatal(err)
	}
	if _, err := v2(c).permissions(ctx, c, smartcarsim.TeslaID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); err != nil {
		t.Fatal(err)
	}
	e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 409})
	if _, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); err == nil {
		t.Fatal("fault not applied")
	}
	if err := c.ChargePortDoor(ctx, Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA"}, Open); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, Vehicle{ID: smartcarsim.OtherID}); err == nil {
		t.Fatal("tesla/charge of a Ford succeeded")
	}
	u.ObserveCall(TokenCall(time.Millisecond, nil))
	u.ObserveCall(TokenCall(time.Millisecond, &Error{StatusCode: 400, Type: TypeOAuth, Code: CodeInvalidGrant}))

	// Token requests are not vehicle API calls.
	snap := u.Snapshot(e.clock.Now())
	wantSnap := UsageSnapshot{Month: "2025-06", Vehicles: map[string]int{smartcarsim.TeslaID: 5, smartcarsim.OtherID: 1}, Total: 7, Today: 7}
	if !reflect.DeepEqual(snap, wantSnap) {
		t.Errorf("snapshot = %+v\nwant       %+v", snap, wantSnap)
	}
	// The ledger agrees with what Smartcar (the simulator) saw: every API
	// request, failed ones included, and each on the vehicle it addressed.
	api := map[string]int{}
	total := 0
	for _, r := range e.sim.Requests() {
		if !strings.HasPrefix(r.Path, "/v2.0/") {
			continue
		}
		total++
		for _, id := range []string{smartcarsim.TeslaID, smartcarsim.OtherID} {
			if strings.HasPrefix(r.Path, "/v2.0/vehicles/"+id) {
				api[id]++
			}
		}
	}
	if total != snap.Total || !reflect.DeepEqual(api, snap.Vehicles) {
		t.Errorf("simulator saw %d API requests %v; the ledger counts %d %v", total, api, snap.Total, snap.Vehicles)
	}
}

func TestUsageObservesEveryTry(t *testing.T) {
	e := newEnv(t)
	u := NewUsage("", e.clock.Now)
	c, _ := e.client(t, WithObserver(u), WithBackoff(0))
	e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 500, Times: 2})
	if _, err := c.Read(ctxT(t), Vehicle{ID: smartcarsim.TeslaID}); err != nil {
		t.Fatal(err)
	}
	reads := e.requestsTo("GET", "/tesla/charge")
	if len(reads) != 3 || reads[0].Status != 500 || reads[1].Status != 500 || reads[2].Status != 200 {
		t.Fatalf("reads = %+v, want 500, 500, 200", reads)
	}
	snap := u.Snapshot(e.clock.Now())
	if snap.Vehicles[smartcarsim.TeslaID] != 3 || snap.Total != 3 || snap.Today != 3 {
		t.Errorf("ledger = %+v, want 3 calls on %s: every try may be billed", snap, smartcarsim.TeslaID)
	}
}

func readLedger(t *testing.T, path string) usageLedger {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var l usageLedger
	if err := json.Unmarshal(data, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestUsagePersistsAcrossRestarts(t *testing.T) {
	clock := itest.NewClock()
	path := filepath.Join(t.TempDir(), "sub", UsageFile)
	call := Call{Endpoint: EndpointTeslaCharge, VehicleID: "v1", Outcome: OutcomeOK, Status: 200}

	u := NewUsage(path, clock.Now)
	if err := u.Load(); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	u.ObserveCall(call) // first call: written at once
	if l := readLedger(t, path); l.Total != 1 {
		t.Fatalf("file total = %d, want 1", l.Total)
	}
	u.ObserveCall(call)
	u.ObserveCall(Call{Endpoint: EndpointVehicles, Outcome: OutcomeOK})
	if l := readLedger(t, path); l.Total != 1 {
		t.Errorf("file total = %d within the minute, want 1 (writes coalesced)", l.Total)
	}
	clock.Advance(time.Minute)
	u.ObserveCall(call)
	if l := readLedger(t, path); l.Total != 4 || l.Vehicles["v1"] != 3 {
		t.Errorf("file after a minute = %+v, want total 4, v1 3", l)
	}
	u.ObserveCall(call)
	if err := u.Flush(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ledger file: %v, %v", fi.Mode(), err)
	}

	restarted := NewUsage(path, clock.Now)
	if err := restarted.Load(); err != nil {
		t.Fatal(err)
	}
	want := UsageSnapshot{Month: "2025-06", Vehicles: map[string]int{"v1": 4}, Total: 5, Today: 5}
	if got := restarted.Snapshot(clock.Now()); !reflect.DeepEqual(got, want) {
		t.Errorf("after restart = %+v, want %+v", got, want)
	}
	restarted.ObserveCall(call)
	if got := restarted.Snapshot(clock.Now()).Vehicles["v1"]; got != 5 {
		t.Errorf("v1 = %d, want 5: the month's count carries on", got)
	}
}

func TestUsageRollsOver(t *testing.T) {
	clock := itest.NewClock()
	clock.Advance(29*24*time.Hour + 11*time.Hour + 59*time.Minute) // 2025-06-30 23:59 UTC
	path := filepath.Join(t.TempDir(), UsageFile)
	call := Call{Endpoint: EndpointTeslaCharge, VehicleID: "v1", Outcome: OutcomeOK}

	u := NewUsage(path, clock.Now)
	u.ObserveCall(call)
	u.ObserveCall(call)
	if err := u.Flush(); err != nil {
		t.Fatal(err)
	}
	// July 1 01:59 in UTC+2 is still June in UTC: months follow UTC.
	local := clock.Now().In(time.FixedZone("CEST", 2*3600))
	if got := u.Snapshot(local); got.Month != "2025-06" || got.Total != 2 {
		t.Errorf("at %s: %+v, want June's 2", local, got)
	}

	clock.Advance(2 * time.Minute) // 2025-07-01 00:01 UTC
	if got := u.Snapshot(clock.Now()); got.Month != "2025-07" || got.Total != 0 || got.Today != 0 || len(got.Vehicles) != 0 {
		t.Errorf("July before any call = %+v, want zeros", got)
	}
	// A restart in July starts from zero too, though the file says June.
	fresh := NewUsage(path, clock.Now)
	if err := fresh.Load(); err != nil {
		t.Fatal(err)
	}
	if got := fresh.Snapshot(clock.Now()); got.Total != 0 {
		t.Errorf("July after restart = %+v", got)
	}
	u.ObserveCall(call)
	want := UsageSnapshot{Month: "2025-07", Vehicles: map[string]int{"v1": 1}, Total: 1, Today: 1}
	if got := u.Snapshot(clock.Now()); !reflect.DeepEqual(got, want) {
		t.Errorf("July = %+v, want %+v", got, want)
	}

	// A new day resets today, not the month.
	clock.Advance(24 * time.Hour)
	u.ObserveCall(call)
	want = UsageSnapshot{Month: "2025-07", Vehicles: map[string]int{"v1": 2}, Total: 2, Today: 1}
	if got := u.Snapshot(clock.Now()); !reflect.DeepEqual(got, want) {
		t.Errorf("next day = %+v, want %+v", got, want)
	}
	if err := u.Flush(); err != nil {
		t.Fatal(err)
	}
	if l := readLedger(t, path); l.Month != "2025-07" || l.Total != 2 || l.Day != "2025-07-02" {
		t.Errorf("file = %+v", l)
	}
}

func TestUsageSummary(t *testing.T) {
	clock := itest.NewClock()
	u := NewUsage("", clock.Now)
	if got, want := u.Summary(clock.Now()), "Smartcar calls this month (2025-06): no vehicle calls; all: 0; today: 0"; got != want {
		t.Errorf("empty summary = %q\nwant %q", got, want)
	}
	for range 3 {
		u.ObserveCall(Call{Endpoint: EndpointTeslaCharge, VehicleID: "vb", Outcome: OutcomeOK})
	}
	u.ObserveCall(Call{Endpoint: EndpointVehicle, VehicleID: "va", Outcome: OutcomeOK})
	u.ObserveCall(Call{Endpoint: EndpointVehicles, Outcome: OutcomeOK})
	clock.Advance(24 * time.Hour)
	u.ObserveCall(Call{Endpoint: EndpointTeslaCharge, VehicleID: "vb", Outcome: TypeVehicleState})
	want := "Smartcar calls this month (2025-06): va: 1, vb: 4; all: 6; today: 1"
	if got := u.Summary(clock.Now()); got != want {
		t.Errorf("summary = %q\nwant      %q", got, want)
	}
}

func TestUsageBadFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, UsageFile)
	if err := os.WriteFile(path, []byte(`{"month":`), 0o600); err != nil {
		t.Fatal(err)
	}
	u := NewUsage(path, itest.NewClock().Now)
	if err := u.Load(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt ledger: err = %v, want one naming the file", err)
	}
	u.ObserveCall(Call{Endpoint: EndpointVehicle, VehicleID: "v", Outcome: OutcomeOK})
	if err := u.Flush(); err != nil {
		t.Errorf("counting after a corrupt file: %v", err)
	}

	// A file where the directory should be: the write fails, Flush says so.
	blocked := filepath.Join(dir, "file")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	u = NewUsage(filepath.Join(blocked, UsageFile), itest.NewClock().Now)
	u.ObserveCall(Call{Endpoint: EndpointVehicle, VehicleID: "v", Outcome: OutcomeOK})
	if err := u.Flush(); err == nil || !strings.Contains(err.Error(), "save call ledger") {
		t.Errorf("Flush = %v, want the write error", err)
	}
	if got := u.Snapshot(itest.NewClock().Now()).Total; got != 1 {
		t.Errorf("in-memory total = %d, want 1 despite the failed write", got)
	}
}

// Token refreshes reach the same observer as API calls, with their outcome.
func TestTokensReportRefreshes(t *testing.T) {
	e := newEnv(t)
	obs := newCallLog()
	u := NewUsage("", e.clock.Now)
	tokens := e.tokens(t, WithTokenObserver(CallObservers{obs, u}))
	if _, err := tokens.Token(); err != nil {
		t.Fatal(err)
	}
	e.sim.InjectFault(smartcarsim.Fault{Method: "POST", Path: "/oauth/token", Status: 400, Type: TypeOAuth, Code: CodeInvalidGrant})
	tokens.Invalidate()
	if _, err := tokens.Token(); !IsInvalidGrant(err) {
		t.Fatalf("Token() = %v, want invalid_grant", err)
	}
	calls := obs.all()
	if len(calls) != 2 || calls[0].Endpoint != EndpointToken || calls[0].Outcome != OutcomeOK ||
		calls[1].Endpoint != EndpointToken || calls[1].Outcome != TypeOAuth || calls[1].Status != 400 {
		t.Errorf("observed %+v, want a token call ok, then one refused (OAUTH, 400)", calls)
	}
	if n := e.tokenRequests(); n != 2 {
		t.Errorf("the simulator saw %d token requests, want 2", n)
	}
	// Token requests are not vehicle API calls: the ledger stays empty.
	if snap := u.Snapshot(e.clock.Now()); snap.Total != 0 || snap.Today != 0 || len(snap.Vehicles) != 0 {
		t.Errorf("ledger = %+v, want no calls", snap)
	}
}

func TestUsageReportsOnEachTick(t *testing.T) {
	e := newEnv(t)
	u := NewUsage("", e.clock.Now)
	u.ObserveCall(Call{Endpoint: EndpointTeslaCharge, VehicleID: "V1", Outcome: OutcomeOK, Status: 200})
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan string)
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.Report(ctx, time.Millisecond, func(s string) {
			select {
			case reports <- s:
			case <-ctx.Done():
			}
		})
	}()
	select {
	case s := <-reports:
		if !strings.Contains(s, "V1: 1") {
			t.Errorf("summary %q does not count V1's call", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Report did not return when its context ended")
	}
}
