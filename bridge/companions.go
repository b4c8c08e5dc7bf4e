package bridge

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// The companion entities come from the same tesla/charge read as the door state,
// so they cost no extra call. A field Smartcar sent as null becomes HA's "None"
// (unknown), never a crash or a bogus 0.

// companions is what one read says, as payloads by topic.
func companions(t discovery.Topics, c *smartcar.Charge) map[string]string {
	if c == nil {
		return nil
	}
	return map[string]string{
		t.PluggedIn:       onOff(c.IsPluggedIn),
		t.ChargingState:   text(c.State),
		t.ChargePortLatch: text(c.ChargePortLatch),
		t.ChargeLimit:     percent(c.SocLimit),
		t.EnergyAdded:     number(c.EnergyAdded),
	}
}

func onOff(b *bool) string {
	switch {
	case b == nil:
		return stateUnknown
	case *b:
		return discovery.PayloadOn
	default:
		return discovery.PayloadOff
	}
}

func text(s *string) string {
	if s == nil || *s == "" {
		return stateUnknown
	}
	return *s
}

func number(f *float64) string {
	if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
		return stateUnknown
	}
	return strconv.FormatFloat(*f, 'f', -1, 64)
}

// percent shows Smartcar's charge limit fraction (0.8) as HA's % (80), rounded to a
// tenth so 0.57 does not become 56.99999999999999. A value above 1 is taken as
// already in percent.
func percent(f *float64) string {
	if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
		return stateUnknown
	}
	v := *f
	if v <= 1 {
		v *= 100
	}
	v = math.Round(v*10) / 10
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// lastErrorPayloads is the diagnostic "last Smartcar error" entity: TYPE:CODE, or
// "none" once a call has worked again, with the details as attributes.
func lastErrorPayloads(e *errorInfo, at time.Time) (state string, attrs []byte) {
	a := discovery.LastErrorAttrs{At: discovery.TimestampPayload(at)}
	if e == nil {
		state = discovery.LastErrorPayload("", "")
	} else {
		state = discovery.LastErrorPayload(e.Type, e.Code)
		a.Description, a.RequestID = e.Description, e.RequestID
	}
	attrs, _ = json.Marshal(a) // plain strings: cannot fail
	return state, attrs
}
