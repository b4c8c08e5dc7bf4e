package bridge

import (
	"sync"

	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// mailbox is a vehicle worker's inbox. It holds at most one pending command (a newer
// one replaces it: only the latest wish counts), a flag asking for a state read, and a
// flag asking to republish what the worker knows. MQTT handlers put into it without
// ever blocking; the worker takes from it one job at a time.
type mailbox struct {
	wake chan struct{} // capacity 1: "there is something to take"

	mu        sync.Mutex
	command   smartcar.Action // pending; "" for none
	inFlight  smartcar.Action // being sent to Smartcar now; "" for none
	read      bool
	republish bool
	login     bool
	// deliveries are Smartcar's webhook deliveries, oldest first.
	deliveries []Delivery
}

func newMailbox() *mailbox { return &mailbox{wake: make(chan struct{}, 1)} }

// putCommand queues a. A command equal to the one in flight is dropped and also
// cancels any queued one, since the car is already heading where the user wants.
func (m *mailbox) putCommand(a smartcar.Action) (queued bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a == m.inFlight {
		m.command = ""
		return false
	}
	m.command = a
	m.signal()
	return true
}

func (m *mailbox) requestRead() {
	m.mu.Lock()
	m.read = true
	m.signal()
	m.mu.Unlock()
}

func (m *mailbox) requestRepublish() {
	m.mu.Lock()
	m.republish = true
	m.signal()
	m.mu.Unlock()
}

func (m *mailbox) requestCheckLogin() {
	m.mu.Lock()
	m.login = true
	m.signal()
	m.mu.Unlock()
}

type job int

const (
	jobNone job = iota
	jobRepublish
	jobCheckLogin
	jobDeliveries
	jobCommand
	jobRead
)

// take returns the next job, republish first (cheap, and it is why HA is waiting),
// then a login check (it decides whether calls can work), then webhook
// deliveries (no call: HA gets them at once), then a command, then a read. A
// command taken becomes the one in flight until done; deliveries are then
// taken with takeDeliveries.
func (m *mailbox) take() (job, smartcar.Action) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.republish:
		m.republish = false
		return jobRepublish, ""
	case m.login:
		m.login = false
		return jobCheckLogin, ""
	case len(m.deliveries) > 0:
		return jobDeliveries, ""
	case m.command != "":
		a := m.command
		m.command, m.inFlight = "", a
		return jobCommand, a
	case m.read:
		m.read = false
		return jobRead, ""
	}
	return jobNone, ""
}

// done marks the in-flight command finished.
func (m *mailbox) done() {
	m.mu.Lock()
	m.inFlight = ""
	m.mu.Unlock()
}

// signal must be called with mu held.
func (m *mailbox) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}
