package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Smartcar is what the bridge needs from the Smartcar API, whichever generation
// answers.
type Smartcar interface {
	ChargePortDoor(ctx context.Context, v smartcar.Vehicle, a smartcar.Action) error
	Read(ctx context.Context, v smartcar.Vehicle) (smartcar.ChargeState, error)
	// CheckLogin gets an access token without calling the API: how a vehicle
	// taken offline by a refused login learns, for free, that it works again.
	CheckLogin(ctx context.Context) error
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
	stateUnknown = discovery.PayloadNone
)

// loginProbeInterval is how often a vehicle offline for a refused login checks
// whether a new token has appeared. It costs no Smartcar call.
const loginProbeInterval = time.Minute

// worker owns one vehicle: its state, attributes and availability are touched by its
// run goroutine only, so commands and reads never race on what they publish.
type worker struct {
	vehicle Vehicle
	topics  discovery.Topics
	car     Smartcar
	out     publisher
	log     logrus.FieldLogger
	mail    *mailbox
	memory  *memory     // the state kept across restarts; nil keeps nothing
	login   *loginWatch // shared by all workers
	stale   func(vehicleID string, err error)
	noDoor  func(v Vehicle, why string) // Smartcar has no door command for it
	// doorWhy is why commands are refused ("" while the cover is offered); read
	// by paho's handler, set by the worker when Smartcar says it has no command.
	doorWhy atomic.Pointer[string]
	// leave stops run: the vehicle was removed. Set by Bridge.Run when it
	// starts the worker.
	leave   context.CancelFunc
	poll    time.Duration
	probe   time.Duration // loginProbeInterval
	stagger time.Duration // added once to the first poll after a cold start

	state     string
	attrs     attributes
	known     time.Time             // when the door state was last learned from the car
	charge    *smartcar.ChargeState // the last successful read, for the companion entities
	readAt    time.Time             // when that read was made
	available bool
	loginLost bool      // offline because Smartcar refused the login
	retired   bool      // offline because Smartcar switched its API v2.0 off
	noData    bool      // the last read found no data at Smartcar (said once)
	due       time.Time // next read; zero for none
	gauges    vehicleGauges
	hooks     webhookState // Smartcar's webhook deliveries for this vehicle
}

// The last command's result, as last_command_result says it.
const (
	resultSuccess = "success"
	resultError   = "error"
	resultUnknown = "unknown" // it may or may not have reached the car
)

// attributes is the cover's json_attributes payload. The last_command fields
// describe the last door command and only a command changes them, so a read
// never makes a failed command look successful; LastReadAt is the last
// successful read; Error is the last call's failure, nil once a call works.
type attributes struct {
	LastCommand       string    // OPEN or CLOSE; "" before the first command
	LastCommandResult string    // resultSuccess, resultError or resultUnknown
	LastCommandAt     time.Time // when the last command ended
	LastReadAt        time.Time
	Error             *errorInfo
}

// attributesJSON is attributes as published and kept in DATA_DIR: every key
// is always there, null until it is known, so a template never trips over a
// missing one.
type attributesJSON struct {
	LastCommand       *string    `json:"last_command"`
	LastCommandResult *string    `json:"last_command_result"`
	LastCommandAt     *time.Time `json:"last_command_at"`
	LastReadAt        *time.Time `json:"last_read_at"`
	Error             *errorInfo `json:"error"`
}

func (a attributes) MarshalJSON() ([]byte, error) {
	return json.Marshal(attributesJSON{
		LastCommand: nullable(a.LastCommand), LastCommandResult: nullable(a.LastCommandResult),
		LastCommandAt: utc(a.LastCommandAt), LastReadAt: utc(a.LastReadAt), Error: a.Error,
	})
}

// errorInfo is a failure as Home Assistant shows it: smartcar.Failure's words
// and when it happened.
type errorInfo struct {
	Type        string
	Code        string
	Description string
	RequestID   string
	Resolution  string
	StatusCode  int
	At          time.Time
}

// errorJSON is errorInfo on the wire: what is not known is null.
type errorJSON struct {
	Type        string     `json:"type"`
	Code        string     `json:"code"`
	Description string     `json:"description"`
	RequestID   *string    `json:"request_id"`
	Resolution  *string    `json:"resolution"`
	StatusCode  *int       `json:"status_code"` // null: Smartcar did not answer
	At          *time.Time `json:"at"`
}

