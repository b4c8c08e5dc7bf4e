// Package itest holds what integration tests and benchmarks of several packages
// share: an external broker (Debian's mosquitto) run as a child process, and a
// watcher for a child's output. Only _test.go files import it.
package itest

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
)

// Mosquitto is one test's broker process. Stop kills it (SIGKILL: a crash, no clean
// goodbye to its clients) and Start runs it again on the same port, with the same
// configuration (persistence off: it comes back empty, as after losing its disk).
type Mosquitto struct {
	tb   testing.TB
	bin  string
	conf string
	url  string

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	lines  *LineWatch
}

// NewMosquitto runs Debian's mosquitto on a free loopback port for one test,
// reached with scheme (tcp or ssl); extraConf is added to its configuration (e.g.
// the listener's certfile and keyfile). Without mosquitto the test is skipped,
// unless REQUIRE_MOSQUITTO=1 (CI sets it), so CI never skips it silently.
func NewMosquitto(tb testing.TB, scheme, extraConf string) *Mosquitto {
	tb.Helper()
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
			tb.Fatal("mosquitto is required (REQUIRE_MOSQUITTO=1) but not installed: apt-get install mosquitto")
		}
		tb.Skip("mosquitto not installed: skipping the external-broker test (apt-get install mosquitto, or run .ci/run)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(tb.TempDir(), "mosquitto.conf")
	body := fmt.Sprintf("listener %d 127.0.0.1\n%sallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n", port, extraConf)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	m := &Mosquitto{tb: tb, bin: bin, conf: conf, url: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)}
	tb.Cleanup(m.Stop)
	m.Start()
	return m
}

// URL is where clients reach the broker, e.g. tcp://127.0.0.1:41883.
func (m *Mosquitto) URL() string { return m.url }

// Start runs mosquitto and returns once it has opened its listener: it waits on the
// line saying so, not on a clock.
func (m *Mosquitto) Start() {
	m.tb.Helper()
	if m.cmd != nil {
		m.tb.Fatal("mosquitto is already running")
	}
	m.lines = NewLineWatch(" running") // "mosquitto version 2.0.11 running"
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stderr = m.lines // exec copies in its own goroutine; Wait waits for it
	if err := cmd.Start(); err != nil {
		m.tb.Fatalf("start mosquitto: %v", err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(m.exited)
	select {
	case <-m.lines.Found():
	case <-m.exited:
		m.cmd = nil
		m.tb.Fatalf("mosquitto exited before opening its listener:\n%s", m.lines.Text())
	case <-time.After(10 * time.Second):
		m.tb.Fatalf("mosquitto did not open its listener within 10 s:\n%s", m.lines.Text())
	}
}

// Stop kills mosquitto and waits for it to be gone. It may be called when stopped.
func (m *Mosquitto) Stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// LineWatch is an io.Writer for a child's output: it keeps the text (the first
// MB) and closes Found at the first line containing its needle.
type LineWatch struct {
	needle string
	found  chan struct{}

	mu      sync.Mutex
	buf     strings.Builder
	partial string
	closed  bool
}

// NewLineWatch watches for a line containing needle.
func NewLineWatch(needle string) *LineWatch {
	return &LineWatch{needle: needle, found: make(chan struct{})}
}

// Found is closed once a line containing the needle has been written.
func (w *LineWatch) Found() <-chan struct{} { return w.found }

func (w *LineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() < 1<<20 {
		w.buf.Write(p)
	}
	lines := strings.Split(w.partial+string(p), "\n")
	w.partial = lines[len(lines)-1] // "" when p ended a line
	for _, l := range lines[:len(lines)-1] {
		if !w.closed && strings.Contains(l, w.needle) {
			close(w.found)
			w.closed = true
		}
	}
	return len(p), nil
}

// Text is what was written so far.
func (w *LineWatch) Text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
