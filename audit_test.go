package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// tokenSecrets is what the token store holds now; any error gives nothing (the
// store is replaced atomically, so that is only "not yet").
func tokenSecrets(dataDir string) []string {
	tok, err := smartcar.NewTokenStore(dataDir).Load()
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range []string{tok.AccessToken, tok.RefreshToken} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

var (
	listenField = regexp.MustCompile(`listen="?([0-9.]+:[0-9]+)`)
	stateDir    = regexp.MustCompile(`State is kept in (.+)\. Stop with`)
)

// TestLogAudit runs the demo as a user would, at LOG_LEVEL=debug, through a whole
// session: connect, OPEN, a refresh, /metrics and /healthz, SIGTERM. Then no secret
// may appear in anything it printed or served: the client secret, the broker
// password, or any access or refresh token the store held during the run.
func TestLogAudit(t *testing.T) {
	httpAddr := freeAddr(t)
	dataDir := t.TempDir()
	const brokerUser, brokerPassword = "ha-audit", "broker-pw-6c1f0e2d"
	d := startDemo(t,
		"DATA_DIR="+dataDir, "HTTP_LISTEN="+httpAddr,
		"BROKER_LISTEN=127.0.0.1:0", "LOG_LEVEL=debug",
		"BROKER_USERNAME="+brokerUser, "BROKER_PASSWORD="+brokerPassword,
	)
	stdout, stderr := d.stdout, d.stderr

	// Every token the store holds at some point of the run, as early as we can see it:
	// the demo's seed refresh token is written before the help is printed.
	// The help says where the state is (DATA_DIR/demo: the demo keeps its simulated
	// login apart from a real one).
	where := stateDir.FindStringSubmatch(stdout.WaitLine(t, "State is kept in", 20*time.Second))
	if where == nil || !strings.HasPrefix(where[1], dataDir) {
		t.Fatalf("the demo help does not say where the state is kept, under %s:\n%s", dataDir, stdout.Text())
	}
	secrets := map[string]bool{}
	grab := func() {
		for _, s := range tokenSecrets(where[1]) {
			secrets[s] = true
		}
	}
	grab()
	if !strings.Contains(stdout.Text(), smartcar.SimTeslaID) {
		t.Errorf("the demo help does not name the vehicle:\n%s", stdout.Text())
	}
	m := listenField.FindStringSubmatch(stderr.WaitLine(t, "embedded MQTT broker started", 20*time.Second))
	if m == nil {
		t.Fatalf("no listen address in the broker's start line:\n%s", stderr.Text())
	}
	stderr.WaitLine(t, "connected to the MQTT broker", 20*time.Second)
	grab()

	// Home Assistant, with the broker account.
	type msg struct{ topic, payload string }
	var mu sync.Mutex
	var got []msg
	changed := make(chan struct{})
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + m[1]).SetClientID("audit-ha").
		SetUsername(brokerUser).SetPassword(brokerPassword).SetAutoReconnect(false)
	ha := mqtt.NewClient(opts)
	if tok := ha.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the demo's broker at %s: %v", m[1], tok.Error())
	}
	defer ha.Disconnect(50)
	const base = "smartcar2mqtt/" + smartcar.SimTeslaID
	if tok := ha.Subscribe(base+"/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		got = append(got, msg{m.Topic(), string(m.Payload())})
		close(changed)
		changed = make(chan struct{})
		mu.Unlock()
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	waitMsg := func(after int, what string, ok func(msg) bool) int {
		t.Helper()
		deadline := time.NewTimer(20 * time.Second)
		defer deadline.Stop()
		for {
			mu.Lock()
			msgs, ch := got, changed
			mu.Unlock()
			for i := after; i < len(msgs); i++ {
				if ok(msgs[i]) {
					return i
				}
			}
			select {
			case <-ch:
			case <-deadline.C:
				t.Fatalf("no %s from the demo within 20 s; got %v", what, msgs)
			}
		}
	}
	publish := func(topic, payload string) {
		t.Helper()
		if tok := ha.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	n := waitMsg(0, "closed door", func(m msg) bool { return m.topic == base+"/charge_port/state" && m.payload == "closed" })
	publish(base+"/charge_port/set", "OPEN")
	n = waitMsg(n, "open door", func(m msg) bool { return m.topic == base+"/charge_port/state" && m.payload == "open" })
	grab()
	pressed := time.Now()
	publish(base+"/refresh", "PRESS")
	waitMsg(n, "a read after the refresh", func(m msg) bool {
		var a struct {
			Source    string    `json:"source"`
			UpdatedAt time.Time `json:"updated_at"`
		}
		return m.topic == base+"/charge_port/attributes" && json.Unmarshal([]byte(m.payload), &a) == nil &&
			a.Source == "poll" && !a.UpdatedAt.Before(pressed)
	})
	grab()

	pages := fetchPages(t, httpAddr, "/metrics", "/healthz")
	if !strings.Contains(pages[0], `endpoint="charge_port_door"`) {
		t.Errorf("/metrics does not count the door command: the session did not happen as planned\n%s", pages[0])
	}

	d.stop(t)
	grab()

	if len(secrets) < 2 {
		t.Fatalf("only %d tokens collected from the token store: the audit would prove little", len(secrets))
	}
	audited := map[string]string{
		"stdout": stdout.Text(), "stderr": stderr.Text(), "/metrics": pages[0], "/healthz": pages[1],
	}
	needles := map[string]string{
		"the client secret":   "demo-secret",
		"the broker password": brokerPassword,
	}
	i := 0
	for s := range secrets {
		i++
		kind := "an access token"
		if strings.HasPrefix(s, "sim-rt-") {
			kind = "a refresh token"
		}
		needles[fmt.Sprintf("%s (#%d)", kind, i)] = s
		// A token cut short in a log line is still a leak: look for its random part's
		// head and tail too.
		if random := strings.TrimPrefix(strings.TrimPrefix(s, "sim-at-"), "sim-rt-"); len(random) >= 24 {
			needles[fmt.Sprintf("the head of %s (#%d)", kind, i)] = random[:12]
			needles[fmt.Sprintf("the tail of %s (#%d)", kind, i)] = random[len(random)-12:]
		}
	}
	for where, text := range audited {
		for what, needle := range needles {
			if strings.Contains(text, needle) {
				t.Errorf("%s shows %s", where, what)
			}
		}
	}
	t.Logf("audited %d lines of stdout, %d of stderr, /metrics (%d bytes) and /healthz for %d secrets (%d tokens seen in the store)",
		strings.Count(stdout.Text(), "\n")+1, strings.Count(stderr.Text(), "\n")+1, len(pages[0]), len(needles), len(secrets))
	if !strings.Contains(stderr.Text(), "level=debug") {
		t.Log("note: the run logged nothing at debug level")
	}
}
