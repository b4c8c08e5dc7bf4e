package smartcar

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWebhookSignature(t *testing.T) {
	// RFC 4231, test case 2: HMAC-SHA256 keyed with the secret, over the data.
	const want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got := WebhookSignature("Jefe", []byte("what do ya want for nothing?")); got != want {
		t.Fatalf("WebhookSignature = %s, want %s", got, want)
	}
	body := []byte(`{"eventId":"e1","eventType":"VEHICLE_STATE"}`)
	good := WebhookSignature("amt-secret", body)
	for _, tt := range []struct {
		name, secret, signature string
		body                    []byte
		valid                   bool
	}{
		{"as signed", "amt-secret", good, body, true},
		{"upper-case hex", "amt-secret", strings.ToUpper(good), body, true},
		{"spaces around", "amt-secret", " " + good + " ", body, true},
		{"another secret", "other-secret", good, body, false},
		{"one byte of the body changed", "amt-secret", good, append([]byte(`{"eventId":"e2"`), body[15:]...), false},
		{"the body cut short", "amt-secret", good, body[:len(body)-1], false},
		{"one hex digit changed", "amt-secret", flipLastHex(good), body, false},
		{"cut short", "amt-secret", good[:62], body, false},
		{"empty", "amt-secret", "", body, false},
		{"not hex", "amt-secret", strings.Repeat("zz", 32), body, false},
		{"base64 instead of hex", "amt-secret", "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=", body, false},
		{"the secret itself", "amt-secret", "amt-secret", body, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidWebhookSignature(tt.secret, tt.body, tt.signature); got != tt.valid {
				t.Errorf("ValidWebhookSignature = %v, want %v", got, tt.valid)
			}
		})
	}
}

func flipLastHex(s string) string {
	last := s[len(s)-1]
	if last == '0' {
		return s[:len(s)-1] + "1"
	}
	return s[:len(s)-1] + "0"
}

var (
	t1 = time.Date(2025, 9, 23, 23, 5, 12, 404_000_000, time.UTC) // 1758668712404 ms
	t2 = t1.Add(time.Minute)
)