func (e errorInfo) MarshalJSON() ([]byte, error) {
	j := errorJSON{Type: e.Type, Code: e.Code, Description: e.Description,
		RequestID: nullable(e.RequestID), Resolution: nullable(e.Resolution), At: utc(e.At)}
	if e.StatusCode != 0 {
		j.StatusCode = &e.StatusCode
	}
	return json.Marshal(j)
}

func newErrorInfo(f smartcar.Failure, at time.Time) *errorInfo {
	return &errorInfo{Type: f.Type, Code: f.Code, Description: f.Description, RequestID: f.RequestID,
		Resolution: f.Resolution, StatusCode: f.StatusCode, At: at}
}

// nullable is s, or null for "".
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// utc is t in UTC, the zone Home Assistant expects, or null for the zero time.
func utc(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// failureFields puts a failure in a log line in the words Home Assistant shows:
// TYPE:CODE and the sentence. The error itself goes to a debug line.
func failureFields(f smartcar.Failure) logrus.Fields {
	fields := logrus.Fields{logrus.ErrorKey: f.Type + ":" + f.Code, "description": f.Description}
	if f.RequestID != "" {
		fields["request_id"] = f.RequestID
	}
	return fields
}

// run serves the mailbox and the poll schedule until stop is cancelled. Smartcar
// calls run under call, which outlives stop by the shutdown grace so that a command
// already sent can finish.
func (w *worker) run(stop, call context.Context) {
	w.restore()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		w.arm(timer)
		select {
		case <-stop.Done():
			return
		case <-timer.C:
			w.due = time.Time{}
			if w.loginLost {
				w.mail.requestCheckLogin() // costs no Smartcar call
			} else {
				w.mail.requestRead()
			}
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
			case jobCheckLogin:
				w.checkLogin(call)
			case jobCommand:
				w.command(call, action)
				w.mail.done()
			case jobDeliveries:
				w.takeDeliveries(w.mail.takeDeliveries())
			case jobRead:
				w.read(call)
			}
		}
	}
}

// restore takes the state kept by the previous run: a warm restart publishes what
// was known and reads only when the poll is due, so it spends no Smartcar call.
func (w *worker) restore() {
	if saved, ok := w.memory.load(w.log); ok {
		w.state, w.attrs, w.known = saved.State, saved.Attributes, saved.KnownAt
		w.charge, w.readAt = saved.Charge.state(), saved.ReadAt
	}
	w.show()
	if !w.vehicle.CanReadCharge() {
		return
	}
	if w.known.IsZero() {
		w.due = time.Now() // cold start: one read for the initial state
		return
	}
	w.scheduleAfter(w.known, "after a restart")
}

// scheduleAfter plans the next poll one interval after the state was learned.
// why ("after a read", "after a failure", …) is for the debug line that says
// when, which is how a user learns why the car was or was not read.
func (w *worker) scheduleAfter(learned time.Time, why string) {
	w.due = time.Time{}
	if w.poll > 0 && w.vehicle.CanReadCharge() && !w.retired {
		w.webhooksQuiet(learned)
		w.due = pollDue(learned, w.poll+w.stagger, w.hooks.doorAt) // backed off while webhooks carry the door
		w.hooks.pollFrom = learned
		w.stagger = 0
		w.log.WithFields(logrus.Fields{"at": w.due.Format(time.RFC3339), "in": time.Until(w.due).Round(time.Second), "why": why}).
			Debug("next poll scheduled")
	}
}

func (w *worker) arm(t *time.Timer) {
	if w.due.IsZero() {
		t.Stop()
		return
	}
	t.Reset(max(0, time.Until(w.due)))
}

