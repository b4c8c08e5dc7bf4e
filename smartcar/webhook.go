package smartcar

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Smartcar's webhooks: it POSTs a JSON event to the application's callback
// URI for every change of the signals a webhook watches. Every delivery is
// signed with the Application Management Token: SC-Signature is the hex
// HMAC-SHA256 of the raw body under that token. The one-time VERIFY event
// is answered with the same HMAC of its challenge. A delivery may come more
// than once (eventId stays the same across retries) and out of order
// (oemUpdatedAt says when the car recorded each signal).

// Webhook event types, as eventType names them.
const (
	EventVerify       = "VERIFY"
	EventVehicleState = "VEHICLE_STATE"
	EventVehicleError = "VEHICLE_ERROR"
)

// SignatureHeader carries a delivery's signature.
const SignatureHeader = "SC-Signature"

// WebhookSignature is hex(HMAC-SHA256(secret, data)): the SC-Signature of a
// body, and the answer to a VERIFY challenge.
func WebhookSignature(secret string, data []byte) string {
	return hex.EncodeToString(webhookMAC(secret, data))
}

func webhookMAC(secret string, data []byte) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(data)
	return mac.Sum(nil)
}

// ValidWebhookSignature reports whether signature (hex, either case) is
// body's under secret. The comparison takes the same time wherever the two
// differ, so an attacker cannot find a valid signature byte by byte.
func ValidWebhookSignature(secret string, body []byte, signature string) bool {
	got, err := hex.DecodeString(strings.TrimSpace(signature))
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return hmac.Equal(got, webhookMAC(secret, body))
}

// WebhookEvent is one delivery, as far as the daemon reads it.
type WebhookEvent struct {
	ID   string // eventId: the same across Smartcar's retries of one event
	Type string // EventVerify, EventVehicleState, EventVehicleError, or another type, upper case

	VehicleID string
	UserID    string // the user whose connection the vehicle belongs to; "" when not said

	Challenge string         // VERIFY's, to hash and send back
	Charge    ChargeReport   // VEHICLE_STATE: the charge signals it carries
	Errors    []WebhookError // VEHICLE_ERROR
}

// WebhookError is one error of a VEHICLE_ERROR event: Smartcar could not
// read the car, or reports that it can again (Resolved).
type WebhookError struct {
	Type, Code  string
	Resolved    bool   // state RESOLVED: the condition is over
	Description string // the words for a person, bounded and printable
	Resolution  string // e.g. RETRY_LATER
	// OtherSignalsOnly: the error names the signals it is about, and none
	// of them is a charge signal (a car that cannot tell its nickname, a
	// permission for the locks). It says nothing of the charge port.
	OtherSignalsOnly bool
}

// Failure is the error in the words the rest of the daemon shows.
func (e WebhookError) Failure() Failure {
	f := Failure{Type: e.Type, Code: e.Code, Description: e.Description, Resolution: e.Resolution}
	if f.Code == "" {
		f.Code = CodeUnspecified
	}
	if f.Description == "" {
		f.Description = "Smartcar reported an error with this vehicle through its webhook"
	}
	return f
}

// ChargeReport is what one delivery says of the charge signals. A delivery
// carries only the signals its webhook is set up with: State holds those,
// and Carried each one's code with when the car recorded it (zero when the
// delivery does not say). A carried signal with an error status, no body or
// a body of an unexpected shape is unknown: in Carried, nil in State.
type ChargeReport struct {
	State   ChargeState
	Carried map[string]time.Time
}

// SignalTimes is when the value known of each charge signal was recorded,
// by signal code.
type SignalTimes map[string]time.Time

// ApplyTo takes into st every carried signal that is not older than what
// known says of it, moves known on for those, and returns their codes. A
// signal the delivery gives no time for is taken, and leaves known as it
// is: it cannot be placed before or after anything.
func (r ChargeReport) ApplyTo(st *ChargeState, known SignalTimes) (applied []string) {
	for _, code := range chargeSignals {
		at, carried := r.Carried[code]
		if !carried {
			continue
		}
		if !at.IsZero() {
			if at.Before(known[code]) {
				continue
			}
			known[code] = at
		}
		copySignal(st, r.State, code)
		applied = append(applied, code)
	}
	if len(applied) > 0 {
		st.NoData = false
	}
	return applied
}

