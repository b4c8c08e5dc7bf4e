package bridge

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"golang.org/x/oauth2"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// secondTesla is a second car on the account, for the many-vehicle rules.
const secondTesla = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"

var secondTopics = discovery.VehicleTopics(base, secondTesla)

func addSecondTesla(e *env) {
	e.sim.AddVehicle(smartcarsim.Vehicle{ID: secondTesla, Make: "TESLA", Model: "Model Y", Year: 2023},
		[]string{"read_vehicle_info", "read_charge", "control_charge"})
}

// apiCalls counts requests to the Smartcar API and token endpoint (what costs quota).
func apiCalls(reqs []smartcarsim.Request) (api, token int) {
	for _, r := range reqs {
		switch {
		case strings.HasPrefix(r.Path, "/v2.0/"):
			api++
		case r.Path == "/oauth/token":
			token++
		}
	}
	return api, token
}

func TestWarmRestartSpendsNoCall(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	addSecondTesla(e)
	first := e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	user.waitPayload(0, secondTopics.State, "closed")
	user.publish(teslaTopics.Command, false, "OPEN")
	n = user.waitPayload(n, teslaTopics.State, "open")
	first.stop(t)
	cold := len(e.sim.Requests())
	api, token := apiCalls(e.sim.Requests())
	t.Logf("cold start + one OPEN: %d API calls, %d token calls", api, token)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Smartcar requests since the restart: %+v", e.sim.Requests()[cold:])
		}
	})

	e.startBridge()
	// The restarted bridge publishes what it knew, from DATA_DIR...
	m := user.waitPayload(n, discovery.StatusTopic(base), "online")
	user.waitPayload(m, teslaTopics.State, "open")
	user.waitPayload(m, secondTopics.State, "closed")
	// ...and a refresh is then the first call it makes: nothing was spent on the way.
	pressed := time.Now()
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(m, teslaTopics.Attributes, readSince(pressed))
	after := e.sim.Requests()[cold:]
	if len(after) != 1 || !strings.HasSuffix(after[0].Path, "/tesla/charge") {
		t.Fatalf("warm restart made calls beyond the one refresh: %+v", after)
	}
}

func TestRefusedLoginTakesVehiclesOfflineAndRecovers(t *testing.T) {
	// Access tokens shorter than the early-refresh window: every call refreshes,
	// so a refused refresh shows at once.
	e := newEnv(t, "mochi", smartcarsim.Options{AccessTTL: time.Minute})
	addSecondTesla(e)
	e.loginProbe = 50 * time.Millisecond
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	user.waitPayload(0, secondTopics.State, "closed")

	// The user revoked the app in Smartcar's dashboard: the refresh token is dead.
	e.sim.InjectFault(smartcarsim.Fault{Method: "POST", Path: "/oauth/token", Status: 400, Type: smartcar.TypeOAuth, Code: "invalid_grant", Times: -1})
	user.publish(teslaTopics.Refresh, false, "")
	user.waitPayload(n, teslaTopics.Availability, "offline")
	user.waitPayload(n, secondTopics.Availability, "offline")
	_, refusedTokenCalls := apiCalls(e.sim.Requests())

	// While offline, the probes cost nothing: the dead token is not offered again.
	m := user.count()
	user.publish(secondTopics.Refresh, false, "")
	user.waitAttributes(m, secondTopics.Attributes, func(a map[string]any) bool { return a["error"] != nil })
	if _, tok := apiCalls(e.sim.Requests()); tok != refusedTokenCalls {
		t.Errorf("the dead refresh token was offered again: %d token calls, then %d", refusedTokenCalls, tok)
	}

	// `smartcar2mqtt auth` writes a new pair; the bridge picks it up without a restart.
	e.sim.ClearFaults()
	before := len(mustMessages(user))
	if err := smartcar.NewTokenStore(e.dataDir).Save(freshToken(e)); err != nil {
		t.Fatal(err)
	}
	user.waitPayload(before, teslaTopics.Availability, "online")
	user.waitPayload(before, secondTopics.Availability, "online")
}

