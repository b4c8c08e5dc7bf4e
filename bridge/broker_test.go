package bridge

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

func TestEmbeddedBrokerRefusesWrongCredentials(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	for _, c := range []struct{ user, pass string }{{"", ""}, {haUser, "wrong"}, {haUser, "ha-secret"}, {e.mqtt.Username, e.mqtt.Password}} {
		opts := mqtt.NewClientOptions().AddBroker(e.userURL).SetUsername(c.user).SetPassword(c.pass).SetClientID("intruder").SetAutoReconnect(false)
		cl := mqtt.NewClient(opts)
		tok := cl.Connect()
		tok.Wait()
		if tok.Error() == nil {
			cl.Disconnect(0)
			t.Errorf("user %q with password %q was let in", c.user, c.pass)
		}
	}
}

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
	ms, _ := r.snapshot()
	return ms
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

// TestBrokerCloseIsBoundedWhileClientsLeave closes the embedded broker again and
// again while its clients disconnect, the interleaving in which mochi-mqtt v2.7.9's
// Close can deadlock: Close must return within its bound every time, and the
// retained messages must be on disk after it.
func TestBrokerCloseIsBoundedWhileClientsLeave(t *testing.T) {
	const rounds, clients = 25, 6
	for round := range rounds {
		dir := t.TempDir()
		b, err := StartBroker(BrokerOptions{Listen: "127.0.0.1:0", AllowAnonymous: true, DataDir: dir, BaseTopic: base, Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		var cls []mqtt.Client
		for i := range clients {
			c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + b.Addr().String()).
				SetClientID(fmt.Sprintf("leaver-%d-%d", round, i)).SetAutoReconnect(false))
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			cls = append(cls, c)
		}
		if tok := cls[0].Publish("kept/"+strconv.Itoa(round), 1, true, "x"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		closed := make(chan struct{})
		go func() {
			b.Close()
			close(closed)
		}()
		for _, c := range cls {
			go c.Disconnect(0)
		}
		select {
		case <-closed:
		case <-time.After(brokerCloseTimeout + 5*time.Second):
			t.Fatalf("round %d: Close did not return within its bound", round)
		}
		data, err := os.ReadFile(filepath.Join(dir, "broker-retained.json"))
		if err != nil || !strings.Contains(string(data), `"kept/`+strconv.Itoa(round)+`"`) {
			t.Fatalf("round %d: retained messages not saved at close: %v %s", round, err, data)
		}
	}
}
