package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Smartcar is what the bridge needs from the Smartcar API.
type Smartcar interface {
	ChargePortDoor(ctx context.Context, v smartcar.Vehicle, a smartcar.Action) error
	TeslaCharge(ctx context.Context, vehicleID string) (smartcar.Charge, error)
}

// publisher sends one message; it must not block on the network.
type publisher interface {
	publish(topic string, retained bool, payload []byte)
}

// Cover states as the discovery payload declares them; "None" is HA's literal for
// unknown.
const (
	stateOpen    = discovery.StateOpen
	stateClosed  = discovery.StateClosed
	stateOpening = discovery.StateOpening
	stateClosing = discovery.StateClosing
	stateUnknown = "None"
)

// worker owns one vehicle: its state, attributes and availability are touched by its
// run goroutine only, so commands and reads never race on what they publish.
type worker struct {
	vehicle Vehicle
	topics  discovery.Topics
	car     Smartcar
	out     publisher
	log     logrus.FieldLogger
	mail    *mailbox
	poll    time.Duration
	now     func() time.Time

	state     string
	attrs     attributes
	available bool
}

// attributes is the cover's json_attributes payload (SPEC §4).
type attributes struct {
	LastCommand string     `json:"last_command,omitempty"`
	Result      string     `json:"result,omitempty"` // success or error
	Error       *errorInfo `json:"error"`
	UpdatedAt   *time.Time `json:"updated_at"`
	Source      string     `json:"source,omitempty"` // command or poll
}

type errorInfo struct {
	Type        string `json:"type"`
	Code        string `json:"code,omitempty"`
	Description string `json:"description,omitempty"`
	RequestID   string `json:"request_id,omitempty"`
	Resolution  string `json:"resolution,omitempty"`
	StatusCode  int    `json:"status_code,omitempty"`
}

func newErrorInfo(err error) *errorInfo {
	var se *smartcar.Error
	if errors.As(err, &se) {
		return &errorInfo{Type: se.Type, Code: se.Code, Description: se.Description, RequestID: se.RequestID, Resolution: se.Resolution, StatusCode: se.StatusCode}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &errorInfo{Type: "TIMEOUT", Description: err.Error()}
	}
	return &errorInfo{Type: "NETWORK", Description: err.Error()}
}

func newWorker(v Vehicle, topics discovery.Topics, car Smartcar, out publisher, poll time.Duration, log logrus.FieldLogger) *worker {
	return &worker{
		vehicle:   v,
		topics:    topics,
		car:       car,
		out:       out,
		log:       log.WithField("vehicle", v.ID),
		mail:      newMailbox(),
		poll:      poll,
		now:       time.Now,
		state:     stateUnknown,
		available: true,
	}
}

// run serves the mailbox until stop is cancelled. Smartcar calls run under call, which
// outlives stop by the shutdown grace so that a command already sent can finish.
func (w *worker) run(stop, call context.Context) {
	var tick <-chan time.Time
	if w.vehicle.canRead() {
		w.mail.requestRead() // the initial state: one read
		if w.poll > 0 {
			t := time.NewTicker(w.poll)
			defer t.Stop()
			tick = t.C
		}
	}
	for {
		select {
		case <-stop.Done():
			return
		case <-tick:
			w.mail.requestRead()
		case <-w.mail.wake:
		}
		for stop.Err() == nil {
			j, action := w.mail.take()
			if j == jobNone {
				break
			}
			switch j {
			case jobRepublish:
				w.publishAll()
			case jobCommand:
				w.command(call, action)
				w.mail.done()
			case jobRead:
				w.read(call)
			}
		}
	}
}

func (w *worker) command(ctx context.Context, a smartcar.Action) {
	before := w.state
	target, transit := stateOpen, stateOpening
	if a == smartcar.Close {
		target, transit = stateClosed, stateClosing
	}
	w.setState(transit)
	w.log.WithField("action", a).Info("sending charge port command to Smartcar")
	err := w.car.ChargePortDoor(ctx, w.vehicle.Vehicle, a)
	now := w.now()
	w.attrs = attributes{LastCommand: string(a), Source: "command", UpdatedAt: &now}
	if err == nil {
		w.attrs.Result = "success"
		w.setState(target)
		w.publishAttributes()
		return
	}
	w.attrs.Result, w.attrs.Error = "error", newErrorInfo(err)
	w.log.WithError(err).WithField("action", a).Warn("charge port command failed")
	w.setState(before)
	w.publishAttributes()
	w.checkAccess(err)
	// A command that timed out may still have reached the car: learn the truth with a
	// read rather than guessing, and never by sending it again.
	if w.vehicle.canRead() && isTimeout(err) {
		w.mail.requestRead()
	}
}

func (w *worker) read(ctx context.Context) {
	charge, err := w.car.TeslaCharge(ctx, w.vehicle.ID)
	now := w.now()
	if err != nil {
		w.log.WithError(err).Warn("reading the charge port state failed")
		w.attrs.Result, w.attrs.Error, w.attrs.Source, w.attrs.UpdatedAt = "error", newErrorInfo(err), "poll", &now
		w.publishAttributes()
		w.checkAccess(err)
		return
	}
	w.attrs = attributes{LastCommand: w.attrs.LastCommand, Result: "success", Source: "poll", UpdatedAt: &now}
	w.setAvailable(true)
	switch {
	case charge.ChargePortOpen == nil:
		w.setState(stateUnknown)
	case *charge.ChargePortOpen:
		w.setState(stateOpen)
	default:
		w.setState(stateClosed)
	}
	w.publishAttributes()
}

// checkAccess marks the vehicle unavailable when Smartcar says the daemon may no longer
// act for the user: the refresh token was refused, or access was revoked.
func (w *worker) checkAccess(err error) {
	var se *smartcar.Error
	if !errors.As(err, &se) {
		return
	}
	if se.Code == "invalid_grant" || se.Type == "AUTHENTICATION" {
		w.setAvailable(false)
	}
}

func (w *worker) setState(s string) {
	w.state = s
	w.out.publish(w.topics.State, true, []byte(s))
}

func (w *worker) setAvailable(ok bool) {
	if ok == w.available {
		return
	}
	w.available = ok
	w.publishAvailability()
}

func (w *worker) publishAvailability() {
	payload := discovery.PayloadOnline
	if !w.available {
		payload = discovery.PayloadOffline
	}
	w.out.publish(w.topics.Availability, true, []byte(payload))
}

func (w *worker) publishAttributes() {
	data, err := json.Marshal(w.attrs)
	if err != nil { // cannot happen with these types; say so loudly if it ever does
		w.log.WithError(err).Error("encode attributes")
		return
	}
	w.out.publish(w.topics.Attributes, true, data)
}

// publishAll sends everything the worker knows, after a (re)connect or HA's birth.
func (w *worker) publishAll() {
	w.publishAvailability()
	w.out.publish(w.topics.State, true, []byte(w.state))
	w.publishAttributes()
}

func isTimeout(err error) bool {
	var se *smartcar.Error
	if errors.As(err, &se) {
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout")
}
