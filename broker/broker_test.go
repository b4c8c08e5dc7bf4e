package broker

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// pahoClient connects a paho (MQTT 3.1.1) client, as Home Assistant's is.
func pahoClient(t testing.TB, url, id, user, pass string) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("connect %s: no CONNACK within 10 s", id)
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func TestBrokerRefusesWrongCredentials(t *testing.T) {
	b := startBroker(t, Options{})
	creds := b.BridgeCredentials()
	url := "tcp://" + b.Addr().String()
	for _, c := range []struct{ user, pass string }{{"", ""}, {haUser, "wrong"}, {haUser, "ha-secret"}, {creds.Username, creds.Password}} {
		if _, err := pahoClient(t, url, "intruder", c.user, c.pass); err == nil {
			t.Errorf("user %q with password %q was let in", c.user, c.pass)
		}
	}
	if _, err := pahoClient(t, url, "ha", haUser, haPass); err != nil {
		t.Errorf("Home Assistant's account: %v", err)
	}
	if _, err := pahoClient(t, creds.URL, "daemon", creds.Username, creds.Password); err != nil {
		t.Errorf("the daemon's account on its loopback listener: %v", err)
	}
}

// Home Assistant's account may not forge the daemon's state, not even through its
// will, but may send commands; the daemon's account writes its state.
func TestBrokerGuardsTheDaemonsState(t *testing.T) {
	b := startBroker(t, Options{})
	state, command := base+"/V1/charge_port/state", base+"/V1/charge_port/set"
	got := make(chan mqtt.Message, 16)
	watcher, err := pahoClient(t, "tcp://"+b.Addr().String(), "watcher", haUser, haPass)
	if err != nil {
		t.Fatal(err)
	}
	if tok := watcher.Subscribe(base+"/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	// A will on the state topic is dropped at CONNECT: the client leaving without
	// DISCONNECT (below) publishes nothing.
	willer, _ := connectRaw(t, b.Addr().String(), 4, connectParams{id: "willer", user: haUser, pass: haPass,
		will: &rawWill{topic: state, payload: "open", retain: true}})
	spoofer, _ := connectRaw(t, b.Addr().String(), 4, connectParams{id: "spoofer", user: haUser, pass: haPass})
	if _, err := spoofer.publish(state, "open", 0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := spoofer.publish(command, "OPEN", 1, false); err != nil {
		t.Fatal(err)
	}
	daemon, err := pahoClient(t, b.BridgeCredentials().URL, "daemon", b.BridgeCredentials().Username, b.BridgeCredentials().Password)
	if err != nil {
		t.Fatal(err)
	}
	if tok := daemon.Publish(state, 1, true, "opening"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the daemon's publish: %v", tok.Error())
	}
	// Messages from different clients may arrive in any order: wait for both
	// allowed ones, and see that no forged one came with them.
	seen := map[string]string{}
	deadline := time.After(10 * time.Second)
	for seen[command] == "" || seen[state] == "" {
		select {
		case m := <-got:
			if m.Topic() == state && string(m.Payload()) == "open" {
				t.Fatalf("a forged state reached subscribers")
			}
			seen[m.Topic()] = string(m.Payload())
		case <-deadline:
			t.Fatalf("messages seen: %v; want the command and the daemon's state", seen)
		}
	}
	willer.conn.Close()
	b.Close() // waits for every client to be gone, its will sent or not
	store, err := openRetainedStore(b.store.path, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Stop()
	stored, _ := store.StoredRetainedMessages()
	for _, m := range stored {
		if m.TopicName == state && string(m.Payload) != "opening" {
			t.Errorf("retained state %q, want the daemon's", m.Payload)
		}
	}
}

func TestBrokerKeepsRetainedAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, Options{DataDir: dir})
	c, err := pahoClient(t, "tcp://"+b.Addr().String(), "publisher", haUser, haPass)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish("somebody/else/retained", 1, true, "kept"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	b.Close()

	b = startBroker(t, Options{DataDir: dir})
	got := make(chan mqtt.Message, 1)
	late, err := pahoClient(t, "tcp://"+b.Addr().String(), "late", haUser, haPass)
	if err != nil {
		t.Fatal(err)
	}
	late.Subscribe("somebody/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m })
	select {
	case m := <-got:
		if !m.Retained() || string(m.Payload()) != "kept" {
			t.Errorf("got %q retained=%v", m.Payload(), m.Retained())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the retained message did not survive the restart")
	}
}

// Close returns, and saves the retained messages, while paho clients disconnect at
// the same time, again and again.
func TestBrokerCloseWhileClientsLeave(t *testing.T) {
	const rounds, clients = 25, 6
	for round := range rounds {
		dir := t.TempDir()
		b := startBroker(t, Options{AllowAnonymous: true, DataDir: dir})
		var cls []mqtt.Client
		for i := range clients {
			c, err := pahoClient(t, "tcp://"+b.Addr().String(), fmt.Sprintf("leaver-%d-%d", round, i), "", "")
			if err != nil {
				t.Fatal(err)
			}
			cls = append(cls, c)
		}
		if tok := cls[0].Publish("kept/"+strconv.Itoa(round), 1, true, "x"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		for _, c := range cls {
			go c.Disconnect(0)
		}
		b.Close()
		store, err := openRetainedStore(filepath.Join(dir, "broker-retained.json"), testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := store.StoredRetainedMessages()
		store.Stop()
		if len(stored) != 1 || stored[0].TopicName != "kept/"+strconv.Itoa(round) {
			t.Fatalf("round %d: retained messages after Close: %+v", round, stored)
		}
	}
}
