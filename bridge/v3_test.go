package bridge

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// The third car of the v3 account: another user's, whose owner did not grant
// control_charge.
const (
	otherUser = "user-b"
	modelY    = "7e0d1c2b-3a49-4f58-8d6e-5c4b3a291807"
)

var (
	fordTopics   = discovery.VehicleTopics(base, smartcarsim.OtherID)
	modelYTopics = discovery.VehicleTopics(base, modelY)
)

// newV3Env is a v3 account with two users and three cars: the Tesla and the Ford
// (whose charge port command answers 501) of the first user, and a Model Y of a
// second user without control_charge.
func newV3Env(t *testing.T, kind string, sim smartcarsim.Options) *env {
	e := newEnv(t, kind, sim)
	e.v3 = true
	e.sim.AddVehicle(smartcarsim.Vehicle{ID: modelY, UserID: otherUser, Make: "TESLA", Model: "Model Y", Year: 2024},
		[]string{smartcar.PermReadVehicleInfo, smartcar.PermReadCharge})
	return e
}

func forEachBrokerV3(t *testing.T, sim smartcarsim.Options, test func(t *testing.T, e *env)) {
	for _, kind := range []string{"mochi", "mosquitto"} {
		t.Run(kind, func(t *testing.T) { test(t, newV3Env(t, kind, sim)) })
	}
}

// components are the platforms of a device discovery payload, by key.
func components(t *testing.T, payload string) map[string]string {
	t.Helper()
	if payload == "" {
		return nil
	}
	var doc struct {
		Cmps map[string]struct {
			P        string `json:"p"`
			UniqueID string `json:"unique_id"`
		} `json:"cmps"`
	}
	if err := json.Unmarshal([]byte(payload), &doc); err != nil {
		t.Fatalf("discovery payload: %v\n%s", err, payload)
	}
	out := map[string]string{}
	for _, c := range doc.Cmps {
		if c.UniqueID != "" { // {"p": …} alone removes an entity
			out[c.UniqueID] = c.P
		}
	}
	return out
}

// latestConfig waits for vehicle id's discovery config that satisfies ok, and
// returns its payload.
func latestConfig(r *recorder, id, what string, ok func(payload string) bool) string {
	topic := discovery.ConfigTopic(prefix, id)
	var payload string
	r.waitFor(what, func(ms []message) bool {
		for i := len(ms) - 1; i >= 0; i-- {
			if ms[i].Topic == topic {
				payload = ms[i].Payload
				return ok(payload)
			}
		}
		return false
	})
	return payload
}

// TestV3AccountGetsTheRightCovers: every car of both users is announced; a cover
// where control_charge is granted; the car whose command Smartcar does not offer loses
// its cover at its first command, once, and for good.
func TestV3AccountGetsTheRightCovers(t *testing.T) {
	forEachBrokerV3(t, smartcarsim.Options{}, func(t *testing.T, e *env) {
		logs := newLogWatch(t)
		e.log = logs.logger
		r := e.startBridge()
		ha := e.recorder(prefix+"/#", base+"/#")
		ready(ha, "closed")

		if !hasCover(t, latestConfig(ha, tesla, "the Tesla", func(string) bool { return true })) {
			t.Error("the Tesla has no cover")
		}
		y := latestConfig(ha, modelY, "the second user's Model Y", func(string) bool { return true })
		if hasCover(t, y) || !slices.Contains(platforms(t, y), "binary_sensor") {
			t.Errorf("Model Y without control_charge: want sensors and no cover, got %v", components(t, y))
		}
		if !hasCover(t, latestConfig(ha, smartcarsim.OtherID, "the Ford", func(string) bool { return true })) {
			t.Error("the Ford has no cover before Smartcar said it has no command for it")
		}
		ha.waitPayload(0, modelYTopics.State, "closed")

		// The Ford's command answers 501: the cover goes, its sensors stay.
		n := ha.count()
		ha.publish(fordTopics.Command, false, "OPEN")
		ford := latestConfig(ha, smartcarsim.OtherID, "the Ford without its cover", func(p string) bool { return p != "" && !hasCover(t, p) })
		if !slices.Contains(platforms(t, ford), "binary_sensor") {
			t.Errorf("the Ford lost more than its cover: %v", components(t, ford))
		}
		ha.waitPayload(n, fordTopics.State, "closed")
		logs.waitFor(t, "why the Ford lost its cover", func(l logEntry) bool {
			return strings.Contains(l.Message, "no charge port command for this vehicle") && strings.Contains(l.Message, "cover is removed")
		})
		// A second command costs no call: the cover is gone and the command refused here.
		calls := len(e.doorCalls())
		ha.publish(fordTopics.Command, false, "OPEN")
		ha.publish(teslaTopics.Command, false, "OPEN")
		ha.waitPayload(n, teslaTopics.State, "open")
		if got := len(e.doorCalls()); got != calls+1 {
			t.Errorf("%d door calls after the Ford's cover went, want only the Tesla's", got-calls)
		}

		// Every vehicle request named the user of its car.
		for _, req := range e.sim.Requests() {
			id, ok := strings.CutPrefix(req.Path, "/v3/vehicles/")
			if !ok {
				continue
			}
			want := smartcarsim.UserID
			if strings.HasPrefix(id, modelY) {
				want = otherUser
			}
			if req.UserID != want || req.Status >= 400 && req.Status != 501 {
				t.Errorf("%s %s: sc-user-id %q status %d, want %q", req.Method, req.Path, req.UserID, req.Status, want)
			}
		}

		// And after a restart, the Ford still has no cover, without a call to learn it.
		r.stop(t)
		e.startBridge()
		again := e.recorder(prefix + "/#")
		cfg := latestConfig(again, smartcarsim.OtherID, "the Ford after a restart", func(p string) bool { return p != "" })
		if hasCover(t, cfg) {
			t.Error("the Ford's cover came back after a restart")
		}
	})
}