func (w *worker) command(ctx context.Context, a smartcar.Action) {
	before := w.state
	target, transit := stateOpen, stateOpening
	if a == smartcar.Close {
		target, transit = stateClosed, stateClosing
	}
	w.setState(transit)
	log := w.log.WithField("action", a)
	log.Info("sending charge port command to Smartcar")
	start := time.Now()
	err := w.car.ChargePortDoor(ctx, w.vehicle.Vehicle, a)
	now := time.Now()
	log = log.WithField("duration", now.Sub(start).Round(time.Millisecond))
	w.attrs.LastCommand, w.attrs.LastCommandAt = string(a), now
	if err == nil {
		w.attrs.LastCommandResult, w.attrs.Error = resultSuccess, nil
		w.commandSucceeded(start) // newer than any delivery the car recorded before
		log.WithField("result", resultSuccess).Info("charge port command finished")
		w.state = target
		w.learned(now, "after a command") // kept in DATA_DIR before it is announced
		w.setState(target)
		w.publishAttributes()
		w.publishLastError()
		w.healthy()
		return
	}
	// A command that may have reached the car is learned with a read rather than
	// guessed, and never by sending it again.
	f := smartcar.DescribeCommand(err, now.Sub(start))
	result, readBack := resultError, false
	if f.Code == smartcar.CodeOutcomeUnknown {
		result, readBack = resultUnknown, w.vehicle.CanReadCharge()
		if readBack {
			f.Description += "; reading its state instead"
		}
	}
	w.attrs.LastCommandResult, w.attrs.Error = result, newErrorInfo(f, now)
	log = log.WithFields(failureFields(f)).WithField("result", result)
	if result == resultUnknown {
		log.Warn("charge port command ended without a result")
	} else {
		log.Warn("charge port command failed")
	}
	w.log.WithError(err).WithField("action", a).Debug("charge port command failed: the error as the Smartcar client returned it")
	w.setState(before)
	w.publishAttributes()
	w.publishLastError()
	w.remember()
	if errors.Is(err, smartcar.ErrNoChargePortCommand) {
		why := smartcar.ErrNoChargePortCommand.Error()
		w.doorWhy.Store(&why)
		w.noDoor(w.vehicle, why)
		return
	}
	w.failed(err)
	if readBack {
		w.mail.requestRead()
	}
}

func (w *worker) read(ctx context.Context) {
	if w.retired {
		return // reading an API that is switched off only costs calls
	}
	start := time.Now()
	charge, err := w.car.Read(ctx, w.vehicle.Vehicle)
	now := time.Now()
	if err != nil {
		f := smartcar.Describe(err, now.Sub(start))
		w.log.WithFields(failureFields(f)).Warn("reading the charge port state failed")
		w.log.WithError(err).Debug("reading the charge port state failed: the error as the Smartcar client returned it")
		w.attrs.Error = newErrorInfo(f, now) // the last command's fields stay: they are the command's
		w.publishAttributes()
		w.publishLastError() // the last read is still the last successful one
		w.remember()
		// Keep the cadence after a failure: retrying sooner spends quota on a car
		// that is asleep or unreachable.
		w.scheduleAfter(now, "after a failure")
		w.failed(err)
		return
	}
	w.attrs.LastReadAt, w.attrs.Error = now, nil
	if charge.NoData != w.noData {
		w.noData = charge.NoData
		if charge.NoData {
			w.log.WithField("request_id", charge.RequestID).Warn("Smartcar holds no data for this car yet: the door and charge state stay unknown. " +
				"In API v3 a car often has no readable signals until it is subscribed to a webhook: in the Smartcar dashboard open Webhooks, add one with the charge signals and subscribe this vehicle (or all vehicles); the next read picks the data up")
		}
	}
	if charge.NoData && w.hooks.told {
		// Smartcar's read holds nothing, yet its webhooks told the state
		// since the start: unknown would only undo what they said.
		w.scheduleAfter(now, "after a read that found no data")
		w.remember()
		w.publishAttributes()
		w.publishLastError()
		w.healthy()
		return
	}
	w.state = doorState(&charge)
	w.charge, w.readAt = &charge, now
	w.learned(now, "after a read") // kept in DATA_DIR before it is announced
	w.setState(w.state)
	w.publishAttributes()
	w.publishCompanions()
	w.publishLastRead()
	w.publishLastError()
	w.healthy()
}

// learned records that the door state is fresh, which also pushes the next poll
// back; why is how it was learned, for scheduleAfter.
func (w *worker) learned(at time.Time, why string) {
	w.known = at
	w.show()
	w.scheduleAfter(at, why)
	w.remember()
}

func (w *worker) remember() {
	w.memory.save(w.log, savedState{State: w.state, Attributes: w.attrs, KnownAt: w.known, Charge: saveCharge(w.charge), ReadAt: w.readAt})
}

