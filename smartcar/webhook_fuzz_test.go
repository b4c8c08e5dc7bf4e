package smartcar

import (
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzParseWebhook: ParseWebhook reads bodies whose signature was valid, so
// a bug here is reached only through Smartcar, but it must still never
// panic, and what it returns must keep the rules the worker relies on: a
// VERIFY has a challenge; a vehicle event names its vehicle; only charge
// signals are carried; the ids it keeps are bounded valid UTF-8; parsing is
// deterministic; and applying a report twice changes nothing the second
// time, nor any field the report does not carry.
func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(`{"eventId":"52f6e0bb","eventType":"VERIFY","data":{"challenge":"c-123"}}`))
	f.Add([]byte(`{"version":"2.0","eventName":"verify","payload":{"challenge":"c-456"}}`))
	f.Add([]byte(`{"eventId":"e1","eventType":"VEHICLE_STATE","vehicleId":"v1","data":{"user":{"id":"u1"},"vehicle":{"id":"v1"},"signals":[` +
		`{"code":"charge-ischargingportflapopen","body":{"value":true},"status":{"value":"SUCCESS"},"meta":{"oemUpdatedAt":1758668712404}},` +
		`{"code":"charge-ischargingcableconnected","body":{"value":true},"meta":{"oemUpdatedAt":"2025-09-23T23:05:12.404Z"}},` +
		`{"code":"charge-ischargingcablelatched","status":{"value":"ERROR","error":{"type":"COMPATIBILITY"}},"body":{"value":true}},` +
		`{"code":"charge-detailedchargingstatus","body":{"value":"CHARGING"}},` +
		`{"code":"charge-chargelimits","body":{"values":[{"type":"GLOBAL","limit":80}]}},` +
		`{"code":"charge-energyadded","body":{"value":4200,"unit":"Wh"},"meta":{"oemUpdatedAt":"1758668712404"}}]}}`))
	f.Add([]byte(`{"eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v1"},"signals":{"Charge.IsChargingCableConnected":{"value":true,"meta":{"oemUpdatedAt":1e20}},"charge-ischargingportflapopen":{"body":{"isOpen":false}}}}}`))
	f.Add([]byte(`{"eventId":"e5","eventType":"VEHICLE_ERROR","vehicleId":"v1","data":{"errors":[{"type":"VEHICLE_STATE","code":"ASLEEP","state":"RESOLVED","suggestedUserMessage":"\u0000\u2028zz","resolution":{"type":"RETRY_LATER"}}]}}`))
	f.Add([]byte(`{"eventType":"VEHICLE_STATE","vehicleId":"v1","data":{"signals":[{"code":"charge-ischargingcableconnected","body":{"value":true}},{"code":"charge-ischargingcableconnected","body":{"value":false},"meta":{"oemUpdatedAt":-5}}]}}`))
	f.Add([]byte(`{"eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v1"},"signals":[1,"x",null,{"name":"IsChargingPortFlapOpen","group":"Charge","body":null}]}}`))
	f.Add([]byte(`{"eventId":"x","eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseWebhook(body)
		if err != nil {
			if ev.Type != "" || ev.VehicleID != "" {
				t.Fatalf("an error with an event: %+v", ev)
			}
			return
		}
		again, err2 := ParseWebhook(body)
		if err2 != nil || !reflect.DeepEqual(ev, again) {
			t.Fatalf("two parses of one body differ:\n%+v\n%+v (%v)", ev, again, err2)
		}
		for name, s := range map[string]string{"id": ev.ID, "type": ev.Type, "vehicle": ev.VehicleID, "user": ev.UserID} {
			if !utf8.ValidString(s) || len(s) > maxEventIDLen {
				t.Fatalf("%s %q is not bounded valid UTF-8", name, s)
			}
		}
		switch ev.Type {
		case "":
			t.Fatal("an event without a type")
		case EventVerify:
			if ev.Challenge == "" {
				t.Fatal("a VERIFY without a challenge")
			}
			return
		case EventVehicleState, EventVehicleError:
			if ev.VehicleID == "" {
				t.Fatalf("%s without a vehicle", ev.Type)
			}
		}
		for _, e := range ev.Errors {
			if !utf8.ValidString(e.Description) || len(e.Description) > maxErrorSnippet+len("…") {
				t.Fatalf("error description %q is not bounded valid UTF-8", e.Description)
			}
			if f := e.Failure(); f.Code == "" || f.Description == "" {
				t.Fatalf("failure %+v lacks a code or words", f)
			}
		}
		for code := range ev.Charge.Carried {
			if !isChargeSignal(code) {
				t.Fatalf("carried %q, not a charge signal", code)
			}
		}

		// Applying: only carried fields change, and a second time nothing does.
		before := ChargeState{DoorOpen: new(false), PluggedIn: new(false), Latch: new(LatchEngaged),
			Charging: new("NOT_CHARGING"), LimitPercent: new(90.0), EnergyAdded: new(1.0), RequestID: "r"}
		st, known := before, SignalTimes{}
		applied := ev.Charge.ApplyTo(&st, known)
		for _, code := range chargeSignals {
			var a, b ChargeState
			copySignal(&a, st, code)
			copySignal(&b, before, code)
			if _, carried := ev.Charge.Carried[code]; !carried && !reflect.DeepEqual(a, b) {
				t.Fatalf("%s changed without being carried", code)
			}
		}
		if len(applied) != len(ev.Charge.Carried) {
			t.Fatalf("applied %v of %d carried with nothing known before", applied, len(ev.Charge.Carried))
		}
		second := st
		ev.Charge.ApplyTo(&second, known)
		if !reflect.DeepEqual(second, st) {
			t.Fatalf("applying twice changed the state: %+v then %+v", st, second)
		}
	})
}

// The fuzz target's errors are the two kinds the HTTP side tells apart.
func TestParseWebhookErrorKinds(t *testing.T) {
	if _, err := ParseWebhook([]byte(`{"eventType":`)); err == nil || errors.Is(err, ErrWebhookShape) {
		t.Errorf("truncated JSON: %v, want a decode error", err)
	}
	if _, err := ParseWebhook([]byte(`{}`)); !errors.Is(err, ErrWebhookShape) {
		t.Errorf("an empty object: %v, want ErrWebhookShape", err)
	}
}
