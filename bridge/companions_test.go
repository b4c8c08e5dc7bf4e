package bridge

import (
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
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

// The last-error sensor reads TYPE:CODE for every failure, Smartcar's or the
// network's, with the sentence and the time as attributes; "none" once a call
// has worked.
func TestLastErrorPayloads(t *testing.T) {
	at := time.Date(2025, 6, 1, 20, 42, 7, 0, time.FixedZone("CEST", 2*3600))
	for _, c := range []struct {
		failure     *errorInfo
		state, json string
	}{
		{nil, "none", `{"description":"","request_id":"","at":"2025-06-01T18:42:07Z"}`},
		{newErrorInfo(smartcar.Failure{Type: "VEHICLE_STATE", Code: "ASLEEP", Description: "The vehicle is asleep.", RequestID: "r1", StatusCode: 409}, at),
			"VEHICLE_STATE:ASLEEP", `{"description":"The vehicle is asleep.","request_id":"r1","at":"2025-06-01T18:42:07Z"}`},
		{newErrorInfo(smartcar.Describe(&url.Error{Op: "Post", URL: "http://127.0.0.1:1/v3",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, time.Second), at),
			"NETWORK:CONNECTION_REFUSED", `{"description":"the connection to Smartcar was refused: nothing answers at its address, or a firewall turns the connection away","request_id":"","at":"2025-06-01T18:42:07Z"}`},
	} {
		state, attrs := lastErrorPayloads(c.failure, at)
		if state != c.state || string(attrs) != c.json {
			t.Errorf("lastErrorPayloads(%+v) = %q %s\nwant %q %s", c.failure, state, attrs, c.state, c.json)
		}
	}
}