// chargeSignals are the signal codes ChargeState holds, in a fixed order.
var chargeSignals = [...]string{SignalDoorOpen, SignalPluggedIn, SignalLatched, SignalCharging, SignalLimits, SignalEnergyAdded}

// copySignal sets st's field for code from src.
func copySignal(st *ChargeState, src ChargeState, code string) {
	switch code {
	case SignalDoorOpen:
		st.DoorOpen = src.DoorOpen
	case SignalPluggedIn:
		st.PluggedIn = src.PluggedIn
	case SignalLatched:
		st.Latch = src.Latch
	case SignalCharging:
		st.Charging = src.Charging
	case SignalLimits:
		st.LimitPercent = src.LimitPercent
	case SignalEnergyAdded:
		st.EnergyAdded = src.EnergyAdded
	}
}

// ErrWebhookShape is a delivery that is JSON but not an event the daemon
// can read: no event type, no challenge in a VERIFY, no vehicle.
var ErrWebhookShape = errors.New("not a Smartcar webhook event")

// ErrWebhookV2Format is an event in the v2.0 webhook format (eventName and
// payload) other than VERIFY: a webhook made for a legacy app, whose
// deliveries the daemon does not read.
var ErrWebhookV2Format = errors.New("an event in Smartcar's v2.0 webhook format")

// webhookEnvelope is every event's outer object. The v2.0 webhook format
// (eventName and payload) is read for VERIFY only: it is how a webhook made
// for a legacy app proves the callback URI.
type webhookEnvelope struct {
	EventID   string          `json:"eventId"`
	EventType string          `json:"eventType"`
	VehicleID string          `json:"vehicleId"`
	Data      json.RawMessage `json:"data"`

	EventName string          `json:"eventName"`
	Payload   json.RawMessage `json:"payload"`
}

