package bridge

import (
	"errors"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Smartcar's webhook deliveries reach a vehicle's worker through its
// mailbox, like a read: the worker applies the signals they carry to what it
// publishes, so a delivery never races a command, and it spends no call.

// Delivery is a verified webhook event for one vehicle.
type Delivery struct {
	Event    smartcar.WebhookEvent
	Received time.Time
	// Done, if set, is told the outcome once the worker has taken the
	// delivery. It runs on the worker's goroutine and must not block.
	Done func(outcome string)
}

// What became of a delivery the worker took.
const (
	DeliveryApplied   = "applied"
	DeliveryDuplicate = "duplicate" // its eventId was taken before: one of Smartcar's retries
	DeliveryStale     = "stale"     // every signal older than what is known: nothing changed
	DeliveryIgnored   = "ignored"   // a type that changes nothing here
)

// Why Deliver did not take a delivery.
var (
	// ErrUnknownVehicle: no vehicle of this daemon has that id (and user).
	// Never a reason to create one: only a listing of the account does.
	ErrUnknownVehicle = errors.New("not a vehicle this daemon serves")
	// ErrDeliveryBacklog: the vehicle's worker has more deliveries waiting
	// than it keeps; Smartcar retries a refused one later.
	ErrDeliveryBacklog = errors.New("too many webhook deliveries waiting for this vehicle")
)

// maxPendingDeliveries bounds what waits for one worker (a command in
// flight can hold it for minutes): far more than Smartcar sends meanwhile.
const maxPendingDeliveries = 4096

// webhookQuiet is how long deliveries count as flowing after the last one
// that carried the door. While they do, the car is read once a day as a
// safety net (a webhook switched off in the dashboard sends no word); once
// none has come for this long, the poll interval is back. Only the door
// counts: a webhook set up without it, or one that sends nothing but
// errors, must not leave the door a day old.
const webhookQuiet = 24 * time.Hour

// recentEventsKept bounds the eventIds a worker remembers. Smartcar's
// retries of one event come within three minutes.
const recentEventsKept = 1024

// Deliver hands d to its vehicle's worker and returns at once: the worker
// may be busy with a command for minutes, while Smartcar waits only seconds
// for an answer. A vehicle matches by id, and by user when the delivery
// names one (another user's connection of the same car is not served).
func (b *Bridge) Deliver(d Delivery) error {
	if b.closing.Load() {
		return ErrNotServing
	}
	w, ok := b.fleet.Load().workers[d.Event.VehicleID]
	if !ok {
		return ErrUnknownVehicle
	}
	if u := d.Event.UserID; u != "" && w.vehicle.UserID != "" && u != w.vehicle.UserID {
		return ErrUnknownVehicle
	}
	if !w.mail.putDelivery(d) {
		return ErrDeliveryBacklog
	}
	return nil
}

func (m *mailbox) putDelivery(d Delivery) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.deliveries) >= maxPendingDeliveries {
		return false
	}
	m.deliveries = append(m.deliveries, d)
	m.signal()
	return true
}

// takeDeliveries returns every delivery waiting, oldest first.
func (m *mailbox) takeDeliveries() []Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	ds := m.deliveries
	m.deliveries = nil
	return ds
}

// webhookState is what a worker knows of its vehicle's deliveries.
type webhookState struct {
	times    smartcar.SignalTimes // when the car recorded each signal value known
	recent   recentEvents
	lastAt   time.Time // when the last delivery came; zero: none since the start
	doorAt   time.Time // when the last delivery carrying the door came: what backs polling off
	told     bool      // a delivery has set a charge signal since the start
	flowing  bool      // deliveries carrying the door count as flowing (said in the log when it changes)
	pollFrom time.Time // what the poll schedule counts from; zero: no schedule yet
}

// recentEvents remembers the last eventIds taken, oldest forgotten first.
type recentEvents struct {
	ids  []string
	next int
	set  map[string]bool
}

// add records id and reports whether it was new.
func (r *recentEvents) add(id string) bool {
	if r.set == nil {
		r.set = map[string]bool{}
	}
	if r.set[id] {
		return false
	}
	if len(r.ids) < recentEventsKept {
		r.ids = append(r.ids, id)
	} else {
		delete(r.set, r.ids[r.next])
		r.ids[r.next] = id
		r.next = (r.next + 1) % recentEventsKept
	}
	r.set[id] = true
	return true
}

// pollDue is when to read the car next, counting from from: after the poll
// interval; or, while webhook deliveries flow (the last one came at
// lastDelivery), a day after from, and a day after the last delivery at
// the latest, when they count as stopped and the poll interval is back.
func pollDue(from time.Time, poll time.Duration, lastDelivery time.Time) time.Time {
	due := from.Add(poll)
	if lastDelivery.IsZero() {
		return due
	}
	backedOff := from.Add(webhookQuiet)
	if quiet := lastDelivery.Add(webhookQuiet); quiet.Before(backedOff) {
		backedOff = quiet
	}
	if backedOff.After(due) {
		return backedOff
	}
	return due
}

// commandSucceeded records that the door is where a command sent at sent
// put it: any delivery the car recorded before that is older.
func (w *worker) commandSucceeded(sent time.Time) {
	w.hooks.knownTimes()[smartcar.SignalDoorOpen] = sent
}

func (h *webhookState) knownTimes() smartcar.SignalTimes {
	if h.times == nil {
		h.times = smartcar.SignalTimes{}
	}
	return h.times
}