// The flood is taken while the first door call is held at Smartcar's front, as in
// TestHostileCommandTraffic: with a fixed car latency instead, a machine slower over
// the flood than the car is over its call lets that call end mid-flood, and the
// commands after it cost calls of their own.
func TestFloodOfCommandsCostsAtMostTwoCalls(t *testing.T) {
	const flood = 10000
	forEachBroker(t, smartcarsim.Options{}, func(t *testing.T, e *env) {
		front, seen, drops := e.watchCommands()
		e.startBridge()
		// Not subscribed to the command topic: the bridge is its only subscriber,
		// so what the broker drops there is what the bridge never got.
		user := e.recorder(discovery.StatusTopic(base), teslaTopics.State, teslaTopics.Attributes, teslaTopics.Availability)
		n := ready(user, "closed")
		release := front.holdDoors()
		defer release()
		for i := range flood {
			cmd := "OPEN"
			if i%3 == 1 {
				cmd = "CLOSE"
			}
			user.client.Publish(teslaTopics.Command, 0, false, cmd)
		}
		user.publish(teslaTopics.Command, false, "OPEN") // the last word, at QoS 1
		front.waitDoor(t)
		// Every command is in the bridge's hands (or was dropped by the broker on the
		// way) while the first call is still in flight.
		seen.waitBurst(t, func(int64, bool) bool { return seen.received.Load()+drops.commands.Load() >= flood+1 })
		release()
		user.waitPayload(n, teslaTopics.State, "opening")
		// A read queued after the flood runs once the worker is free of commands.
		waitRead(user, user, teslaTopics)
		calls := e.doorCalls()
		if len(calls) == 0 || len(calls) > 2 {
			t.Fatalf("%d commands made %d door calls, want 1 or 2", flood+1, len(calls))
		}
		t.Logf("%d commands → %d door calls (%d dropped by the broker)", flood+1, len(calls), drops.commands.Load())
	})
}

// Each vehicle's door call is held at Smartcar's front until both have arrived:
// the second can arrive only if calls are not serialised, however slow the machine.
func TestTwoVehiclesDoNotWaitForEachOther(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	front := e.throughFront()
	addSecondTesla(e)
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	user.waitPayload(0, secondTopics.State, "closed")

	release := front.holdDoors()
	defer release()
	user.publish(teslaTopics.Command, false, "OPEN")
	user.publish(secondTopics.Command, false, "OPEN")
	arrived := []string{front.waitDoor(t), front.waitDoor(t)}
	for _, id := range []string{tesla, secondTesla} {
		if !slices.ContainsFunc(arrived, func(p string) bool { return strings.Contains(p, id) }) {
			t.Errorf("no door call for %s among %v", id, arrived)
		}
	}
	release()
	user.waitPayload(n, teslaTopics.State, "open")
	user.waitPayload(n, secondTopics.State, "open")
}

func TestVehicleLeavingTheFilterIsRemovedFromHomeAssistant(t *testing.T) {
	forEachBroker(t, smartcarsim.Options{}, func(t *testing.T, e *env) {
		addSecondTesla(e)
		first := e.startBridge()
		user := e.recorder(base+"/#", prefix+"/#")
		ready(user, "closed")
		user.waitPayload(0, secondTopics.State, "closed")
		gone := append([]string{discovery.ConfigTopic(prefix, secondTesla)}, secondTopics.Retained()...)
		user.waitFor("every retained topic of the second car", func(ms []message) bool {
			for _, topic := range gone {
				if m, ok := findTopic(ms, topic); !ok || m.Payload == "" {
					return false
				}
			}
			return true
		})
		first.stop(t)

		e.only = []string{tesla} // SMARTCAR_VEHICLE_IDS now names one car
		n := len(mustMessages(user))
		e.startBridge()
		for _, topic := range gone {
			user.waitPayload(n, topic, "")
		}
		// A client arriving now sees the first car only: nothing of the second is
		// retained. (Each filter's retained messages come before the next one's.)
		late := e.recorder(base+"/#", prefix+"/#")
		msgs := late.waitFor("the first car's config", func(ms []message) bool {
			_, ok := findTopic(ms, discovery.ConfigTopic(prefix, tesla))
			return ok
		})
		// An empty message is a removal still arriving live (the clear may be sent
		// twice: for the removal, and again when the broker hands the old config
		// back), never retained content.
		for _, m := range msgs {
			if slices.Contains(gone, m.Topic) && m.Payload != "" {
				t.Errorf("%s of the removed car is still retained: %.80q", m.Topic, m.Payload)
			}
		}
	})
}