func TestV3OpenAndCloseWithSlowAnswers(t *testing.T) {
	for _, async := range []bool{false, true} {
		name := map[bool]string{false: "200", true: "202 streamed"}[async]
		t.Run(name, func(t *testing.T) {
			forEachBrokerV3(t, smartcarsim.Options{Async: async, Latency: 300 * time.Millisecond}, func(t *testing.T, e *env) {
				e.startBridge()
				user := e.recorder(base + "/#")
				n := ready(user, "closed")

				user.publish(teslaTopics.Command, false, "OPEN")
				opening := user.waitPayload(n, teslaTopics.State, "opening")
				open := user.waitPayload(opening, teslaTopics.State, "open")
				attrs := user.waitAttributes(open, teslaTopics.Attributes, func(a map[string]any) bool { return a["last_command"] == "OPEN" })
				if attrs["last_command_result"] != "success" || attrs["error"] != nil {
					t.Errorf("attributes after OPEN = %v", attrs)
				}
				user.publish(teslaTopics.Command, false, "CLOSE")
				closing := user.waitPayload(open, teslaTopics.State, "closing")
				user.waitPayload(closing, teslaTopics.State, "closed")
				calls := e.doorCalls()
				if len(calls) != 2 || !strings.HasSuffix(calls[0].Path, "/commands/charge-port/open") || !strings.HasSuffix(calls[1].Path, "/commands/charge-port/close") {
					t.Fatalf("door calls %+v", calls)
				}
				for _, c := range calls {
					if c.UserID != smartcarsim.UserID || c.Body != "" {
						t.Errorf("door call %s: sc-user-id %q body %q", c.Path, c.UserID, c.Body)
					}
				}
				if e.sim.ChargePortOpen(tesla) {
					t.Error("the simulated door is still open")
				}

				// The car refuses in the command's answer: the state reverts, the
				// error shows.
				e.sim.InjectFault(smartcarsim.Fault{Path: "/commands/charge-port/open", Status: map[bool]int{false: 200, true: 202}[async], Type: "VEHICLE_STATE", Code: "ASLEEP"})
				m := user.count()
				user.publish(teslaTopics.Command, false, "OPEN")
				attrs = user.waitAttributes(m, teslaTopics.Attributes, hasErrorType("VEHICLE_STATE"))
				if errorOf(attrs)["code"] != "ASLEEP" || errorOf(attrs)["request_id"] == "" {
					t.Errorf("failed command: attributes %v", attrs)
				}
				user.waitPayload(m, teslaTopics.State, "closed")
			})
		})
	}
}

