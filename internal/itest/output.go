package itest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxOutput is how much of a child's output an Output keeps.
const maxOutput = 1 << 20

// Output is an io.Writer for a child's stdout or stderr: set it as cmd.Stdout or
// cmd.Stderr and os/exec copies into it (and Wait waits for the copy). It keeps
// the text, the first MB of it, and lets a test wait for a line. Call Close once
// cmd.Wait has returned: the output is then complete, and waiting for a line
// that never came ends at once. The zero value is ready to use.
type Output struct {
	mu        sync.Mutex
	text      []byte        // append only, at most maxOutput bytes
	truncated bool          // text stopped at maxOutput
	changed   chan struct{} // closed and replaced at each Write and at Close
	closed    bool
}

// Write keeps p, up to the first MB of all writes; it never fails, so the child
// is never blocked or cut off by its watcher.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	keep := p
	if room := maxOutput - len(o.text); len(keep) > room {
		keep, o.truncated = keep[:max(room, 0)], true
	}
	o.text = append(o.text, keep...)
	o.notifyLocked()
	return len(p), nil
}

// Close says the child has exited and its output is complete.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.notifyLocked()
	return nil
}

func (o *Output) notifyLocked() {
	if o.changed != nil {
		close(o.changed)
	}
	o.changed = make(chan struct{})
}

// Text is what was written so far.
func (o *Output) Text() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.truncated {
		return string(o.text) + "\n[output beyond 1 MB not kept]"
	}
	return string(o.text)
}

// WaitLine waits for a line containing substr and returns it (without its
// newline). It fails the test if none has come within timeout, or if the output
// was closed without one. Only whole lines are matched, and, once the output is
// closed, its unterminated last line.
func (o *Output) WaitLine(tb testing.TB, substr string, timeout time.Duration) string {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	searched := 0 // text[:searched] holds whole lines without a match
	for {
		o.mu.Lock()
		if o.changed == nil {
			o.changed = make(chan struct{})
		}
		// text only grows: the bytes of this snapshot never change.
		text, changed, closed := o.text, o.changed, o.closed
		o.mu.Unlock()

		end := bytes.LastIndexByte(text, '\n') + 1 // whole lines only
		if closed {
			end = len(text)
		}
		for _, line := range strings.SplitAfter(string(text[searched:end]), "\n") {
			if line != "" && strings.Contains(line, substr) {
				return strings.TrimSuffix(line, "\n")
			}
		}
		searched = max(searched, end)
		if closed {
			tb.Fatalf("the child's output ended without a line containing %q:\n%s", substr, o.Text())
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("no line containing %q within %v:\n%s", substr, timeout, o.Text())
		}
	}
}
