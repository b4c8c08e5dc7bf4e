package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// Two daemons with one MQTT client id make the broker drop each in turn as the
// other connects; the log says so once, in words that name the variable to
// change, rather than an endless "lost the connection".
func TestClientIDTakenOverIsNamed(t *testing.T) {
	forEachBroker(t, smartcarsim.Options{}, func(t *testing.T, e *env) {
		logs := newLogWatch(t)
		e.log = logs.logger
		e.startBridge()
		e.startBridge() // a second daemon, same MQTT_CLIENT_ID
		// Each client's reconnect waits longer after every takeover (paho's
		// backoff): the third quick loss comes about 3 s in on an idle
		// machine and over 15 s on a loaded one, so this waits longer.
		got := logs.waitForWithin(t, "that another client keeps taking over the client id", 45*time.Second, func(f logEntry) bool {
			return strings.Contains(f.Message, "keeps taking over this client id")
		})
		if !strings.Contains(got.Message, "MQTT_CLIENT_ID=smartcar2mqtt-test") || got.Fields["client_id"] != "smartcar2mqtt-test" {
			t.Errorf("the line does not name the client id and the variable: %+v", got)
		}
	})
}

// A broker refusing the daemon's login gets a line naming the variables to
// check, and the daemon keeps trying (the user may fix the broker's side).
func TestWrongMQTTPasswordNamesTheVariables(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	e.mqtt.Username, e.mqtt.Password = haUser, "not-"+haPass
	logs := newLogWatch(t)
	e.log = logs.logger
	e.startBridge()
	// The second refusal: it kept trying, with backoff.
	logs.waitFor(t, "the refused login, named, and a retry", func(f logEntry) bool {
		return strings.Contains(f.Message, "check MQTT_USERNAME and MQTT_PASSWORD") && strings.Contains(f.Message, "retrying in 2s")
	})
	for _, f := range logs.all() {
		if strings.Contains(f.Message+strings.Join(values(f.Fields), " "), haPass) {
			t.Errorf("the password reached the log: %+v", f)
		}
	}
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
