package bridge

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// FuzzParseCommand: a command payload comes from anyone who can publish to
// the broker. parseCommand must accept exactly OPEN and CLOSE (surrounding
// whitespace trimmed, case-insensitive) and refuse everything else with a
// short, single-line error that is safe to log.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"OPEN", "CLOSE", "open", " Close \n", "\tOPEN\r\n", "", "STOP", "OPENED",
		"OPEN CLOSE", `{"action":"OPEN"}`, "\x00OPEN", "\u00a0CLOSE\u2028", "CLOſE",
		"\xff\xfe", strings.Repeat("\xff", 64), strings.Repeat("x", 300),
		"OPEN\nforged log line", "\u202eNEPO",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := parseCommand(payload)

		// An oracle that does not share the implementation's ToUpper.
		trimmed := strings.TrimFunc(string(payload), unicode.IsSpace)
		var want smartcar.Action
		switch {
		case strings.EqualFold(trimmed, "OPEN"):
			want = smartcar.Open
		case strings.EqualFold(trimmed, "CLOSE"):
			want = smartcar.Close
		}

		if want != "" {
			if err != nil || got != want {
				t.Fatalf("parseCommand(%q) = %q, %v; want %q", payload, got, err, want)
			}
			if !got.Valid() {
				t.Fatalf("parseCommand(%q) = %q, which is not a valid action", payload, got)
			}
			return
		}
		if err == nil {
			t.Fatalf("parseCommand(%q) = %q, nil; want an error", payload, got)
		}
		if got != "" {
			t.Fatalf("parseCommand(%q) returned action %q together with error %v", payload, got, err)
		}
		msg := err.Error()
		if len(msg) > 200 {
			t.Fatalf("parseCommand error for a %d-byte payload is %d bytes long (max 200): %s", len(payload), len(msg), msg)
		}
		if !utf8.ValidString(msg) || strings.ContainsFunc(msg, unicode.IsControl) {
			t.Fatalf("parseCommand error is not one printable line: %q", msg)
		}
	})
}

// FuzzParseTopic: parseTopic recognises exactly base/<vehicle>/charge_port/set
// and base/<vehicle>/refresh. Whatever it recognises, rebuilding the topic
// from the route gives the input back; and the topics discovery tells Home
// Assistant to use are parsed back to the same vehicle (that the embedded broker
// lets Home Assistant publish to them is the broker package's FuzzOpenTopics).
func FuzzParseTopic(f *testing.F) {
	f.Add("smartcar2mqtt", "smartcar2mqtt/V1/charge_port/set")
	f.Add("smartcar2mqtt", "smartcar2mqtt/36ab27d0-fd9d-4455-823a-ce30af709ffc/refresh")
	f.Add("smartcar2mqtt", "smartcar2mqtt/V1/charge_port/state")
	f.Add("smartcar2mqtt", "smartcar2mqtt/V1/charge_port/set/x")
	f.Add("smartcar2mqtt", "smartcar2mqttX/V1/refresh")
	f.Add("smartcar2mqtt", "smartcar2mqtt//refresh")
	f.Add("smartcar2mqtt", "smartcar2mqtt/+/refresh")
	f.Add("home/cars", "home/cars/V1/charge_port/set")
	f.Add("", "/V1/refresh")
	f.Add("a/", "a//V/refresh")
	f.Fuzz(func(t *testing.T, base, topic string) {
		r := parseTopic(base, topic)
		switch r.kind {
		case routeNone:
			if r.vehicleID != "" {
				t.Fatalf("parseTopic(%q, %q) = %+v: no route but a vehicle id", base, topic, r)
			}
		case routeCommand, routeRefresh:
			if strings.Contains(r.vehicleID, "/") {
				t.Fatalf("parseTopic(%q, %q) = %+v: vehicle id spans topic levels", base, topic, r)
			}
			if rebuilt := fuzzRouteTopic(base, r); rebuilt != topic {
				t.Fatalf("parseTopic(%q, %q) = %+v, which rebuilds to %q", base, topic, r, rebuilt)
			}
		default:
			t.Fatalf("parseTopic(%q, %q) = %+v: unknown route kind", base, topic, r)
		}

		// Discovery's topics for a valid vehicle id come back as that vehicle.
		id := topic
		if discovery.ValidateVehicleID(id) != nil {
			return
		}
		vt := discovery.VehicleTopics(base, id)
		for _, c := range []struct {
			topic string
			kind  routeKind
		}{{vt.Command, routeCommand}, {vt.Refresh, routeRefresh}} {
			want := route{vehicleID: id, kind: c.kind}
			if got := parseTopic(base, c.topic); got != want {
				t.Fatalf("parseTopic(%q, %q) = %+v, want %+v", base, c.topic, got, want)
			}
		}
		for _, other := range []string{vt.State, vt.Attributes, vt.Availability, vt.LastError, discovery.StatusTopic(base)} {
			if got := parseTopic(base, other); got.kind != routeNone {
				t.Fatalf("parseTopic(%q, %q) = %+v: a state topic routed as a command", base, other, got)
			}
		}
	})
}

// fuzzRouteTopic is the topic a route is read from, built independently of
// parseTopic.
func fuzzRouteTopic(base string, r route) string {
	switch r.kind {
	case routeCommand:
		return base + "/" + r.vehicleID + "/charge_port/set"
	case routeRefresh:
		return base + "/" + r.vehicleID + "/refresh"
	}
	return ""
}