// Retained must list every topic the bridge publishes for a vehicle, or a removed
// vehicle leaves some behind: all of discovery.Topics but the two Home Assistant
// publishes to.
func TestRetainedTopicsAreAllTheStateTopics(t *testing.T) {
	want := map[string]bool{}
	v := reflect.ValueOf(teslaTopics)
	for i := range v.NumField() {
		want[v.Field(i).String()] = true
	}
	delete(want, teslaTopics.Command)
	delete(want, teslaTopics.Refresh)
	got := map[string]bool{}
	for _, topic := range teslaTopics.Retained() {
		if !want[topic] || got[topic] {
			t.Errorf("Retained lists %s: not a state topic, or twice", topic)
		}
		got[topic] = true
	}
	for topic := range want {
		if !got[topic] {
			t.Errorf("Retained leaves out %s", topic)
		}
	}
}

func TestPermissionsDecideCoverAndPolling(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	addSecondTesla(e)
	e.sim.SetPermissions(tesla, "read_vehicle_info", "control_charge")    // no read_charge
	e.sim.SetPermissions(secondTesla, "read_vehicle_info", "read_charge") // no control_charge
	e.startBridge()
	user := e.recorder(base+"/#", prefix+"/#")
	user.waitPayload(0, teslaTopics.State, "None")
	msgs := user.waitFor("the first car's discovery", func(ms []message) bool {
		m, ok := findTopic(ms, discovery.ConfigTopic(prefix, tesla))
		return ok && hasCover(t, m.Payload)
	})
	if m, ok := findTopic(msgs, discovery.ConfigTopic(prefix, secondTesla)); ok && hasCover(t, m.Payload) {
		t.Errorf("a car without control_charge got a cover: %s", m.Payload)
	}
	// The cover works without read_charge: a command, and still no read.
	user.publish(teslaTopics.Command, false, "OPEN")
	user.waitPayload(0, teslaTopics.State, "open")
	for _, r := range e.sim.Requests() {
		if strings.HasSuffix(r.Path, "/"+tesla+"/tesla/charge") {
			t.Errorf("read without read_charge: %s", r.Path)
		}
	}
	// The car without control_charge refuses commands without a Smartcar call, and
	// still gets its charge sensors from reads. The read pressed after the command
	// is done once the command has been handled.
	user.publish(secondTopics.Command, false, "OPEN")
	waitRead(user, user, secondTopics)
	user.waitPayload(0, secondTopics.PluggedIn, "OFF")
	for _, r := range e.doorCalls() {
		if strings.Contains(r.Path, secondTesla) {
			t.Errorf("door call for a car without control_charge: %s", r.Path)
		}
	}
}

func TestForbiddenMarksTheVehicleCacheStale(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	e.sim.InjectFault(smartcarsim.Fault{Method: "GET", Path: "/tesla/charge", Status: 403, Type: "PERMISSION", Code: ""})
	user.publish(teslaTopics.Refresh, false, "")
	user.waitPayload(n, teslaTopics.Availability, "offline")
	select {
	case id := <-e.stale:
		if id != tesla {
			t.Errorf("stale vehicle %s, want %s", id, tesla)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a 403 did not mark the vehicle cache stale")
	}
	// A later call that works brings the vehicle back.
	user.publish(teslaTopics.Refresh, false, "")
	user.waitPayload(n, teslaTopics.Availability, "online")
}

// freshToken is what `smartcar2mqtt auth` would store: a new pair from Connect.
func freshToken(e *env) *oauth2.Token {
	return &oauth2.Token{RefreshToken: e.sim.IssueRefreshToken()}
}

// hasCover says whether a device config offers a cover: a component of platform
// cover with more than the bare platform (which is HA's "remove this component").
func hasCover(t *testing.T, payload string) bool {
	t.Helper()
	if payload == "" {
		return false
	}
	var doc struct {
		Cmps map[string]map[string]any `json:"cmps"`
	}
	if err := json.Unmarshal([]byte(payload), &doc); err != nil {
		t.Fatalf("config is not JSON: %v", err)
	}
	for _, c := range doc.Cmps {
		if (c["p"] == "cover" || c["platform"] == "cover") && len(c) > 1 {
			return true
		}
	}
	return false
}
