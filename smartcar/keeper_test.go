package smartcar

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

func ids(vs []VehicleDetails) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID
	}
	slices.Sort(out)
	return out
}

// A vehicle is removed only once Smartcar positively lacks it in two successful
// listings in a row; an empty or failed listing counts for nothing, and a car
// that comes back in between starts again from zero.
func TestRefreshRemovesOnlyAfterTwoListingsLackIt(t *testing.T) {
	e := newEnv(t)
	c, _ := e.v3Client()
	ctx := ctxT(t)
	f := FleetCache{Path: filepath.Join(e.dir, FleetFile), Now: e.clock.Now}
	both := []string{smartcarsim.OtherID, smartcarsim.TeslaID}
	slices.Sort(both)

	listing := func(suspects ...string) Update {
		t.Helper()
		u, err := f.Refresh(ctx, c, nil, suspects, true)
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		return u
	}
	if u := listing(); !slices.Equal(ids(u.Vehicles), both) || len(u.Gone) != 0 {
		t.Fatalf("first listing = %v gone %v", ids(u.Vehicles), u.Gone)
	}
	e.sim.RemoveVehicle(smartcarsim.OtherID)
	if u := listing(); !slices.Equal(ids(u.Vehicles), both) || len(u.Gone) != 0 {
		t.Fatalf("one listing without the Ford removed it: %v gone %v", ids(u.Vehicles), u.Gone)
	}
	// Back in between: the count starts again.
	e.sim.AddVehicle(smartcarsim.Vehicle{ID: smartcarsim.OtherID, Make: "FORD", Model: "Mustang Mach-E", Year: 2022}, []string{PermReadCharge})
	listing()
	e.sim.RemoveVehicle(smartcarsim.OtherID)
	if u := listing(); len(u.Gone) != 0 {
		t.Fatalf("gone after one listing since it came back: %v", u.Gone)
	}
	// An empty account proves nothing, and a failed listing says nothing.
	e.sim.RemoveVehicle(smartcarsim.TeslaID)
	if u := listing(); len(u.Gone) != 0 || !slices.Equal(ids(u.Vehicles), both) {
		t.Fatalf("an empty listing changed the fleet: %v gone %v", ids(u.Vehicles), u.Gone)
	}
	e.sim.AddVehicle(smartcarsim.Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA", Model: "Model 3", Year: 2021}, []string{PermReadCharge, PermControlCharge})
	e.sim.InjectFault(smartcarsim.Fault{Path: "/connections", Status: 500, Times: -1})
	if _, err := f.Refresh(ctx, c, nil, nil, true); err == nil {
		t.Fatal("a listing answered 500 did not fail")
	}
	e.sim.ClearFaults()
	u := listing()
	if !slices.Equal(u.Gone, []string{smartcarsim.OtherID}) || !slices.Equal(ids(u.Vehicles), []string{smartcarsim.TeslaID}) {
		t.Fatalf("second successful listing without the Ford: vehicles %v gone %v, want the Ford gone", ids(u.Vehicles), u.Gone)
	}
	// A vehicle only Home Assistant remembers is counted the same way.
	const old = "0d6f1e2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"
	if u := listing(old); len(u.Gone) != 0 {
		t.Fatalf("a car Home Assistant remembers was removed after one listing: %v", u.Gone)
	}
	if u := listing(); !slices.Equal(u.Gone, []string{old}) {
		t.Fatalf("after two listings without it: gone %v, want %s", u.Gone, old)
	}
}

// A filter naming an id the account lacks is a typo: an error naming it and
// the account's ids, from the cache before any call, or from a listing; a car
// the filter leaves out while on the account goes at once.
func TestFilterTypoIsAnErrorAndDeselectedCarsGo(t *testing.T) {
	e := newEnv(t)
	c, _ := e.v3Client()
	ctx := ctxT(t)
	f := FleetCache{Path: filepath.Join(e.dir, FleetFile), Now: e.clock.Now}
	if _, err := f.Refresh(ctx, c, nil, nil, true); err != nil {
		t.Fatal(err)
	}
	calls := len(e.sim.Requests())
	var unknown *UnknownVehiclesError
	_, err := f.Known(V3, []string{smartcarsim.TeslaID, "typo-id"})
	if !errors.As(err, &unknown) || !slices.Equal(unknown.Unknown, []string{"typo-id"}) {
		t.Fatalf("Known with a typo = %v", err)
	}
	for _, want := range []string{`"typo-id"`, smartcarsim.TeslaID, smartcarsim.OtherID, "SMARTCAR_VEHICLE_IDS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %s", err, want)
		}
	}
	if n := len(e.sim.Requests()); n != calls {
		t.Errorf("checking the filter against the cache made %d calls", n-calls)
	}
	if _, err := f.Refresh(ctx, c, []string{"typo-id"}, nil, true); !errors.As(err, &unknown) {
		t.Fatalf("listing with a typo = %v, want *UnknownVehiclesError", err)
	}
	u, err := f.Refresh(ctx, c, []string{smartcarsim.TeslaID}, nil, true)
	if err != nil || !slices.Equal(u.Gone, []string{smartcarsim.OtherID}) || !slices.Equal(ids(u.Vehicles), []string{smartcarsim.TeslaID}) {
		t.Fatalf("narrowed filter: %v gone %v, %v", ids(u.Vehicles), u.Gone, err)
	}
}

