package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

func TestCompanionEntitiesFollowTheCar(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	for topic, want := range map[string]string{
		teslaTopics.PluggedIn:       "OFF",
		teslaTopics.ChargingState:   "NOT_CHARGING",
		teslaTopics.ChargePortLatch: "DISENGAGED",
		teslaTopics.ChargeLimit:     "80",
		teslaTopics.EnergyAdded:     "0",
		teslaTopics.LastError:       "none",
	} {
		user.waitPayload(0, topic, want)
	}
	user.waitFor("last_read with a timestamp", func(ms []message) bool {
		m, ok := findTopic(ms, teslaTopics.LastRead)
		if !ok {
			return false
		}
		_, err := time.Parse(time.RFC3339, m.Payload)
		return err == nil
	})

	// The user plugs in; the Refresh button (any payload) reads again.
	e.sim.SetPluggedIn(tesla, true)
	user.publish(teslaTopics.Refresh, false, "PRESS")
	user.waitPayload(n, teslaTopics.PluggedIn, "ON")
	user.waitPayload(n, teslaTopics.ChargingState, "CHARGING")
	user.waitPayload(n, teslaTopics.EnergyAdded, "4.2")
	user.waitPayload(n, teslaTopics.State, "open") // plugging in opened the door

	// Smartcar answers with nulls: every entity becomes unknown, nothing breaks.
	n = len(mustMessages(user))
	e.sim.InjectFault(smartcarsim.Fault{Method: "GET", Path: "/tesla/charge", Status: 200,
		RawBody: `{"chargePortOpen":null,"chargePortLatch":null,"isPluggedIn":null,"state":null,"socLimit":null,"energyAdded":null}`})
	user.publish(teslaTopics.Refresh, false, "")
	for _, topic := range []string{teslaTopics.State, teslaTopics.PluggedIn, teslaTopics.ChargingState, teslaTopics.ChargePortLatch, teslaTopics.ChargeLimit, teslaTopics.EnergyAdded} {
		user.waitPayload(n, topic, "None")
	}

	// A failed read shows in the diagnostic entity, with its request id.
	e.sim.InjectFault(smartcarsim.Fault{Method: "GET", Path: "/tesla/charge", Status: 409, Type: "VEHICLE_STATE", Code: "ASLEEP"})
	user.publish(teslaTopics.Refresh, false, "")
	user.waitPayload(n, teslaTopics.LastError, "VEHICLE_STATE:ASLEEP")
	user.waitFor("last error attributes with a request id", func(ms []message) bool {
		m, ok := findTopic(ms, teslaTopics.LastErrorAttributes)
		return ok && strings.Contains(m.Payload, `"request_id":"`)
	})
}
