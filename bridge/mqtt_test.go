package bridge

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// message is one publish seen by a test client.
type message struct {
	Topic    string
	Payload  string
	Retained bool
}

// recorder is an MQTT client playing Home Assistant or a user: it records every
// message it receives so tests can wait for one, with a deadline, instead of sleeping.
type recorder struct {
	t      *testing.T
	client mqtt.Client

	mu      sync.Mutex
	msgs    []message
	changed chan struct{} // closed and replaced on every new message
}

// connectRecorder connects to url and subscribes to filters (QoS 1).
func connectRecorder(t *testing.T, url, user, pass string, filters ...string) *recorder {
	t.Helper()
	r := &recorder{t: t, changed: make(chan struct{})}
	opts := mqtt.NewClientOptions().AddBroker(url).SetUsername(user).SetPassword(pass).
		SetClientID(fmt.Sprintf("test-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true)
	r.client = mqtt.NewClient(opts)
	if tok := r.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("test client: connect to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { r.client.Disconnect(50) })
	for _, f := range filters {
		tok := r.client.Subscribe(f, 1, r.record)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("test client: subscribe %s: %v", f, tok.Error())
		}
		// paho reports a refused subscription only in the SUBACK's return code.
		if code := tok.(*mqtt.SubscribeToken).Result()[f]; code > 2 {
			t.Fatalf("test client: subscribe %s refused by the broker (return code %#x)", f, code)
		}
	}
	return r
}

func (r *recorder) record(_ mqtt.Client, m mqtt.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, message{Topic: m.Topic(), Payload: string(m.Payload()), Retained: m.Retained()})
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) snapshot() ([]message, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]message(nil), r.msgs...), r.changed
}

// waitFor blocks until ok holds for the messages received so far, or fails the test.
func (r *recorder) waitFor(what string, ok func([]message) bool) []message {
	r.t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		msgs, changed := r.snapshot()
		if ok(msgs) {
			return msgs
		}
		select {
		case <-changed:
		case <-deadline.C:
			r.t.Fatalf("timed out waiting for %s; received:\n%s", what, dump(msgs))
		}
	}
}

// waitPayload waits for a message on topic with the given payload, seen after the
// first `after` messages, and returns its index.
func (r *recorder) waitPayload(after int, topic, payload string) int {
	r.t.Helper()
	idx := -1
	r.waitFor(fmt.Sprintf("%s = %q", topic, payload), func(ms []message) bool {
		for i := after; i < len(ms); i++ {
			if ms[i].Topic == topic && ms[i].Payload == payload {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

func (r *recorder) count() int {
	msgs, _ := r.snapshot()
	return len(msgs)
}

func (r *recorder) publish(topic string, retained bool, payload string) {
	r.t.Helper()
	if tok := r.client.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("test client: publish %s: %v", topic, tok.Error())
	}
}

func dump(msgs []message) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "  %s retained=%v %.200s\n", m.Topic, m.Retained, m.Payload)
	}
	return b.String()
}

// mosquitto is one test's broker process. Stop kills it (SIGKILL: a crash, no clean
// goodbye to its clients) and Start runs it again on the same port, with the same
// configuration (persistence off: it comes back empty, as after losing its disk).
type mosquitto struct {
	t    *testing.T
	bin  string
	conf string
	url  string

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	lines  *lineWatch
}

// newMosquitto runs Debian's mosquitto on a free loopback port for one test.
// Without mosquitto the test is skipped, unless REQUIRE_MOSQUITTO=1 (CI sets it),
// so CI never skips it silently.
func newMosquitto(t *testing.T) *mosquitto {
	t.Helper()
	return newMosquittoWith(t, "tcp", "")
}

// newMosquittoWith is newMosquitto with more settings for its listener (e.g. TLS
// certfile/keyfile), reached with scheme (tcp or ssl).
func newMosquittoWith(t *testing.T, scheme, listenerOptions string) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, statErr := os.Stat(p); statErr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("REQUIRE_MOSQUITTO") == "1" {
			t.Fatal("mosquitto is required (REQUIRE_MOSQUITTO=1) but not installed: apt-get install mosquitto")
		}
		t.Skip("mosquitto not installed: skipping the external-broker test (apt-get install mosquitto, or run .ci/run)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	body := fmt.Sprintf("listener %d 127.0.0.1\n%sallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n", port, listenerOptions)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &mosquitto{t: t, bin: bin, conf: conf, url: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)}
	t.Cleanup(m.Stop)
	m.Start()
	return m
}

// Start runs mosquitto and returns once it has opened its listener: it waits on the
// line saying so, not on a clock.
func (m *mosquitto) Start() {
	m.t.Helper()
	if m.cmd != nil {
		m.t.Fatal("mosquitto is already running")
	}
	m.lines = newLineWatch(" running")
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stderr = m.lines // exec copies in its own goroutine; Wait waits for it
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(m.exited)
	select {
	case <-m.lines.found:
	case <-m.exited:
		m.cmd = nil
		m.t.Fatalf("mosquitto exited before opening its listener:\n%s", m.lines.text())
	case <-time.After(10 * time.Second):
		m.t.Fatalf("mosquitto did not open its listener within 10 s:\n%s", m.lines.text())
	}
}

// Stop kills mosquitto and waits for it to be gone. It may be called when stopped.
func (m *mosquitto) Stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// lineWatch is an io.Writer for a child's output: it keeps the text and closes found
// at the first line ending with suffix.
type lineWatch struct {
	suffix string
	found  chan struct{}

	mu      sync.Mutex
	buf     strings.Builder
	partial string
	closed  bool
}

func newLineWatch(suffix string) *lineWatch {
	return &lineWatch{suffix: suffix, found: make(chan struct{})}
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() < 1<<20 {
		w.buf.Write(p)
	}
	lines := strings.Split(w.partial+string(p), "\n")
	w.partial = lines[len(lines)-1] // "" when p ended a line
	for _, l := range lines[:len(lines)-1] {
		if !w.closed && strings.HasSuffix(l, w.suffix) {
			close(w.found)
			w.closed = true
		}
	}
	return len(p), nil
}

func (w *lineWatch) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