// Known answers from a cache of any age, and says when a listing is due at
// once: never listed, or a filtered car missing.
func TestKnownServesAnyAge(t *testing.T) {
	e := newEnv(t)
	c, _ := e.v3Client()
	f := FleetCache{Path: filepath.Join(e.dir, FleetFile), Now: e.clock.Now}
	if k, err := f.Known(V3, nil); err != nil || !k.ListedAt.IsZero() || len(k.Vehicles) != 0 {
		t.Fatalf("no cache: %+v, %v", k, err)
	}
	if _, err := f.Refresh(ctxT(t), c, []string{smartcarsim.TeslaID}, nil, true); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * 24 * time.Hour)
	k, err := f.Known(V3, []string{smartcarsim.TeslaID})
	if err != nil || !k.Complete || len(k.Vehicles) != 1 || k.ListedAt.IsZero() {
		t.Fatalf("a month-old cache: %+v, %v", k, err)
	}
	if k, _ := f.Known(V3, nil); k.Complete {
		t.Errorf("a cache listed for one car claims to hold all")
	}
	if k, _ := f.Known(V3, []string{smartcarsim.TeslaID}); !slices.Equal(k.Deselected, []string{smartcarsim.OtherID}) {
		t.Errorf("deselected = %v, want the Ford the filter leaves out", k.Deselected)
	}
	if k, _ := f.Known(V2, nil); !k.ListedAt.IsZero() {
		t.Errorf("a v3 cache answered for v2.0: %+v", k)
	}
	os.WriteFile(f.Path, []byte("{torn"), 0o600)
	if _, err := f.Known(V3, nil); err == nil {
		t.Errorf("a torn cache read without an error")
	}
}

// keeperEvent is one thing a keeper handed over: an update, or trouble.
type keeperEvent struct {
	update  *Update
	trouble error
}

func recordKeeper(r *itest.Record[keeperEvent]) KeeperOptions {
	return KeeperOptions{
		Look: 5 * time.Millisecond, MinRetry: 5 * time.Millisecond, MaxRetry: 20 * time.Millisecond,
		Changed: func(u Update) { r.Add(keeperEvent{update: &u}) },
		Trouble: func(err error, _ time.Duration) { r.Add(keeperEvent{trouble: err}) },
	}
}

