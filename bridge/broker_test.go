package bridge

import (
	"strings"
	"testing"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

// The bridge and the embedded broker together; the broker alone is tested in
// package broker.

func TestEmbeddedBrokerGuardsTheDaemonsState(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	e.startBridge()
	watcher := e.recorder(base + "/#")
	n := ready(watcher, "closed")

	// Home Assistant's account may not forge the door state (QoS 0: a refused QoS 1
	// publish would also cost the spoofer its connection), but may send commands.
	spoofer := e.recorder()
	if tok := spoofer.client.Publish(teslaTopics.State, 0, true, "open"); !tok.WaitTimeout(5e9) {
		t.Fatal("publish did not complete")
	}
	spoofer.publish(teslaTopics.Command, false, "OPEN")
	opening := watcher.waitPayload(n, teslaTopics.State, "opening")
	for _, m := range mustMessages(watcher)[n:opening] {
		if m.Topic == teslaTopics.State && m.Payload == "open" {
			t.Fatalf("a forged state reached subscribers: %+v", m)
		}
	}
}

func mustMessages(r *recorder) []message {
	return r.snapshot()
}

func TestEmbeddedBrokerKeepsRetainedAcrossRestart(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	run := e.startBridge()
	ready(e.recorder(base+"/#"), "closed")
	e.recorder().publish("somebody/else/retained", true, "kept")
	run.stop(t)
	e.broker.Close()

	// Same DATA_DIR, new broker, no bridge running: the retained messages are there.
	e.startEmbedded()
	late := e.recorder(prefix+"/#", "somebody/#", base+"/#")
	late.waitPayload(0, "somebody/else/retained", "kept")
	late.waitFor("retained discovery", func(ms []message) bool {
		m, ok := findTopic(ms, discovery.ConfigTopic(prefix, tesla))
		return ok && m.Retained && m.Payload != ""
	})
	// The bridge said offline on its way out, and that is kept too.
	late.waitPayload(0, discovery.StatusTopic(base), "offline")
	late.waitPayload(0, teslaTopics.State, "closed")
}

// Stopping while the broker is away publishes nothing into paho's queue for
// a reconnect that will not come (the broker sent the will when the
// connection dropped): Run returns at once and says so.
func TestStopWhileTheBrokerIsAway(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	logs := newLogWatch(t)
	e.log = logs.logger
	run := e.startBridge()
	ready(e.recorder(base+"/#"), "closed")
	e.broker.Close()
	logs.waitFor(t, "the lost connection", func(l logEntry) bool {
		return strings.Contains(l.Message, "lost the MQTT connection")
	})
	run.stop(t)
	logs.waitFor(t, "that the will stands for the offline", func(l logEntry) bool {
		return strings.Contains(l.Message, "not connected to the MQTT broker while stopping")
	})
	for _, l := range logs.all() {
		if strings.Contains(l.Message, "could not publish offline") {
			t.Errorf("the offline was tried without a connection: %+v", l)
		}
	}
}