type webhookData struct {
	Challenge string `json:"challenge"`
	Vehicle   struct {
		ID string `json:"id"`
	} `json:"vehicle"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	Signals json.RawMessage    `json:"signals"`
	Errors  []webhookErrorWire `json:"errors"`
}

type webhookErrorWire struct {
	Type                 string `json:"type"`
	Code                 string `json:"code"`
	State                string `json:"state"`
	Description          string `json:"description"`
	SuggestedUserMessage string `json:"suggestedUserMessage"`
	Resolution           struct {
		Type string `json:"type"`
	} `json:"resolution"`
	Signals json.RawMessage `json:"signals"`
}

// webhookSignal is one entry of data.signals. status is an object with a
// value (SUCCESS or ERROR), or that value alone; some deliveries put an
// error object in place of the body.
type webhookSignal struct {
	Code   string          `json:"code"`
	Name   string          `json:"name"`
	Group  string          `json:"group"`
	Body   json.RawMessage `json:"body"`
	Status json.RawMessage `json:"status"`
	Error  json.RawMessage `json:"error"`
	Meta   struct {
		OEMUpdatedAt json.RawMessage `json:"oemUpdatedAt"`
	} `json:"meta"`
}

// Bounds on what a delivery can make the daemon keep.
const (
	maxEventIDLen = 200
	maxFieldLen   = 100
)

// ParseWebhook reads a delivery's body. Bad JSON is an error; so is a
// shape without what its type needs (ErrWebhookShape). An event of a type
// the daemon does not know is returned with only its type and ids.
func ParseWebhook(body []byte) (WebhookEvent, error) {
	var env webhookEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return WebhookEvent{}, fmt.Errorf("decode webhook event: %w", err)
	}
	ev := WebhookEvent{ID: printable(env.EventID, maxEventIDLen, ""), Type: strings.ToUpper(strings.TrimSpace(env.EventType))}
	data := env.Data
	if ev.Type == "" && strings.EqualFold(strings.TrimSpace(env.EventName), "verify") {
		ev.Type, data = EventVerify, env.Payload
	}
	if ev.Type == "" && strings.TrimSpace(env.EventName) != "" {
		return WebhookEvent{}, ErrWebhookV2Format
	}
	if ev.Type == "" {
		return WebhookEvent{}, fmt.Errorf("%w: no eventType", ErrWebhookShape)
	}
	ev.Type = printable(ev.Type, maxFieldLen, "")
	var d webhookData
	if len(bytes.TrimSpace(data)) > 0 && !bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		if err := json.Unmarshal(data, &d); err != nil {
			return WebhookEvent{}, fmt.Errorf("decode webhook event data: %w", err)
		}
	}
	switch ev.Type {
	case EventVerify:
		if d.Challenge == "" {
			return WebhookEvent{}, fmt.Errorf("%w: VERIFY without a challenge", ErrWebhookShape)
		}
		ev.Challenge = d.Challenge
		return ev, nil
	}
	ev.VehicleID = strings.TrimSpace(d.Vehicle.ID)
	if ev.VehicleID == "" {
		ev.VehicleID = strings.TrimSpace(env.VehicleID)
	}
	ev.VehicleID = printable(ev.VehicleID, maxFieldLen, "")
	ev.UserID = printable(strings.TrimSpace(d.User.ID), maxFieldLen, "")
	switch ev.Type {
	case EventVehicleState:
		if ev.VehicleID == "" {
			return WebhookEvent{}, fmt.Errorf("%w: %s without a vehicle id", ErrWebhookShape, ev.Type)
		}
		report, err := chargeReport(d.Signals)
		if err != nil {
			return WebhookEvent{}, err
		}
		ev.Charge = report
	case EventVehicleError:
		if ev.VehicleID == "" {
			return WebhookEvent{}, fmt.Errorf("%w: %s without a vehicle id", ErrWebhookShape, ev.Type)
		}
		for _, e := range d.Errors {
			ev.Errors = append(ev.Errors, WebhookError{
				Type:        printable(strings.ToUpper(e.Type), maxFieldLen, ""),
				Code:        printable(strings.ToUpper(e.Code), maxFieldLen, ""),
				Resolved:    strings.EqualFold(strings.TrimSpace(e.State), "RESOLVED"),
				Description: printable(firstNonEmpty(e.SuggestedUserMessage, e.Description), maxErrorSnippet, "…"),
				Resolution:  printable(e.Resolution.Type, maxFieldLen, ""),

				OtherSignalsOnly: namesOnlyOtherSignals(e.Signals),
			})
		}
	}
	return ev, nil
}

// namesOnlyOtherSignals reads an error's signals, a list of "Group.Name"
// strings or of signal objects (both are delivered), and reports whether it
// names some and none of them is a charge signal. Anything else (no list,
// an entry it cannot read) leaves the error about the whole vehicle.
func namesOnlyOtherSignals(raw json.RawMessage) bool {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil || len(list) == 0 {
		return false
	}
	for _, item := range list {
		var s webhookSignal
		var name string
		switch {
		case json.Unmarshal(item, &name) == nil:
			if group, n, dotted := strings.Cut(name, "."); dotted {
				s.Group, s.Name = group, n
			} else {
				s.Code = name
			}
		case json.Unmarshal(item, &s) != nil:
			return false
		}
		// Delivered objects have had group and name swapped: either order.
		if code := signalCode(s); code == "" || isChargeSignal(code) || isChargeSignal(signalCode(webhookSignal{Group: s.Name, Name: s.Group})) {
			return false
		}
	}
	return true
}

// chargeReport reads data.signals: a list of signal objects, as Smartcar
// documents it, or an object of them keyed by code or by Group.Name, each
// a signal object or the signal's body itself.
func chargeReport(raw json.RawMessage) (ChargeReport, error) {
	r := ChargeReport{Carried: map[string]time.Time{}}
	raw = bytes.TrimSpace(raw)
	var signals []webhookSignal
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
		return r, nil
	case raw[0] == '[':
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return ChargeReport{}, fmt.Errorf("decode webhook signals: %w", err)
		}
		for _, item := range list {
			var s webhookSignal
			if json.Unmarshal(item, &s) != nil {
				continue // one odd entry costs that signal, not the delivery
			}
			signals = append(signals, s)
		}
	case raw[0] == '{':
		var byKey map[string]json.RawMessage
		if err := json.Unmarshal(raw, &byKey); err != nil {
			return ChargeReport{}, fmt.Errorf("decode webhook signals: %w", err)
		}
		for _, key := range slices.Sorted(maps.Keys(byKey)) { // one order, whatever the map's
			s, ok := keyedSignal(key, byKey[key])
			if ok {
				signals = append(signals, s)
			}
		}
	default:
		return ChargeReport{}, fmt.Errorf("%w: signals is neither a list nor an object", ErrWebhookShape)
	}
	for _, s := range signals {
		code := signalCode(s)
		if !isChargeSignal(code) {
			continue
		}
		at := parseTimestamp(s.Meta.OEMUpdatedAt)
		if earlier, seen := r.Carried[code]; seen && at.Before(earlier) {
			continue // the same signal twice: the later one counts
		}
		r.Carried[code] = at
		var value ChargeState // a failed signal is unknown, whatever its body says
		if !signalFailed(s) {
			decodeSignal(&value, code, s.Body)
		}
		copySignal(&r.State, value, code)
	}
	return r, nil
}

// keyedSignal reads one entry of the object form of data.signals.
func keyedSignal(key string, item json.RawMessage) (webhookSignal, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(item, &fields) != nil {
		return webhookSignal{}, false
	}
	var s webhookSignal
	if _, isSignal := fields["body"]; isSignal {
		if json.Unmarshal(item, &s) != nil {
			return webhookSignal{}, false
		}
	} else {
		// The value is the body; its meta, if any, still dates it.
		s.Body, s.Status, s.Error = item, fields["status"], fields["error"]
		var meta struct {
			Meta struct {
				OEMUpdatedAt json.RawMessage `json:"oemUpdatedAt"`
			} `json:"meta"`
		}
		if json.Unmarshal(item, &meta) == nil {
			s.Meta.OEMUpdatedAt = meta.Meta.OEMUpdatedAt
		}
	}
	if s.Code == "" {
		if group, name, dotted := strings.Cut(key, "."); dotted {
			s.Group, s.Name = group, name
		} else {
			s.Code = key
		}
	}
	return s, true
}

// signalCode is s's code, or the one Smartcar derives from its group and
// name (Charge.IsChargingCableConnected is charge-ischargingcableconnected).
func signalCode(s webhookSignal) string {
	if c := strings.TrimSpace(s.Code); c != "" {
		return strings.ToLower(c)
	}
	if s.Group == "" || s.Name == "" {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(s.Group) + "-" + strings.TrimSpace(s.Name))
}

func isChargeSignal(code string) bool { return slices.Contains(chargeSignals[:], code) }

// signalFailed says whether a signal carries no value: an ERROR status, an
// error object, or no body at all.
func signalFailed(s webhookSignal) bool {
	if isJSONValue(s.Error) {
		return true
	}
	status := bytes.TrimSpace(s.Status)
	if len(status) > 0 {
		var value string
		if status[0] == '"' {
			_ = json.Unmarshal(status, &value)
		} else {
			var obj struct {
				Value string          `json:"value"`
				Error json.RawMessage `json:"error"`
			}
			_ = json.Unmarshal(status, &obj)
			value = obj.Value
			if value == "" && isJSONValue(obj.Error) {
				return true
			}
		}
		if strings.EqualFold(strings.TrimSpace(value), "ERROR") {
			return true
		}
	}
	return !isJSONValue(s.Body)
}

// isJSONValue reports whether raw holds something other than nothing or null.
func isJSONValue(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// parseTimestamp reads oemUpdatedAt: epoch milliseconds (a number, or a
// string of digits), or an ISO-8601 time. Anything else is the zero time.
// A number too small to be milliseconds of this century is taken as
// seconds, which some of Smartcar's examples use.
func parseTimestamp(raw json.RawMessage) time.Time {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return time.Time{}
	}
	text := string(raw)
	if raw[0] == '"' {
		if json.Unmarshal(raw, &text) != nil {
			return time.Time{}
		}
		text = strings.TrimSpace(text)
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00"} {
			if t, err := time.Parse(layout, text); err == nil {
				return t.UTC()
			}
		}
	}
	n, err := strconv.ParseFloat(text, 64)
	if err != nil || n <= 0 || n > 1e15 {
		return time.Time{}
	}
	if n < 1e11 {
		n *= 1000 // seconds
	}
	return time.UnixMilli(int64(n)).UTC()
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}
