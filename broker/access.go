package broker

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

// accessHook authenticates clients of the broker, decides what each may read and
// write, and says in the log whom it refused and why. mochi's auth.Ledger would
// decide, but its rules treat '*' inside a password as a wildcard, so a user's
// password containing '*' would admit others; this hook compares credentials
// exactly, in constant time, with rules in plain code.
//
// A log line names the client, the user, the topic and the reason; never a
// password, nor a payload, which anyone able to connect chooses.
type accessHook struct {
	mqtt.HookBase
	server    *mqtt.Server // to see which client a new connection takes over; nil in unit tests
	log       logrus.FieldLogger
	bridge    Credentials // the daemon's own session: everything allowed
	user      string      // Home Assistant's account (BROKER_USERNAME)
	password  string
	anonymous bool
	base      string   // MQTT_BASE_TOPIC
	open      []string // the filters under base others may publish to
}

// Reasons given in the log. They tell a user what to check, not how the rule is
// coded.
const (
	reasonWrongLogin   = "wrong username or password: check BROKER_USERNAME and BROKER_PASSWORD of the daemon and the MQTT integration's settings in Home Assistant"
	reasonNoLogin      = "no username given and BROKER_ALLOW_ANONYMOUS is off: set the MQTT integration's username and password in Home Assistant to BROKER_USERNAME and BROKER_PASSWORD"
	reasonBridgeOnly   = "the daemon's own account is accepted on its loopback listener only"
	reasonTakenOver    = "a new connection used the same client id and replaced this one; if this repeats, two clients share the id"
	reasonInvalidTopic = "not a valid topic filter"
)

// openTopics are the filters under base that clients other than the daemon may
// publish to: the command and refresh topics discovery gives Home Assistant, for any
// vehicle ('+' stands for one vehicle id).
func openTopics(base string) []string {
	t := discovery.VehicleTopics(base, "+")
	return []string{t.Command, t.Refresh}
}

func (h *accessHook) ID() string { return "smartcar2mqtt-access" }

func (h *accessHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablish, mqtt.OnSubscribed}, []byte{b})
}

func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	ok, reason := h.authenticate(cl, pk)
	if !ok {
		h.clientLog(cl).WithField("remote", cl.Net.Remote).WithField("reason", reason).Warn("login refused")
		return false
	}
	// mochi publishes a client's will without asking OnACLCheck: a will on the
	// daemon's state topics would forge its state when the client drops. The will is
	// dropped, the client let in. mochi sends the will from this same goroutine,
	// later, so clearing it here is safe.
	if pk.Connect.WillFlag && !h.mayWrite(cl, pk.Connect.WillTopic) {
		h.clientLog(cl).WithFields(logrus.Fields{"topic": pk.Connect.WillTopic, "reason": h.writeRefusal()}).Warn("will refused")
		cl.Properties.Will = mqtt.Will{}
	}
	return true
}

func (h *accessHook) authenticate(cl *mqtt.Client, pk packets.Packet) (bool, string) {
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	switch {
	case h.isBridge(cl):
		if !equal(pass, h.bridge.Password) {
			return false, reasonWrongLogin
		}
		if cl.Net.Listener != "bridge" {
			return false, reasonBridgeOnly
		}
		return true, ""
	case h.user != "" && user == h.user:
		if !equal(pass, h.password) {
			return false, reasonWrongLogin
		}
		return true, ""
	case h.anonymous:
		return true, ""
	case user == "":
		return false, reasonNoLogin
	default:
		return false, reasonWrongLogin
	}
}

func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	// Everyone reads everything: mochi asks this for every message it delivers.
	if !write {
		return true
	}
	if h.mayWrite(cl, topic) {
		return true
	}
	// mochi asks with write set only for a client's PUBLISH.
	h.clientLog(cl).WithFields(logrus.Fields{"topic": topic, "reason": h.writeRefusal()}).Warn("publish refused")
	return false
}

// mayWrite: the daemon writes anywhere; everyone else (Home Assistant,
// mosquitto_pub, …) anywhere except the daemon's own state: under the base topic
// only the command and refresh topics are theirs to publish to.
func (h *accessHook) mayWrite(cl *mqtt.Client, topic string) bool {
	if h.isBridge(cl) || !under(h.base, topic) {
		return true
	}
	for _, f := range h.open {
		if matchOpen(f, topic) {
			return true
		}
	}
	return false
}

func (h *accessHook) writeRefusal() string {
	return fmt.Sprintf("only the command and refresh topics under %s are open to this account; the rest of %s/ is the daemon's own state", h.base, h.base)
}

// OnSessionEstablish runs just before mochi looks for a session with the same client
// id, which it closes: say so, with both ends, since two clients sharing an id (two
// Home Assistant instances, a copied configuration) keep replacing each other.
func (h *accessHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if h.server == nil {
		return
	}
	old, ok := h.server.Clients.Get(cl.ID)
	if !ok || old.Closed() {
		return // a new session, or one resumed after its connection ended
	}
	h.clientLog(cl).WithFields(logrus.Fields{
		"old_remote": old.Net.Remote,
		"new_remote": cl.Net.Remote,
		"reason":     reasonTakenOver,
	}).Warn("client id taken over")
}

// OnSubscribed sees the SUBACK's codes: say which filters were refused and why.
func (h *accessHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	for i, sub := range pk.Filters {
		if i >= len(codes) || codes[i] < packets.ErrUnspecifiedError.Code {
			continue
		}
		h.clientLog(cl).WithFields(logrus.Fields{"topic": sub.Filter, "reason": subscribeRefusal(sub, codes[i])}).Warn("subscribe refused")
	}
}

// subscribeRefusal explains a refused filter. Reading is open to every account, so
// what is refused is a filter mochi cannot take; MQTT 3.1.1 has one failure code
// for everything, so the filter itself is looked at again.
func subscribeRefusal(sub packets.Subscription, code byte) string {
	switch {
	case !mqtt.IsValidFilter(sub.Filter, false):
		return reasonInvalidTopic
	case sub.NoLocal && mqtt.IsSharedFilter(sub.Filter):
		return "a shared subscription cannot ask for no-local"
	case code == packets.ErrPacketIdentifierInUse.Code:
		return "the client reused a packet identifier still in flight"
	default:
		return fmt.Sprintf("refused by the broker (reason code 0x%02X)", code)
	}
}

func (h *accessHook) clientLog(cl *mqtt.Client) logrus.FieldLogger {
	return h.log.WithFields(logrus.Fields{"client": cl.ID, "user": string(cl.Properties.Username)})
}

func (h *accessHook) isBridge(cl *mqtt.Client) bool {
	return string(cl.Properties.Username) == h.bridge.Username
}

// matchOpen matches a topic against one of the open filters, in which '+' stands for
// exactly one non-empty level without wildcards: a vehicle id. A publish topic never
// holds a wildcard, and a filter asking to write makes no sense.
func matchOpen(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	if len(fs) != len(ts) {
		return false
	}
	for i, f := range fs {
		switch {
		case f == "+":
			if ts[i] == "" || strings.ContainsAny(ts[i], "+#") {
				return false
			}
		case f != ts[i]:
			return false
		}
	}
	return true
}

func under(base, topic string) bool {
	return topic == base || strings.HasPrefix(topic, base+"/")
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