// failed reacts to what an error says about the daemon's access to the vehicle.
func (w *worker) failed(err error) {
	var se *smartcar.Error
	switch {
	case smartcar.IsV2Retired(err):
		// Nothing works again until the user moves to API v3, which needs a
		// restart with new credentials: offline, no more polls.
		w.retired = true
		w.due = time.Time{}
		w.setAvailable(false)
		w.login.retired(err)
	case smartcar.IsLoginRefused(err), errors.Is(err, smartcar.ErrNoToken),
		errors.As(err, &se) && se.Type == smartcar.TypeAuthentication:
		w.loginRefused()
		w.login.lost(err)
	case errors.As(err, &se) && (se.StatusCode == http.StatusForbidden || se.StatusCode == http.StatusNotFound):
		// Access revoked, a permission withdrawn, or the vehicle gone: what we
		// know of the account is stale.
		if se.StatusCode == http.StatusForbidden {
			w.setAvailable(false)
		}
		if w.stale != nil {
			w.stale(w.vehicle.ID, err)
		}
	}
}

// loginRefused takes the vehicle offline until a login check, which costs no Smartcar
// call, finds a working login: the first one is due after the probe interval.
func (w *worker) loginRefused() {
	w.loginLost = true
	w.setAvailable(false)
	w.due = time.Now().Add(w.probe)
}

// healthy records a call that worked: the vehicle is served again.
func (w *worker) healthy() {
	w.setAvailable(true)
	if w.loginLost {
		w.loginLost = false
		w.login.restored()
	}
}

// checkLogin runs when the login was refused (for this or another vehicle), and
// then every loginProbeInterval until it works again.
func (w *worker) checkLogin(ctx context.Context) {
	if err := w.car.CheckLogin(ctx); err != nil {
		w.loginRefused()
		return
	}
	if !w.loginLost {
		return
	}
	w.healthy()
	if w.vehicle.CanReadCharge() {
		w.mail.requestRead() // what changed while we were away
	} else {
		w.scheduleAfter(w.known, "after the login works again")
	}
}

// clearRetained empties every retained topic of the vehicle, once it is
// removed: an empty retained message deletes it at the broker.
func (w *worker) clearRetained() {
	for _, topic := range w.topics.Retained() {
		w.out.publish(topic, true, []byte{})
	}
}

// doorState is the cover's state a read or a delivery says.
func doorState(c *smartcar.ChargeState) string {
	switch {
	case c.DoorOpen == nil:
		return stateUnknown
	case *c.DoorOpen:
		return stateOpen
	default:
		return stateClosed
	}
}

func (w *worker) setState(s string) {
	w.state = s
	w.out.publish(w.topics.State, true, []byte(s))
	w.show()
}

func (w *worker) setAvailable(ok bool) {
	if ok == w.available {
		return
	}
	w.available = ok
	w.publishAvailability()
	w.show()
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
	w.show()
}

// publishAll sends everything the worker knows, after a (re)connect or HA's birth.
func (w *worker) publishAll() {
	w.publishAvailability()
	w.out.publish(w.topics.State, true, []byte(w.state))
	w.publishAttributes()
	w.publishCompanions()
	w.publishLastRead()
	w.publishLastError()
}

// publishCompanions sends the entities that come with a read (plugged in, charging
// state, …): unknown until the first read.
func (w *worker) publishCompanions() {
	if !w.vehicle.CanReadCharge() {
		return
	}
	charge := w.charge
	if charge == nil {
		charge = &smartcar.ChargeState{}
	}
	for topic, payload := range companions(w.topics, charge) {
		w.out.publish(topic, true, []byte(payload))
	}
}

// publishLastError sends the last Smartcar error, from the last call's result: after
// every call, and last of what a call publishes. Its time is the failure's, or
// that of the last call that worked.
func (w *worker) publishLastError() {
	if !w.vehicle.CanReadCharge() {
		return
	}
	at := w.attrs.LastReadAt
	switch {
	case w.attrs.Error != nil:
		at = w.attrs.Error.At
	case w.attrs.LastCommandAt.After(at):
		at = w.attrs.LastCommandAt
	}
	state, attrs := lastErrorPayloads(w.attrs.Error, at)
	w.out.publish(w.topics.LastError, true, []byte(state))
	w.out.publish(w.topics.LastErrorAttributes, true, attrs)
}

// publishLastRead sends the time of the last successful read: after a read, and with
// everything else; a command or a failed read does not change it.
func (w *worker) publishLastRead() {
	if !w.vehicle.CanReadCharge() {
		return
	}
	w.out.publish(w.topics.LastRead, true, []byte(discovery.TimestampPayload(w.readAt)))
}
