package bridge

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Every refresh rotates the refresh token and the simulator refuses a used one, so a
// restart works only if the rotated pair reached DATA_DIR before it was used.
func TestRestartAfterTokenRotation(t *testing.T) {
	// Access tokens shorter than the early-refresh window: every call refreshes.
	e := newEnv(t, "mochi", smartcarsim.Options{AccessTTL: time.Minute})
	first := e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	user.publish(teslaTopics.Command, false, "OPEN")
	n = user.waitPayload(n, teslaTopics.State, "open")
	first.stop(t)

	e.seed = "" // only the token store can start the second run
	before := len(e.sim.Requests())
	e.startBridge()
	user.waitPayload(n, discovery.StatusTopic(base), "online")
	// The command needs a refresh with the stored, rotated refresh token.
	user.publish(teslaTopics.Command, false, "CLOSE")
	user.waitPayload(n, teslaTopics.State, "closed")

	refreshes := 0
	for _, r := range e.sim.Requests()[before:] {
		if r.Path == "/oauth/token" {
			refreshes++
		}
	}
	if refreshes == 0 {
		t.Fatal("the second run made no refresh: the test proves nothing")
	}
	refused := 0
	for _, r := range e.sim.Requests() {
		if r.Path == "/oauth/token" && r.Status != 200 {
			refused++
		}
	}
	if refused != 0 {
		t.Errorf("the token endpoint refused %d refreshes", refused)
	}
}

func TestShutdownPublishesOfflineQuickly(t *testing.T) {
	forEachBroker(t, smartcarsim.Options{Latency: time.Hour}, func(t *testing.T, e *env) {
		run := e.startBridge()
		user := e.recorder(base + "/#")
		n := ready(user, "closed")
		// A command stuck at the car must not hold the stop beyond the grace.
		user.publish(teslaTopics.Command, false, "OPEN")
		n = user.waitPayload(n, teslaTopics.State, "opening")
		start := time.Now()
		run.stop(t)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("stop took %s, SPEC says under 10 s", d)
		}
		user.waitPayload(n, discovery.StatusTopic(base), "offline")
	})
}

// New refuses what discovery would: a vehicle id Home Assistant cannot take (which
// would also name its state file), or settings without an origin name.
func TestNewTakesOnlyWhatDiscoveryTakes(t *testing.T) {
	good := Options{
		MQTT: MQTTOptions{URL: "tcp://127.0.0.1:1883", ClientID: "x"}, BaseTopic: base, DiscoveryPrefix: prefix,
		HAStatusTopic: haStatus, Origin: discovery.Origin{Name: "smartcar2mqtt"}, DataDir: t.TempDir(), Log: testLog(t),
	}
	car := func(id string) []Vehicle {
		return []Vehicle{{Vehicle: smartcar.Vehicle{ID: id, Make: "TESLA"}, Permissions: []string{"read_charge", "control_charge"}}}
	}
	if _, err := New(nil, car(tesla), good); err != nil {
		t.Fatalf("New with a valid vehicle: %v", err)
	}
	// A bad id from the account costs that vehicle only: no worker, no state file
	// path built from it, no discovery; the others are served.
	b, err := New(nil, append(car("../evil id"), car(tesla)...), good)
	if err != nil {
		t.Fatalf("New with one invalid vehicle id among good ones: %v", err)
	}
	if f := b.fleet.Load(); len(f.workers) != 1 || f.workers[tesla] == nil || len(f.configs) != 1 {
		t.Errorf("workers %v, %d configs: want only %s", slices.Collect(maps.Keys(f.workers)), len(f.configs), tesla)
	}
	noName := good
	noName.Origin.Name = ""
	if _, err := New(nil, car(tesla), noName); err == nil {
		t.Error("New without an origin name: no error")
	}
}

// A retained config of an earlier run is removed only when the account lists other
// cars but not this one: an empty listing (an account moved to API v3 before its cars
// were connected again) proves nothing, and the user's devices stay.
func TestEmptyListingRemovesNothing(t *testing.T) {
	opts := Options{
		MQTT: MQTTOptions{URL: "tcp://127.0.0.1:1883", ClientID: "x"}, BaseTopic: base, DiscoveryPrefix: prefix,
		HAStatusTopic: haStatus, Origin: discovery.Origin{Name: "smartcar2mqtt"}, Log: testLog(t),
	}
	ours := []byte(`{"avty":[{"t":"` + discovery.StatusTopic(base) + `"}]}`)
	for _, tt := range []struct {
		name     string
		vehicles []Vehicle
		removed  bool
	}{
		{"empty listing", nil, false},
		{"another car listed", []Vehicle{{Vehicle: smartcar.Vehicle{ID: "other", Make: "TESLA"}, Permissions: []string{"read_charge"}}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(nil, tt.vehicles, opts)
			if err != nil {
				t.Fatal(err)
			}
			b.clearIfGone(tesla, ours)
			if b.gone[tesla] != tt.removed {
				t.Errorf("marked for removal: %v, want %v", b.gone[tesla], tt.removed)
			}
		})
	}
}
