package smartcar

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// apiRequests counts the requests the simulator saw under /v2.0 (vehicle
// list, info, permissions …), token requests left out.
func (e *env) apiRequests() int {
	n := 0
	for _, r := range e.sim.Requests() {
		if strings.HasPrefix(r.Path, "/v2.0/") {
			n++
		}
	}
	return n
}

// What `auth` lists goes into the cache, and the daemon's next start (with or
// without SMARTCAR_VEHICLE_IDS) reads it from there: no Smartcar call.
func TestFleetCacheAfterAuthServesDaemonStart(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	ctx := ctxT(t)
	path := filepath.Join(e.dir, FleetFile)

	// auth: forget what an earlier login saw, list afresh through the cache.
	auth := FleetCache{Path: path, Now: e.clock.Now}
	if err := auth.Forget(); err != nil {
		t.Fatal(err)
	}
	all, err := auth.Vehicles(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("auth listed %+v, want the simulator's two vehicles", all)
	}
	if n := e.apiRequests(); n != 1+2*2 {
		t.Fatalf("auth made %d API requests, want 1 + 2 per vehicle", n)
	}

	e.clock.Advance(time.Hour)
	daemon := FleetCache{Path: path, MaxAge: 24 * time.Hour, Now: e.clock.Now}
	got, err := daemon.Vehicles(ctx, c, nil)
	if err != nil || !reflect.DeepEqual(got, all) {
		t.Errorf("daemon start = %+v, %v; want what auth listed", got, err)
	}
	only, err := daemon.Vehicles(ctx, c, []string{smartcarsim.TeslaID})
	if err != nil || len(only) != 1 || only[0].ID != smartcarsim.TeslaID || !reflect.DeepEqual(only[0], all[0]) {
		t.Errorf("daemon start for %s only = %+v, %v", smartcarsim.TeslaID, only, err)
	}
	// The filtered answer did not narrow the file: all vehicles still served.
	if got, err := daemon.Vehicles(ctx, c, nil); err != nil || len(got) != 2 {
		t.Errorf("after a filtered read, all = %+v, %v", got, err)
	}
	if n := e.apiRequests(); n != 5 {
		t.Errorf("daemon starts made %d API requests, want none", n-5)
	}
}

// A cache fetched for some vehicles cannot answer for others, nor for all.
func TestFleetCacheFilteredFetchIsNotEnough(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	ctx := ctxT(t)
	f := FleetCache{Path: filepath.Join(e.dir, FleetFile), MaxAge: time.Hour, Now: e.clock.Now}

	if vs, err := f.Vehicles(ctx, c, []string{smartcarsim.TeslaID}); err != nil || len(vs) != 1 {
		t.Fatalf("Tesla only = %+v, %v", vs, err)
	}
	if n := e.apiRequests(); n != 1+2 {
		t.Fatalf("%d API requests, want 1 + 2", n)
	}
	if vs, err := f.Vehicles(ctx, c, []string{smartcarsim.OtherID}); err != nil || len(vs) != 1 || vs[0].ID != smartcarsim.OtherID {
		t.Fatalf("Ford only = %+v, %v", vs, err)
	}
	if n := e.apiRequests(); n != 2*(1+2) {
		t.Errorf("%d API requests, want another 1 + 2 for the Ford", n)
	}
	if vs, err := f.Vehicles(ctx, c, nil); err != nil || len(vs) != 2 {
		t.Fatalf("all = %+v, %v", vs, err)
	}
	if n := e.apiRequests(); n != 2*(1+2)+1+2*2 {
		t.Errorf("%d API requests, want a full listing after the Ford-only one", n)
	}
}
