package bridge

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// The companion entities come from the same read as the door state, so they cost
// no extra call. A field Smartcar sent as null becomes HA's "None"
// (unknown), never a crash or a bogus 0.

// companions is what one read says, as payloads by topic.
func companions(t discovery.Topics, c *smartcar.ChargeState) map[string]string {
	if c == nil {
		return nil
	}
	return map[string]string{
		t.PluggedIn:       onOff(c.PluggedIn),
		t.ChargingState:   text(c.Charging),
		t.ChargePortLatch: text(c.Latch),
		t.ChargeLimit:     number(c.LimitPercent),
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
