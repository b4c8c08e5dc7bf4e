package broker

import (
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

func TestAccessHookAuthenticate(t *testing.T) {
	bridgeCreds := Credentials{Username: "smartcar2mqtt-bridge-1", Password: "generated"}
	tests := []struct {
		name      string
		anonymous bool
		listener  string
		user      string
		pass      string
		want      bool
	}{
		{"bridge on its loopback listener", false, "bridge", bridgeCreds.Username, "generated", true},
		{"bridge credential on the public listener", false, "mqtt", bridgeCreds.Username, "generated", false},
		{"bridge with a wrong password", false, "bridge", bridgeCreds.Username, "nope", false},
		{"home assistant", false, "mqtt", "ha", "pa*ss", true},
		{"home assistant, wrong password", false, "mqtt", "ha", "nope", false},
		{"a '*' in the password is not a wildcard", false, "mqtt", "ha", "pa", false},
		{"a password prefix is not enough", false, "mqtt", "ha", "pa*ssword", false},
		{"anonymous refused by default", false, "mqtt", "", "", false},
		{"unknown user refused", false, "mqtt", "mallory", "pa*ss", false},
		{"anonymous allowed when asked", true, "mqtt", "", "", true},
		{"ha still needs its password when anonymous is allowed", true, "mqtt", "ha", "nope", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &accessHook{log: testLog(t), bridge: bridgeCreds, user: "ha", password: "pa*ss", anonymous: tt.anonymous, base: "smartcar2mqtt", open: openTopics("smartcar2mqtt")}
			cl := &mqtt.Client{}
			cl.Net.Listener = tt.listener
			cl.Properties.Username = []byte(tt.user)
			pk := packets.Packet{Connect: packets.ConnectParams{Username: []byte(tt.user), Password: []byte(tt.pass)}}
			if got := h.OnConnectAuthenticate(cl, pk); got != tt.want {
				t.Errorf("authenticate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAccessHookACL(t *testing.T) {
	h := &accessHook{log: testLog(t), bridge: Credentials{Username: "bridge"}, user: "ha", base: "smartcar2mqtt", open: openTopics("smartcar2mqtt")}
	tests := []struct {
		user  string
		topic string
		write bool
		want  bool
	}{
		{"ha", "smartcar2mqtt/V1/charge_port/set", true, true},
		{"ha", "smartcar2mqtt/V1/refresh", true, true},
		{"ha", "smartcar2mqtt/V1/charge_port/state", true, false},
		{"ha", "smartcar2mqtt/V1/charge_port/attributes", true, false},
		{"ha", "smartcar2mqtt/V1/availability", true, false},
		{"ha", "smartcar2mqtt/status", true, false},
		{"ha", "smartcar2mqtt/+/charge_port/set", true, false},
		{"ha", "smartcar2mqtt/V1/charge_port/set/extra", true, false},
		{"ha", "smartcar2mqtt//refresh", true, false},
		{"ha", "smartcar2mqtt/#", false, true},
		{"ha", "smartcar2mqtt/V1/charge_port/state", false, true},
		{"ha", "homeassistant/device/x/config", true, true},
		{"ha", "homeassistant/status", true, true},
		{"ha", "smartcar2mqttother/x", true, true},
		{"", "smartcar2mqtt/V1/charge_port/state", true, false},
		{"bridge", "smartcar2mqtt/V1/charge_port/state", true, true},
		{"bridge", "smartcar2mqtt/status", true, true},
	}
	for _, tt := range tests {
		cl := &mqtt.Client{}
		cl.Properties.Username = []byte(tt.user)
		if got := h.OnACLCheck(cl, tt.topic, tt.write); got != tt.want {
			t.Errorf("user %q write=%v %s: allowed %v, want %v", tt.user, tt.write, tt.topic, got, tt.want)
		}
	}
}

// FuzzOpenTopics: the topics discovery tells Home Assistant to publish commands and
// refreshes to are open to it, for any valid vehicle id and base topic; the
// daemon's state topics are not; and no topic with an empty or wildcard level where
// the vehicle id goes is open.
func FuzzOpenTopics(f *testing.F) {
	f.Add("smartcar2mqtt", "V1", "smartcar2mqtt/V1/charge_port/set")
	f.Add("smartcar2mqtt", "36ab27d0-fd9d-4455-823a-ce30af709ffc", "smartcar2mqtt//refresh")
	f.Add("home/cars", "V_1", "home/cars/+/refresh")
	f.Add("a", "b", "a/b/charge_port/set/x")
	f.Fuzz(func(t *testing.T, base, id, topic string) {
		if discovery.ValidateTopicRoot(base) != nil {
			return
		}
		h := &accessHook{log: quietLog(), bridge: Credentials{Username: "bridge"}, base: base, open: openTopics(base)}
		ha := &mqtt.Client{}
		ha.Properties.Username = []byte("ha")

		if under(base, topic) && h.mayWrite(ha, topic) {
			rest := strings.TrimPrefix(topic, base+"/")
			vehicle, kind, _ := strings.Cut(rest, "/")
			if vehicle == "" || strings.ContainsAny(vehicle, "+#") || (kind != "charge_port/set" && kind != "refresh") {
				t.Fatalf("%q is open under base %q", topic, base)
			}
		}
		if discovery.ValidateVehicleID(id) != nil {
			return
		}
		vt := discovery.VehicleTopics(base, id)
		for _, open := range []string{vt.Command, vt.Refresh} {
			if !h.mayWrite(ha, open) {
				t.Fatalf("discovery's %q is not open to Home Assistant", open)
			}
		}
		for _, own := range []string{vt.State, vt.Attributes, vt.Availability, vt.LastError, vt.LastRead, discovery.StatusTopic(base)} {
			if h.mayWrite(ha, own) {
				t.Fatalf("the daemon's %q is open to Home Assistant", own)
			}
		}
	})
}
