package bridge

import (
	"bytes"
	"crypto/subtle"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// accessHook authenticates clients of the embedded broker and decides what each may
// read and write. mochi's auth.Ledger would do, but its rules treat '*' inside a
// password as a wildcard, so a user's password containing '*' would admit others;
// this hook compares credentials exactly, in constant time, with rules in plain code.
type accessHook struct {
	mqtt.HookBase
	bridge    Credentials // the daemon's own session: everything allowed
	user      string      // Home Assistant's account (BROKER_USERNAME)
	password  string
	anonymous bool
	base      string // MQTT_BASE_TOPIC
}

func (h *accessHook) ID() string { return "smartcar2mqtt-access" }

func (h *accessHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	switch {
	case h.isBridge(cl):
		return equal(pass, h.bridge.Password) && cl.Net.Listener == "bridge"
	case h.user != "" && user == h.user:
		return equal(pass, h.password)
	default:
		return h.anonymous
	}
}

func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if h.isBridge(cl) {
		return true
	}
	// Everyone else (Home Assistant, mosquitto_pub, …) reads everything and writes
	// anywhere except the daemon's own state: under the base topic only the command
	// and refresh topics are theirs to publish to.
	if !write || !under(h.base, topic) {
		return true
	}
	return isCommandTopic(h.base, topic)
}

func (h *accessHook) isBridge(cl *mqtt.Client) bool {
	return string(cl.Properties.Username) == h.bridge.Username
}

// isCommandTopic matches base/<vehicle>/charge_port/set and base/<vehicle>/refresh,
// exactly as the bridge routes them (parseTopic), and without wildcards in the vehicle
// level: a publish topic never holds one, and a subscription filter asking to write
// makes no sense.
func isCommandTopic(base, topic string) bool {
	r := parseTopic(base, topic)
	return r.kind != routeNone && !strings.ContainsAny(r.vehicleID, "+#")
}

func under(base, topic string) bool {
	return topic == base || strings.HasPrefix(topic, base+"/")
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
