package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// childOutput collects a child's stream line by line and lets a test wait for a line.
type childOutput struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
	done    chan struct{} // closed at EOF
}

func collect(r io.Reader) *childOutput {
	c := &childOutput{changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		s := bufio.NewScanner(r)
		s.Buffer(make([]byte, 64<<10), 4<<20)
		for s.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, s.Text())
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	return c
}

// waitLine waits for a line containing substr and returns it.
func (c *childOutput) waitLine(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		lines, changed := c.lines, c.changed
		c.mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, substr) {
				return l
			}
		}
		select {
		case <-changed:
		case <-c.done:
			t.Fatalf("the child's output ended without %q:\n%s", substr, strings.Join(lines, "\n"))
		case <-deadline.C:
			t.Fatalf("no line with %q within 20 s:\n%s", substr, strings.Join(lines, "\n"))
		}
	}
}

func (c *childOutput) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// tokenSecrets reads what the token store holds now; a missing or half-read file
// gives nothing (the store is replaced atomically, so that is only "not yet").
func tokenSecrets(dataDir string) []string {
	data, err := os.ReadFile(filepath.Join(dataDir, "token.json"))
	if err != nil {
		return nil
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if json.Unmarshal(data, &tok) != nil {
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
	exe := testBinary(t)
	const brokerUser, brokerPassword = "ha-audit", "broker-pw-6c1f0e2d"
	cmd := exec.Command(exe, "demo")
	cmd.Env = []string{
		"SMARTCAR2MQTT_BE_MAIN=1", "DATA_DIR=" + dataDir, "HTTP_LISTEN=" + httpAddr,
		"BROKER_LISTEN=127.0.0.1:0", "LOG_LEVEL=debug",
		"BROKER_USERNAME=" + brokerUser, "BROKER_PASSWORD=" + brokerPassword,
	}
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	stdout, stderr := collect(stdoutPipe), collect(stderrPipe)
	go func() {
		<-stdout.done // Wait closes the pipes: read them to the end first
		<-stderr.done
		exitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()

	// Every token the store holds at some point of the run, as early as we can see it:
	// the demo's seed refresh token is written before the help is printed.
	// The help says where the state is (DATA_DIR/demo: the demo keeps its simulated
	// login apart from a real one).
	where := stateDir.FindStringSubmatch(stdout.waitLine(t, "State is kept in"))
	if where == nil || !strings.HasPrefix(where[1], dataDir) {
		t.Fatalf("the demo help does not say where the state is kept, under %s:\n%s", dataDir, stdout.text())
	}
	secrets := map[string]bool{}
	grab := func() {
		for _, s := range tokenSecrets(where[1]) {
			secrets[s] = true
		}
	}
	grab()
	if !strings.Contains(stdout.text(), smartcar.SimTeslaID) {
		t.Errorf("the demo help does not name the vehicle:\n%s", stdout.text())
	}
	m := listenField.FindStringSubmatch(stderr.waitLine(t, "embedded MQTT broker started"))
	if m == nil {
		t.Fatalf("no listen address in the broker's start line:\n%s", stderr.text())
	}
	stderr.waitLine(t, "connected to the MQTT broker")
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

	var pages []string
	for _, path := range []string{"/metrics", "/healthz"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pages = append(pages, string(body))
	}
	if !strings.Contains(pages[0], `endpoint="charge_port_door"`) {
		t.Errorf("/metrics does not count the door command: the session did not happen as planned\n%s", pages[0])
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("the demo did not exit cleanly on SIGTERM: %v", exitErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the demo did not exit within 15 s of SIGTERM")
	}
	grab()

	if len(secrets) < 2 {
		t.Fatalf("only %d tokens collected from the token store: the audit would prove little", len(secrets))
	}
	audited := map[string]string{
		"stdout": stdout.text(), "stderr": stderr.text(), "/metrics": pages[0], "/healthz": pages[1],
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
		strings.Count(stdout.text(), "\n")+1, strings.Count(stderr.text(), "\n")+1, len(pages[0]), len(needles), len(secrets))
	if !strings.Contains(stderr.text(), "level=debug") {
		t.Log("note: the run logged nothing at debug level")
	}
}