func TestParseWebhook(t *testing.T) {
	type want struct {
		typ, id, vehicle, user, challenge string
		state                             ChargeState
		carried                           map[string]time.Time
		errors                            []WebhookError
	}
	for _, tt := range []struct {
		name  string
		body  string
		want  want
		err   error // errors.Is; nil with bad set means any error
		isErr bool
	}{
		{
			name: "VERIFY",
			body: `{"eventId":"52f6e0bb","eventType":"VERIFY","data":{"challenge":"c-123"},"meta":{"version":"4.0","deliveredAt":"2025-07-31T19:38:42.332Z"}}`,
			want: want{typ: EventVerify, id: "52f6e0bb", challenge: "c-123"},
		},
		{
			name: "VERIFY in the v2.0 format",
			body: `{"version":"2.0","webhookId":"w","eventName":"verify","payload":{"challenge":"c-456"}}`,
			want: want{typ: EventVerify, challenge: "c-456"},
		},
		{name: "VERIFY without a challenge", body: `{"eventType":"VERIFY","data":{}}`, err: ErrWebhookShape},
		{name: "VERIFY with a number for a challenge", body: `{"eventType":"VERIFY","data":{"challenge":5}}`, isErr: true},
		{name: "no event type", body: `{"eventId":"x","data":{}}`, err: ErrWebhookShape},
		{name: "truncated", body: `{"eventId":"x","eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v`, isErr: true},
		{name: "not JSON", body: `eventType=VERIFY`, isErr: true},
		{name: "an array", body: `[{"eventType":"VERIFY"}]`, isErr: true},
		{name: "data not an object", body: `{"eventType":"VEHICLE_STATE","data":"v1"}`, isErr: true},
		{
			name: "VEHICLE_STATE as documented: the list of signals, status and meta per signal",
			body: `{"eventId":"e1","eventType":"VEHICLE_STATE","vehicleId":"v1",
				"data":{"user":{"id":"u1"},"vehicle":{"id":"v1","make":"TESLA","model":"Model 3","year":2021},
				"signals":[
					{"code":"charge-ischargingportflapopen","name":"IsChargingPortFlapOpen","group":"Charge","body":{"value":true},"status":{"value":"SUCCESS"},"meta":{"retrievedAt":1758668712404,"oemUpdatedAt":1758668712404}},
					{"code":"charge-ischargingcableconnected","name":"IsChargingCableConnected","group":"Charge","body":{"value":true},"status":{"value":"SUCCESS"},"meta":{"oemUpdatedAt":1758668772404}},
					{"code":"location-preciselocation","body":{"latitude":37.7,"longitude":-122.4},"meta":{"oemUpdatedAt":1758668712404}}
				]},
				"triggers":[{"type":"SIGNAL_UPDATED","signal":{"code":"charge-ischargingcableconnected"}}],
				"meta":{"version":"4.0","deliveryId":"d1","deliveredAt":1761896351529}}`,
			want: want{typ: EventVehicleState, id: "e1", vehicle: "v1", user: "u1",
				state:   ChargeState{DoorOpen: new(true), PluggedIn: new(true)},
				carried: map[string]time.Time{SignalDoorOpen: t1, SignalPluggedIn: t2}},
		},
		{
			name: "a signal in error: unknown, whatever its stale body says",
			body: `{"eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v1"},"signals":[
				{"code":"charge-ischargingcableconnected","body":{"value":true},"status":{"value":"ERROR","error":{"type":"COMPATIBILITY","code":"VEHICLE_NOT_CAPABLE"}},"meta":{"oemUpdatedAt":1758668712404}},
				{"code":"charge-ischargingcablelatched","status":"ERROR","body":{"value":true}},
				{"code":"charge-detailedchargingstatus","error":{"type":"PERMISSION"}},
				{"code":"charge-chargelimits","status":{"value":"SUCCESS"}},
				{"code":"charge-energyadded","body":{"value":"lots"}}
			]}}`,
			want: want{typ: EventVehicleState, vehicle: "v1", carried: map[string]time.Time{
				SignalPluggedIn: t1, SignalLatched: {}, SignalCharging: {}, SignalLimits: {}, SignalEnergyAdded: {}}},
		},
		{
			name: "the second documented bodies, an ISO-8601 oemUpdatedAt, the vehicle id of the envelope",
			body: `{"eventType":"vehicle_state","vehicleId":"v9","data":{"signals":[
				{"code":"Charge-IsChargingPortFlapOpen","body":{"isOpen":false},"meta":{"oemUpdatedAt":"2025-09-23T23:05:12.404Z"}},
				{"code":"charge-chargelimits","body":{"values":[{"type":"LOCATION","limit":90},{"type":"GLOBAL","limit":80}]},"meta":{"oemUpdatedAt":"1758668772404"}},
				{"code":"charge-energyadded","body":{"value":4200,"unit":"Wh"},"meta":{"oemUpdatedAt":1758668712}},
				{"code":"charge-detailedchargingstatus","body":{"value":"FULLY_CHARGED"},"meta":{"oemUpdatedAt":"yesterday"}}
			]}}`,
			want: want{typ: EventVehicleState, vehicle: "v9",
				state: ChargeState{DoorOpen: new(false), LimitPercent: new(80.0), EnergyAdded: new(4.2), Charging: new("FULLY_CHARGED")},
				carried: map[string]time.Time{SignalDoorOpen: t1, SignalLimits: t2,
					SignalEnergyAdded: t1.Truncate(time.Second), SignalCharging: {}}},
		},
		{
			name: "signals keyed by Group.Name, each the body itself",
			body: `{"eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v1"},"signals":{
				"Charge.IsChargingCableConnected":{"value":true,"meta":{"oemUpdatedAt":1758668712404}},
				"Charge.IsChargingCableLatched":{"code":"charge-ischargingcablelatched","body":{"value":false}},
				"TractionBattery.StateOfCharge":{"value":75}
			}}}`,
			want: want{typ: EventVehicleState, vehicle: "v1",
				state:   ChargeState{PluggedIn: new(true), Latch: new(LatchDisengaged)},
				carried: map[string]time.Time{SignalPluggedIn: t1, SignalLatched: {}}},
		},
		{
			name: "the same signal twice: the later one counts",
			body: `{"eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v1"},"signals":[
				{"code":"charge-ischargingcableconnected","body":{"value":true},"meta":{"oemUpdatedAt":1758668772404}},
				{"code":"charge-ischargingcableconnected","body":{"value":false},"meta":{"oemUpdatedAt":1758668712404}}
			]}}`,
			want: want{typ: EventVehicleState, vehicle: "v1", state: ChargeState{PluggedIn: new(true)},
				carried: map[string]time.Time{SignalPluggedIn: t2}},
		},
		{
			name: "no signals",
			body: `{"eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v1"},"signals":null}}`,
			want: want{typ: EventVehicleState, vehicle: "v1", carried: map[string]time.Time{}},
		},
		{name: "signals neither list nor object", body: `{"eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v1"},"signals":7}}`, err: ErrWebhookShape},
		{name: "VEHICLE_STATE without a vehicle", body: `{"eventType":"VEHICLE_STATE","data":{"signals":[]}}`, err: ErrWebhookShape},
		{
			name: "VEHICLE_ERROR as documented",
			body: `{"eventId":"e5","eventType":"VEHICLE_ERROR","vehicleId":"v1","data":{"user":{"id":"u1"},"vehicle":{"id":"v1"},
				"errors":[
					{"type":"VEHICLE_STATE","code":"UNREACHABLE","state":"ERROR","description":"The vehicle is unreachable.","suggestedUserMessage":"Your car is out of reach.\nTry later.","resolution":{"type":"RETRY_LATER"}},
					{"type":"PERMISSION","code":null,"state":"RESOLVED","description":"ok again"}
				]}}`,
			want: want{typ: EventVehicleError, id: "e5", vehicle: "v1", user: "u1", errors: []WebhookError{
				{Type: "VEHICLE_STATE", Code: "UNREACHABLE", Description: "Your car is out of reach. Try later.", Resolution: "RETRY_LATER"},
				{Type: "PERMISSION", Resolved: true, Description: "ok again"},
			}},
		},
		{
			// As delivered: signals by "Group.Name", or as objects (with
			// group and name swapped); an error about other signals says
			// nothing of the charge port.
			name: "VEHICLE_ERROR naming its signals",
			body: `{"eventId":"e7","eventType":"VEHICLE_ERROR","data":{"vehicle":{"id":"v1"},"errors":[
					{"type":"COMPATIBILITY","code":"VEHICLE_NOT_CAPABLE","state":"ERROR","signals":["VehicleIdentification.Nickname","ConnectivityStatus.IsOnline"]},
					{"type":"PERMISSION","code":null,"state":"ERROR","signals":[{"name":"Closure","group":"IsLocked","code":"closure-islocked"}]},
					{"type":"COMPATIBILITY","code":"VEHICLE_NOT_CAPABLE","state":"ERROR","signals":["Closure.IsLocked","Charge.IsChargingPortFlapOpen"]},
					{"type":"PERMISSION","code":null,"state":"ERROR","signals":[{"name":"IsChargingCableConnected","group":"Charge"}]},
					{"type":"PERMISSION","code":null,"state":"ERROR","signals":[{"group":"IsChargingCableLatched","name":"Charge"}]},
					{"type":"VEHICLE_STATE","code":"ASLEEP","state":"ERROR","signals":[]},
					{"type":"VEHICLE_STATE","code":"ASLEEP","state":"ERROR","signals":[7]}
				]}}`,
			want: want{typ: EventVehicleError, id: "e7", vehicle: "v1", errors: []WebhookError{
				{Type: "COMPATIBILITY", Code: "VEHICLE_NOT_CAPABLE", OtherSignalsOnly: true},
				{Type: "PERMISSION", OtherSignalsOnly: true},
				{Type: "COMPATIBILITY", Code: "VEHICLE_NOT_CAPABLE"},
				{Type: "PERMISSION"},
				{Type: "PERMISSION"},
				{Type: "VEHICLE_STATE", Code: "ASLEEP"},
				{Type: "VEHICLE_STATE", Code: "ASLEEP"},
			}},
		},
		{name: "a delivery in the v2.0 format", body: `{"version":"2.0","eventName":"eventBased","payload":{"vehicles":[]}}`, err: ErrWebhookV2Format},
		{
			name: "a type the daemon does not know",
			body: `{"eventId":"e6","eventType":"VEHICLE_DISCONNECTED","vehicleId":"v1","data":{}}`,
			want: want{typ: "VEHICLE_DISCONNECTED", id: "e6", vehicle: "v1"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseWebhook([]byte(tt.body))
			if tt.err != nil || tt.isErr {
				if err == nil {
					t.Fatalf("no error; got %+v", ev)
				}
				if tt.err != nil && !errors.Is(err, tt.err) {
					t.Errorf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := want{typ: ev.Type, id: ev.ID, vehicle: ev.VehicleID, user: ev.UserID, challenge: ev.Challenge,
				state: ev.Charge.State, carried: ev.Charge.Carried, errors: ev.Errors}
			if !reflect.DeepEqual(got, tt.want) {
				show := func(w want) string {
					return fmt.Sprintf("type=%s id=%s vehicle=%s user=%s challenge=%s state=%s carried=%v errors=%+v",
						w.typ, w.id, w.vehicle, w.user, w.challenge, chargeString(w.state), w.carried, w.errors)
				}
				t.Errorf("got  %s\nwant %s", show(got), show(tt.want))
			}
		})
	}
}

func sprint(v any) string { return fmt.Sprint(v) }

func chargeString(st ChargeState) string {
	var parts []string
	add := func(name string, set bool, v any) {
		if set {
			parts = append(parts, name+":"+sprint(v))
		}
	}
	if st.DoorOpen != nil {
		add("door", true, *st.DoorOpen)
	}
	if st.PluggedIn != nil {
		add("plug", true, *st.PluggedIn)
	}
	if st.Latch != nil {
		add("latch", true, *st.Latch)
	}
	if st.Charging != nil {
		add("charging", true, *st.Charging)
	}
	if st.LimitPercent != nil {
		add("limit", true, *st.LimitPercent)
	}
	if st.EnergyAdded != nil {
		add("energy", true, *st.EnergyAdded)
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func TestChargeReportApplyTo(t *testing.T) {
	report := func(body string) ChargeReport {
		t.Helper()
		ev, err := ParseWebhook([]byte(`{"eventType":"VEHICLE_STATE","data":{"vehicle":{"id":"v1"},"signals":[` + body + `]}}`))
		if err != nil {
			t.Fatal(err)
		}
		return ev.Charge
	}
	plug := func(v bool, at string) string {
		return `{"code":"charge-ischargingcableconnected","body":{"value":` + sprint(v) + `}` + at + `}`
	}
	dated := func(t time.Time) string { return `,"meta":{"oemUpdatedAt":` + sprint(t.UnixMilli()) + `}` }
	before := ChargeState{DoorOpen: new(true), PluggedIn: new(false), Charging: new("NOT_CHARGING"), RequestID: "r1", NoData: true}

	for _, tt := range []struct {
		name    string
		known   SignalTimes
		body    string
		plugged *bool
		applied []string
		knownAt time.Time
	}{
		{"newer than known", SignalTimes{SignalPluggedIn: t1}, plug(true, dated(t2)), new(true), []string{SignalPluggedIn}, t2},
		{"as new as known", SignalTimes{SignalPluggedIn: t1}, plug(true, dated(t1)), new(true), []string{SignalPluggedIn}, t1},
		{"older than known: changes nothing", SignalTimes{SignalPluggedIn: t2}, plug(true, dated(t1)), new(false), nil, t2},
		{"nothing known yet", SignalTimes{}, plug(true, dated(t1)), new(true), []string{SignalPluggedIn}, t1},
		{"undated: taken, known left as it is", SignalTimes{SignalPluggedIn: t2}, plug(true, ""), new(true), []string{SignalPluggedIn}, t2},
		{"in error: unknown", SignalTimes{SignalPluggedIn: t1}, `{"code":"charge-ischargingcableconnected","status":{"value":"ERROR"},"body":{"value":true}` + dated(t2) + `}`, nil, []string{SignalPluggedIn}, t2},
		{"another signal only", SignalTimes{}, `{"code":"charge-energyadded","body":{"value":1.5,"unit":"kWh"}}`, new(false), []string{SignalEnergyAdded}, time.Time{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := before
			applied := report(tt.body).ApplyTo(&st, tt.known)
			if !reflect.DeepEqual(applied, tt.applied) {
				t.Errorf("applied %v, want %v", applied, tt.applied)
			}
			if !reflect.DeepEqual(st.PluggedIn, tt.plugged) {
				t.Errorf("plugged in %s, want %s", chargeString(ChargeState{PluggedIn: st.PluggedIn}), chargeString(ChargeState{PluggedIn: tt.plugged}))
			}
			if got := tt.known[SignalPluggedIn]; !got.Equal(tt.knownAt) {
				t.Errorf("known time %v, want %v", got, tt.knownAt)
			}
			// What the delivery does not carry keeps its value.
			if *st.DoorOpen != true || *st.Charging != "NOT_CHARGING" || st.RequestID != "r1" {
				t.Errorf("fields the delivery did not carry changed: %s", chargeString(st))
			}
			if st.NoData == (len(tt.applied) > 0) {
				t.Errorf("NoData %v after applying %v", st.NoData, tt.applied)
			}
		})
	}
}

func TestWebhookErrorFailure(t *testing.T) {
	f := WebhookError{Type: "PERMISSION"}.Failure()
	if f.Code != CodeUnspecified || f.Description == "" || f.StatusCode != 0 {
		t.Errorf("failure %+v: want a code, words, and no status code", f)
	}
	f = WebhookError{Type: "VEHICLE_STATE", Code: "ASLEEP", Description: "Asleep.", Resolution: "RETRY_LATER"}.Failure()
	if f != (Failure{Type: "VEHICLE_STATE", Code: "ASLEEP", Description: "Asleep.", Resolution: "RETRY_LATER"}) {
		t.Errorf("failure %+v", f)
	}
}
