package bridge

import (
	"strings"
	"testing"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// A car on the account with neither the door command nor the charge read (the
// simulator's Ford under API v2.0) gets no worker, yet the bridge announces it:
// Status must list it, whether the listing brought it or the cache did.
func TestStatusListsVehiclesWithoutAWorker(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	logs := newLogWatch(t)
	e.log = logs.logger
	run := e.startBridge()
	ready(e.recorder(base+"/#"), "closed")
	// Logged once the fleet holds it.
	logs.waitFor(t, "that the Ford is found, with nothing to announce", func(l logEntry) bool {
		return l.Fields["vehicle"] == smartcarsim.OtherID && strings.Contains(l.Message, "nothing to announce to Home Assistant")
	})
	checkFord(t, "after the listing", run.bridge.Status())

	// Next start: both come from the cache, before any listing or worker.
	run.stop(t)
	e.log = nil
	checkFord(t, "from the cache", e.startBridge().bridge.Status())
}

func checkFord(t *testing.T, when string, s Status) {
	t.Helper()
	var ford *VehicleStatus
	ids := []string{}
	for i, v := range s.Vehicles {
		ids = append(ids, v.ID)
		if v.ID == smartcarsim.OtherID {
			ford = &s.Vehicles[i]
		}
	}
	if len(s.Vehicles) != 2 || ford == nil {
		t.Fatalf("%s: Status lists %v, want the Tesla and the Ford", when, ids)
	}
	if ford.Make != "FORD" || ford.Model != "Mustang Mach-E" || ford.Year != 2022 || !ford.Unbridged || ford.Available || ford.HasDoor || ford.Door != "" || ford.Charge != nil {
		t.Errorf("%s: the Ford's status = %+v, want FORD Mustang Mach-E 2022, available, with no door and no charge read", when, *ford)
	}
}