// takeDeliveries applies deliveries in the order they came, then publishes
// what changed once: a burst costs one round of messages, not one each.
func (w *worker) takeDeliveries(ds []Delivery) {
	var door, charge, failure bool
	doorBefore := w.hooks.doorAt
	for _, d := range ds {
		outcome := w.takeDelivery(d, &door, &charge, &failure)
		if d.Done != nil {
			d.Done(outcome)
		}
	}
	if len(ds) == 0 {
		return
	}
	if door {
		w.setState(w.state)
	}
	if charge {
		w.publishCompanions()
	}
	if failure {
		w.publishAttributes()
		w.publishLastError()
	}
	if door || charge || failure {
		w.remember()
	}
	if w.hooks.doorAt != doorBefore {
		w.deliveriesFlow()
	}
	w.show()
}

// takeDelivery applies one delivery, setting the flags of what it changed.
func (w *worker) takeDelivery(d Delivery, door, charge, failure *bool) string {
	ev := d.Event
	log := w.log.WithFields(logrus.Fields{"event": ev.Type, "event_id": ev.ID})
	w.hooks.lastAt = d.Received
	if ev.ID != "" && !w.hooks.recent.add(ev.ID) {
		log.Debug("webhook delivery already taken (one of Smartcar's retries): nothing changed")
		return DeliveryDuplicate
	}
	switch ev.Type {
	case smartcar.EventVehicleState:
		next := smartcar.ChargeState{}
		if w.charge != nil {
			next = *w.charge // never changed in place: Status readers share it
		}
		if _, carried := ev.Charge.Carried[smartcar.SignalDoorOpen]; carried {
			w.hooks.doorAt = d.Received // even when stale: the webhook watches the door
		}
		applied := ev.Charge.ApplyTo(&next, w.hooks.knownTimes())
		if len(applied) == 0 && len(ev.Charge.Carried) > 0 {
			log.Debug("webhook delivery older than what is known: nothing changed")
			return DeliveryStale
		}
		if len(applied) == 0 {
			log.Debug("webhook delivery without charge signals: nothing to change")
			return DeliveryApplied
		}
		w.charge, w.hooks.told = &next, true
		*charge = true
		if slices.Contains(applied, smartcar.SignalDoorOpen) {
			w.state = doorState(&next)
			w.known = d.Received // shown once the batch is published
			*door = true
		}
		if debugEnabled(w.log) {
			log.WithFields(logrus.Fields{"signals": applied, "state": w.state}).Debug("webhook delivery applied")
		}
		return DeliveryApplied
	case smartcar.EventVehicleError:
		if w.takeVehicleError(ev, d.Received, log) {
			*failure = true
		}
		return DeliveryApplied
	}
	log.Debug("webhook delivery of a type that changes nothing here")
	return DeliveryIgnored
}

// takeVehicleError makes an active error the last error, or clears the
// last error when the delivery says it is resolved. It reports a change.
// An error about signals other than the charge signals changes nothing: a
// car that cannot tell its nickname is no trouble with its charge port.
func (w *worker) takeVehicleError(ev smartcar.WebhookEvent, at time.Time, log *logrus.Entry) bool {
	for _, e := range ev.Errors {
		if e.OtherSignalsOnly {
			log.WithField(logrus.ErrorKey, e.Type+":"+e.Failure().Code).Debug("Smartcar's webhook reports an error about signals this daemon does not read: nothing changed")
			continue
		}
		if e.Resolved {
			continue
		}
		f := e.Failure()
		w.attrs.Error = newErrorInfo(f, at)
		log.WithFields(failureFields(f)).Warn("Smartcar's webhook reports an error with this vehicle")
		return true
	}
	for _, e := range ev.Errors {
		if cur := w.attrs.Error; !e.OtherSignalsOnly && cur != nil && cur.Type == e.Type && cur.Code == e.Failure().Code {
			w.attrs.Error = nil
			log.WithField(logrus.ErrorKey, e.Type+":"+e.Code).Info("Smartcar's webhook reports the vehicle's error resolved")
			return true
		}
	}
	return false
}

// deliveriesFlow backs polling off while deliveries carry the door: the
// next read is a day after the last one (a safety net) rather than an
// interval after it.
func (w *worker) deliveriesFlow() {
	polls := w.poll > 0 && w.vehicle.CanReadCharge()
	if !w.hooks.flowing {
		w.hooks.flowing = true
		if polls {
			w.log.Infof("the door's state arrives by Smartcar's webhook: the car is now read once a day, as a safety net, instead of every %s", w.poll)
		} else {
			w.log.Info("the door's state arrives by Smartcar's webhook")
		}
	}
	if !polls || w.due.IsZero() || w.hooks.pollFrom.IsZero() || w.loginLost || w.retired {
		return
	}
	if due := pollDue(w.hooks.pollFrom, w.poll, w.hooks.doorAt); due.After(w.due) {
		w.due = due
		w.log.WithFields(logrus.Fields{"at": w.due.Format(time.RFC3339), "in": time.Until(w.due).Round(time.Second), "why": "webhook deliveries flow"}).
			Debug("next poll scheduled")
	}
}

// webhooksQuiet notices, when a poll is scheduled at now, that deliveries
// carrying the door have stopped, and says so once.
func (w *worker) webhooksQuiet(now time.Time) {
	if w.hooks.flowing && now.Sub(w.hooks.doorAt) >= webhookQuiet {
		w.hooks.flowing = false
		w.log.Infof("no door state from Smartcar's webhook for a day: reading the car every %s again", w.poll)
	}
}