// The keeper lists at once when nothing is known, keeps trying while
// Smartcar fails (saying so once), picks up a cache `auth` rewrote, and stops
// the daemon only for a filter typo.
func TestKeeperListsInTheBackground(t *testing.T) {
	e := newEnv(t)
	c, _ := e.v3Client()
	f := FleetCache{Path: filepath.Join(e.dir, FleetFile)}
	e.sim.InjectFault(smartcarsim.Fault{Path: "/connections", Status: 503, Times: 7})
	var events itest.Record[keeperEvent]
	k := NewFleetKeeper(f, c, nil, recordKeeper(&events))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx, Known{}) }()

	got := events.WaitFor(t, "a listing after the outage", 10*time.Second, func(es []keeperEvent) bool {
		return slices.ContainsFunc(es, func(e keeperEvent) bool { return e.update != nil })
	})
	if len(got) != 2 || got[0].trouble == nil || len(got[1].update.Vehicles) != 2 {
		t.Errorf("an outage then a listing handed over %+v, want one trouble report then the two cars", got)
	}

	// `auth` connects a car and rewrites the cache: handed over without a call.
	calls := len(e.sim.Requests())
	if err := f.Save(V3, []VehicleDetails{{Vehicle: Vehicle{ID: "new-car", UserID: "u"}}}); err != nil {
		t.Fatal(err)
	}

	// Written at once after the listing, within the file system's timestamp
	// tick: seen all the same.
	events.WaitFor(t, "the cache auth wrote", 10*time.Second, func(es []keeperEvent) bool {
		return slices.ContainsFunc(es, func(e keeperEvent) bool {
			return e.update != nil && len(e.update.Vehicles) == 1 && e.update.Vehicles[0].ID == "new-car"
		})
	})
	if n := len(e.sim.Requests()); n != calls {
		t.Errorf("picking up auth's cache made %d calls", n-calls)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v", err)
	}

	typo := NewFleetKeeper(f, c, []string{"typo-id"}, recordKeeper(&events))
	var unknown *UnknownVehiclesError
	if err := typo.Run(ctxT(t), Known{}); !errors.As(err, &unknown) {
		t.Errorf("Run with a typo in the filter = %v, want *UnknownVehiclesError", err)
	}
}

// A daily refresh through API v2.0 costs one call (the list), not one plus two
// per car: the cars it knows keep their details. After Smartcar answered that
// what we know is stale, the listing asks for everything again.
func TestV2DailyRefreshCostsOneCall(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	ctx := ctxT(t)
	f := FleetCache{Path: filepath.Join(e.dir, FleetFile), Now: e.clock.Now}
	if _, err := f.Refresh(ctx, c, nil, nil, true); err != nil {
		t.Fatal(err)
	}
	first := e.apiRequests()
	if first != 1+2*2 {
		t.Fatalf("first listing: %d API requests, want 1 + 2 per car", first)
	}
	u, err := f.Refresh(ctx, c, nil, nil, true)
	if err != nil || len(u.Vehicles) != 2 || len(u.Vehicles[0].Permissions) == 0 {
		t.Fatalf("daily refresh = %+v, %v", u, err)
	}
	if n := e.apiRequests() - first; n != 1 {
		t.Errorf("daily refresh: %d API requests, want 1", n)
	}
	before := e.apiRequests()
	if _, err := f.Refresh(ctx, c, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if n := e.apiRequests() - before; n != 1+2*2 {
		t.Errorf("listing after a stale answer: %d API requests, want 1 + 2 per car", n)
	}
}

// Connect on the web page saves the listing and asks for a look at once; a
// new v2.0 login asks for a listing at once, even right after one.
func TestKeeperLooksAndListsWhenAsked(t *testing.T) {
	e := newEnv(t)
	c, _ := e.v3Client()
	f := FleetCache{Path: filepath.Join(e.dir, FleetFile)}
	var events itest.Record[keeperEvent]
	opts := recordKeeper(&events)
	opts.Look = time.Hour // only LookNow can see the new cache in time
	k := NewFleetKeeper(f, c, nil, opts)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go k.Run(ctx, Known{})
	// An update of n cars among the events after the first from.
	hasUpdate := func(from, n int) func([]keeperEvent) bool {
		return func(es []keeperEvent) bool {
			return slices.ContainsFunc(es[from:], func(e keeperEvent) bool { return e.update != nil && len(e.update.Vehicles) == n })
		}
	}
	events.WaitFor(t, "the first listing", 10*time.Second, hasUpdate(0, 2))

	calls := len(e.sim.Requests())
	if err := f.Save(V3, []VehicleDetails{{Vehicle: Vehicle{ID: "web-car", UserID: "u"}}}); err != nil {
		t.Fatal(err)
	}
	k.LookNow()
	events.WaitFor(t, "the cache Connect saved", 10*time.Second, hasUpdate(0, 1))
	if n := len(e.sim.Requests()); n != calls {
		t.Errorf("looking at the cache made %d calls", n-calls)
	}

	from := events.Len()
	k.ListNow()
	// The two cars of the account, and the saved one a single listing does not remove.
	events.WaitFor(t, "a listing asked for right after one", 10*time.Second, hasUpdate(from, 3))
	if n := len(e.sim.Requests()); n != calls+1 {
		t.Errorf("ListNow made %d calls, want 1", n-calls)
	}
}
