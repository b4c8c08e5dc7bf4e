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
}

// NewMosquitto runs Debian's mosquitto on a free loopback port for one test,
// reached with scheme (tcp or ssl); extraConf is added to its configuration (e.g.
// the listener's certfile and keyfile). Without mosquitto the test is skipped,
// unless REQUIRE_MOSQUITTO=1 (CI sets it), so CI never skips it silently.
func NewMosquitto(tb testing.TB, scheme, extraConf string) *Mosquitto {
	tb.Helper()
	bin := mosquittoBinary(tb)
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

// mosquittoBinary finds mosquitto, or skips the test (fails it with
// REQUIRE_MOSQUITTO=1).
func mosquittoBinary(tb testing.TB) string {
	tb.Helper()
	if bin, err := exec.LookPath("mosquitto"); err == nil {
		return bin
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Absent(tb, "REQUIRE_MOSQUITTO", "mosquitto not installed: the external-broker test needs it (apt-get install mosquitto, or run .ci/run)")
	return ""
}

// URL is where clients reach the broker, e.g. tcp://127.0.0.1:41883.
func (m *Mosquitto) URL() string { return m.url }

// Start runs mosquitto and returns once it has opened its listener: it waits on the
// line saying so, not on a clock, and fails at once if mosquitto exits first.
func (m *Mosquitto) Start() {
	m.tb.Helper()
	if m.cmd != nil {
		m.tb.Fatal("mosquitto is already running")
	}
	log := &Output{}
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stderr = log // exec copies in its own goroutine; Wait waits for it
	if err := cmd.Start(); err != nil {
		m.tb.Fatalf("start mosquitto: %v", err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		log.Close()
		close(exited)
	}(m.exited)
	log.WaitLine(m.tb, " running", 10*time.Second) // "mosquitto version 2.0.11 running"
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
