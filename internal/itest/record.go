package itest

import (
	"sync"
	"testing"
	"time"
)

// Record is what a test collects from another goroutine (MQTT messages, log
// entries, callbacks), in arrival order, and waits on: a wait wakes at each
// Add, never polls and never sleeps. The zero value is ready to use.
type Record[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced at each Add
}

// Add appends v and wakes every waiter.
func (r *Record[T]) Add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append(r.items, v)
	if r.changed != nil {
		close(r.changed)
	}
	r.changed = make(chan struct{})
}

// All is a copy of what was added so far.
func (r *Record[T]) All() []T {
	items, _ := r.snapshot()
	return items
}

// Len is how many items were added so far.
func (r *Record[T]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.items)
}

func (r *Record[T]) snapshot() ([]T, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return append([]T(nil), r.items...), r.changed
}

// WaitFor waits until ok holds for what was added so far, and returns it; the
// test fails, naming what, if that takes longer than timeout (a bound on a
// hang, not a measure: the wait ends at the Add that makes ok true).
func (r *Record[T]) WaitFor(t testing.TB, what string, timeout time.Duration, ok func([]T) bool) []T {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		items, changed := r.snapshot()
		if ok(items) {
			return items
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s; got %d items", timeout, what, len(items))
		}
	}
}