// startV3Watched starts a v3 bridge on mochi whose log the test can wait on, and a
// user watching its topics; n is the count of messages once it is ready.
func startV3Watched(t *testing.T) (e *env, logs *logWatch, user *recorder, n int) {
	e = newV3Env(t, "mochi", smartcarsim.Options{})
	logs = newLogWatch(t)
	e.log = logs.logger
	e.startBridge()
	user = e.recorder(base + "/#")
	return e, logs, user, ready(user, "closed")
}

func TestV3LoginRenewedAfter401(t *testing.T) {
	e, _, user, n := startV3Watched(t)
	tokenCalls := func() int {
		c := 0
		for _, r := range e.sim.Requests() {
			if r.Path == "/oauth2/token" {
				c++
			}
		}
		return c
	}
	if got := tokenCalls(); got != 1 {
		t.Errorf("%d token calls to start three cars, want 1 (one application token)", got)
	}
	e.sim.InjectFault(smartcarsim.Fault{Path: "/signals", Status: 401})
	pressed := time.Now()
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(n, teslaTopics.Attributes, readSince(pressed))
	if got := tokenCalls(); got != 2 {
		t.Errorf("%d token calls after a 401, want 2", got)
	}
	neverOffline(t, mustMessages(user))
}

func TestV3RefusedCredentialsTakeVehiclesOffline(t *testing.T) {
	e, logs, user, n := startV3Watched(t)
	// The credentials stop working (rotated in the dashboard, say).
	e.sim.InjectFault(smartcarsim.Fault{Path: "/signals", Status: 401, Times: -1})
	e.sim.InjectFault(smartcarsim.Fault{Path: "/oauth2/token", Status: 401, Type: "OAUTH", Code: "invalid_client", Times: -1})
	user.publish(teslaTopics.Refresh, false, "")
	user.waitPayload(n, teslaTopics.Availability, "offline")
	user.waitPayload(n, modelYTopics.Availability, "offline")
	entry := logs.waitFor(t, "one line naming the credentials", func(l logEntry) bool {
		return strings.Contains(l.Message, "refused the API credentials") && strings.Contains(l.Message, "SMARTCAR_CLIENT_SECRET")
	})
	shown := entry.Message
	for _, v := range entry.Fields { // the error's text among them
		shown += "\n" + v
	}
	if strings.Contains(shown, simAPIClientSecret) {
		t.Error("the log line shows the secret")
	}
}

func TestV3NoDataYet(t *testing.T) {
	e := newV3Env(t, "mochi", smartcarsim.Options{})
	e.sim.SetNoData(tesla, 404)
	logs := newLogWatch(t)
	e.log = logs.logger
	e.startBridge()
	user := e.recorder(base + "/#")
	user.waitPayload(0, discovery.StatusTopic(base), "online")
	user.waitPayload(0, teslaTopics.PluggedIn, "None")
	logs.waitFor(t, "what to do when Smartcar has no data", func(l logEntry) bool {
		return strings.Contains(l.Message, "no data for this car yet") && strings.Contains(l.Message, "webhook")
	})
	// Once data appears, the next read shows it.
	e.sim.SetNoData(tesla, 0)
	n := user.count()
	pressed := time.Now()
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(n, teslaTopics.Attributes, readSince(pressed))
	user.waitPayload(n, teslaTopics.State, "closed")
	user.waitPayload(n, teslaTopics.PluggedIn, "OFF")
	neverOffline(t, mustMessages(user))
}

