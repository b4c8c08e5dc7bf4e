package itest

import (
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fatalTB records the first Fatal instead of failing the test, and ends the
// goroutine that called it, as testing does; the rest is the real test's.
type fatalTB struct {
	testing.TB
	fatal chan string
}

func newFatalTB(t *testing.T) *fatalTB { return &fatalTB{TB: t, fatal: make(chan string, 1)} }

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.fatal <- fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn in a goroutine of its own (Fatalf ends it) and returns what it
// returned, or the Fatal message.
func (f *fatalTB) run(t *testing.T, fn func() string) (got, fatal string) {
	t.Helper()
	done := make(chan string, 1)
	go func() { done <- fn() }()
	select {
	case got = <-done:
	case fatal = <-f.fatal:
	case <-time.After(20 * time.Second):
		t.Fatal("neither a result nor a Fatal within 20 s")
	}
	return got, fatal
}

func TestOutputWaitLine(t *testing.T) {
	var o Output
	fmt.Fprint(&o, "first line\nsecond ")
	fmt.Fprint(&o, "line\nthird, unterminated")
	if got := o.WaitLine(t, "second", time.Second); got != "second line" {
		t.Errorf("WaitLine = %q, want the whole line without its newline", got)
	}
	if got := o.Text(); got != "first line\nsecond line\nthird, unterminated" {
		t.Errorf("Text = %q", got)
	}

	// A line being written is not matched until it is whole (or the output ends).
	f := newFatalTB(t)
	if _, fatal := f.run(t, func() string { return o.WaitLine(f, "third", 50*time.Millisecond) }); !strings.Contains(fatal, "within") {
		t.Errorf("an unterminated line was matched, or the timeout said %q", fatal)
	}
	o.Close()
	if got := o.WaitLine(t, "third", time.Second); got != "third, unterminated" {
		t.Errorf("after Close, WaitLine = %q, want the last, unterminated line", got)
	}
}

// Close ends a wait at once, however long its timeout.
func TestOutputCloseEndsWaiting(t *testing.T) {
	var o Output
	f := newFatalTB(t)
	cmd := exec.Command("sh", "-c", "echo starting; exit 3")
	cmd.Stdout = &o
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		o.Close()
	}()
	_, fatal := f.run(t, func() string { return o.WaitLine(f, "ready", time.Hour) })
	if !strings.Contains(fatal, "ended without") || !strings.Contains(fatal, "starting") {
		t.Errorf("Fatal = %q, want the output's end and what it held", fatal)
	}
}

func TestOutputKeepsTheFirstMB(t *testing.T) {
	var o Output
	line := strings.Repeat("x", 1023) + "\n"
	for range 2048 {
		if n, err := o.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v: the child's writes must never fail", n, err)
		}
	}
	if got := len(o.Text()); got < maxOutput || got > maxOutput+100 {
		t.Errorf("Text holds %d bytes, want the first MB and a note", got)
	}
}

// Mosquitto that exits at once (here on an unknown option) fails Start at once,
// with its error, not after the 10 s wait for its listener.
func TestMosquittoStartFailsFastWhenItExits(t *testing.T) {
	mosquittoBinary(t)
	f := newFatalTB(t)
	began := time.Now()
	_, fatal := f.run(t, func() string {
		NewMosquitto(f, "tcp", "no_such_option 1\n")
		return ""
	})
	if !strings.Contains(fatal, "ended without") || !strings.Contains(fatal, "no_such_option") {
		t.Errorf("Fatal = %q, want mosquitto's exit and its error", fatal)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Start took %v to notice mosquitto had exited", took)
	}
}

func TestMosquittoStartAndRestart(t *testing.T) {
	m := NewMosquitto(t, "tcp", "")
	addr := strings.TrimPrefix(m.URL(), "tcp://")
	for i := range 2 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("start %d: mosquitto is not listening: %v", i+1, err)
		}
		c.Close()
		m.Stop()
		m.Start()
	}
}