// TestV3NewCarWithoutRestart: `auth` writes the vehicle cache with the new car; the
// running daemon announces and reads it.
func TestV3NewCarWithoutRestart(t *testing.T) {
	forEachBrokerV3(t, smartcarsim.Options{}, func(t *testing.T, e *env) {
		r := e.startBridge()
		ha := e.recorder(prefix+"/#", base+"/#")
		ready(ha, "closed")

		const newCar = "0f1e2d3c-4b5a-4968-8776-655443322110"
		e.sim.Grant(smartcarsim.Vehicle{ID: newCar, UserID: "user-c", Make: "TESLA", Model: "Model S", Year: 2025},
			[]string{smartcar.PermReadVehicleInfo, smartcar.PermReadCharge, smartcar.PermControlCharge})
		listing, err := e.client(t.Context()).Vehicles(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.fleet.Save(smartcar.V3, listing); err != nil {
			t.Fatal(err)
		}
		if !hasCover(t, latestConfig(ha, newCar, "the new car's discovery", func(p string) bool { return p != "" })) {
			t.Error("the new car has no cover")
		}
		newTopics := discovery.VehicleTopics(base, newCar)
		ha.waitPayload(0, newTopics.State, "closed")
		n := ha.count()
		ha.publish(newTopics.Command, false, "OPEN")
		ha.waitPayload(n, newTopics.State, "open")
		for _, c := range e.doorCalls() {
			if strings.Contains(c.Path, newCar) && c.UserID != "user-c" {
				t.Errorf("the new car's command named user %q", c.UserID)
			}
		}
	})
}

// TestV2ToV3KeepsEveryEntity: an installation on API v2.0 switched to v3
// credentials announces the same devices and entities (same unique ids), so Home
// Assistant keeps their names, areas and history.
func TestV2ToV3KeepsEveryEntity(t *testing.T) {
	forEachBroker(t, smartcarsim.Options{}, func(t *testing.T, e *env) {
		r := e.startBridge()
		ha := e.recorder(prefix + "/#")
		v2 := components(t, latestConfig(ha, tesla, "the v2.0 discovery", func(p string) bool { return p != "" }))
		r.stop(t)

		e.v3 = true
		e.startBridge()
		ha = e.recorder(prefix+"/#", base+"/#")
		ready(ha, "closed")
		v3 := components(t, latestConfig(ha, tesla, "the v3 discovery", func(p string) bool { return p != "" }))
		if len(v2) == 0 || !maps.Equal(v2, v3) {
			t.Errorf("entities changed with the API:\nv2 %v\nv3 %v", v2, v3)
		}
		// The vehicle list is read again through v3 (the v2.0 cache has no
		// users). In the background: what HA saw so far may be retained.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := e.sim.WaitRequest(ctx, func(r smartcarsim.Request) bool { return r.Path == "/v3/connections" }); err != nil {
			t.Error("v3 started from the v2.0 vehicle cache")
		}
		// No device of the Tesla but the one: the config topic is per vehicle id.
		var devices []string
		for _, m := range mustMessages(ha) {
			if strings.HasPrefix(m.Topic, prefix+"/device/") && strings.Contains(m.Payload, tesla) && m.Payload != "" {
				devices = append(devices, m.Topic)
			}
		}
		slices.Sort(devices)
		if devices = slices.Compact(devices); len(devices) != 1 {
			t.Errorf("the Tesla is announced under %v", devices)
		}
	})
}

// platforms lists a device's entity platforms.
func platforms(t *testing.T, payload string) []string {
	return slices.Collect(maps.Values(components(t, payload)))
}

// readSince matches the attributes of a successful read made after t.
func readSince(t time.Time) func(map[string]any) bool {
	return func(a map[string]any) bool {
		stamp, _ := a["last_read_at"].(string) // null before the first read; changed by a read that worked only
		at, err := time.Parse(time.RFC3339Nano, stamp)
		return err == nil && !at.Before(t)
	}
}

func TestV2RetirementTakesVehiclesOfflineWithTheWayOut(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	logs := newLogWatch(t)
	e.log = logs.logger
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	e.sim.RetireV2(true)
	user.publish(teslaTopics.Refresh, false, "")
	user.waitPayload(n, teslaTopics.Availability, "offline")
	attrs := user.waitAttributes(n, teslaTopics.Attributes, hasErrorType(smartcar.TypeAPIRetired))
	if !strings.Contains(errorOf(attrs)["description"].(string), "SMARTCAR_APPLICATION_ID") {
		t.Errorf("attributes do not say how to move to v3: %v", attrs)
	}
	user.waitPayload(n, teslaTopics.LastError, "API_RETIRED:V2")
	logs.waitFor(t, "the steps to move to v3", func(l logEntry) bool {
		return strings.Contains(l.Message, "retired API v2.0") && strings.Contains(l.Message, "SMARTCAR_CLIENT_ID") && strings.Contains(l.Message, "smartcar2mqtt auth")
	})
	// Polling stops: an API that is switched off only costs calls.
	before := chargeReads(e)
	user.publish(teslaTopics.Refresh, false, "")
	user.publish(teslaTopics.Command, false, "OPEN")
	user.waitAttributes(n, teslaTopics.Attributes, func(a map[string]any) bool { return a["last_command"] == "OPEN" })
	if got := chargeReads(e) - before; got != 0 {
		t.Errorf("%d reads of a retired API", got)
	}
}
