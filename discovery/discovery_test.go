package discovery_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

var settings = discovery.Settings{
	Prefix:    "homeassistant",
	BaseTopic: "smartcar2mqtt",
	Origin:    discovery.Origin{Name: "smartcar2mqtt", SWVersion: "1.0.0", SupportURL: "https://github.com/smartcar2mqtt/smartcar2mqtt"},
}

const vid = "36ab27d0-fd9d-4455-823a-ce30af709ffc"

var tesla = discovery.Vehicle{ID: vid, Make: "TESLA", Model: "Model 3", Year: 2021, ChargePortDoor: true, ChargeRead: true}

func TestTopics(t *testing.T) {
	if got, want := discovery.StatusTopic("smartcar2mqtt"), "smartcar2mqtt/status"; got != want {
		t.Errorf("StatusTopic = %q, want %q", got, want)
	}
	want := discovery.Topics{
		Availability: "smartcar2mqtt/V/availability",
		Command:      "smartcar2mqtt/V/charge_port/set",
		State:        "smartcar2mqtt/V/charge_port/state",
		Attributes:   "smartcar2mqtt/V/charge_port/attributes",
		Refresh:      "smartcar2mqtt/V/refresh",

		PluggedIn:           "smartcar2mqtt/V/plugged_in",
		ChargingState:       "smartcar2mqtt/V/charging_state",
		ChargePortLatch:     "smartcar2mqtt/V/charge_port_latch",
		ChargeLimit:         "smartcar2mqtt/V/charge_limit",
		EnergyAdded:         "smartcar2mqtt/V/energy_added",
		LastError:           "smartcar2mqtt/V/last_error",
		LastErrorAttributes: "smartcar2mqtt/V/last_error/attributes",
		LastRead:            "smartcar2mqtt/V/last_read",
	}
	if got := discovery.VehicleTopics("smartcar2mqtt", "V"); got != want {
		t.Errorf("VehicleTopics = %+v, want %+v", got, want)
	}
	if got, want := discovery.ConfigTopic("homeassistant", "V"), "homeassistant/device/smartcar2mqtt_V/config"; got != want {
		t.Errorf("ConfigTopic = %q, want %q", got, want)
	}
}

// payload mirrors the parts of the device payload the tests look at.
type payload struct {
	Dev struct {
		IDs  []string `json:"ids"`
		Name string   `json:"name"`
		MF   *string  `json:"mf"`
		MDL  *string  `json:"mdl"`
	} `json:"dev"`
	O struct {
		Name string  `json:"name"`
		SW   *string `json:"sw"`
		URL  *string `json:"url"`
	} `json:"o"`
	Availability []struct {
		Topic               string `json:"topic"`
		PayloadAvailable    string `json:"payload_available"`
		PayloadNotAvailable string `json:"payload_not_available"`
	} `json:"availability"`
	AvailabilityMode string                     `json:"availability_mode"`
	Cmps             map[string]json.RawMessage `json:"cmps"`
}

func decode(t *testing.T, b []byte) (payload, map[string]map[string]any) {
	t.Helper()
	var p payload
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // the root carries nothing we do not know of
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	cmps := map[string]map[string]any{}
	for id, raw := range p.Cmps {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		cmps[id] = m
	}
	return p, cmps
}

func TestConfigDevice(t *testing.T) {
	cases := []struct {
		name             string
		v                discovery.Vehicle
		wantName, wantMF string
		wantMDL          string
	}{
		{"upper case make", discovery.Vehicle{ID: "a", Make: "TESLA", Model: "Model Y", Year: 2023}, "Tesla Model Y 2023", "Tesla", "Model Y"},
		{"hyphenated make", discovery.Vehicle{ID: "a", Make: "MERCEDES-BENZ", Model: "EQS", Year: 2024}, "Mercedes-Benz EQS 2024", "Mercedes-Benz", "EQS"},
		{"two-word make", discovery.Vehicle{ID: "a", Make: "LAND ROVER", Model: "Defender", Year: 2022}, "Land Rover Defender 2022", "Land Rover", "Defender"},
		{"acronym make", discovery.Vehicle{ID: "a", Make: "BMW", Model: "i4", Year: 2022}, "BMW i4 2022", "BMW", "i4"},
		{"mixed case kept", discovery.Vehicle{ID: "a", Make: "McLaren", Model: "Artura", Year: 2023}, "McLaren Artura 2023", "McLaren", "Artura"},
		{"no year", discovery.Vehicle{ID: "a", Make: "tesla", Model: "Model S"}, "Tesla Model S", "Tesla", "Model S"},
		{"nothing known", discovery.Vehicle{ID: "abc"}, "Vehicle abc", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.v.ChargePortDoor = true
			if got := discovery.DeviceName(c.v); got != c.wantName {
				t.Errorf("DeviceName = %q, want %q", got, c.wantName)
			}
			b, err := discovery.Config(settings, c.v)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := decode(t, b)
			if p.Dev.Name != c.wantName {
				t.Errorf("dev.name = %q, want %q", p.Dev.Name, c.wantName)
			}
			// Empty manufacturer/model are omitted rather than sent as ""
			// or null, which Home Assistant would show or reject.
			check := func(field string, got *string, want string) {
				switch {
				case want == "" && got != nil:
					t.Errorf("dev.%s = %q, want absent", field, *got)
				case want != "" && (got == nil || *got != want):
					t.Errorf("dev.%s = %v, want %q", field, got, want)
				}
			}
			check("mf", p.Dev.MF, c.wantMF)
			check("mdl", p.Dev.MDL, c.wantMDL)
		})
	}
}

func TestConfigOriginOptionalFields(t *testing.T) {
	s := settings
	s.Origin = discovery.Origin{Name: "smartcar2mqtt"}
	b, err := discovery.Config(s, tesla)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := decode(t, b)
	if p.O.SW != nil || p.O.URL != nil {
		t.Errorf("empty origin fields should be omitted: %+v", p.O)
	}
}

// A vehicle with neither the door command nor the charge read has no
// entity: Config says "clear".
func TestConfigNoComponentsMeansClear(t *testing.T) {
	v := tesla
	v.ChargePortDoor, v.ChargeRead = false, false
	b, err := discovery.Config(settings, v)
	if err != nil || b != nil {
		t.Fatalf("Config = %q, %v; want nil, nil", b, err)
	}
	if !discovery.IsClear(b) {
		t.Error("IsClear(nil) = false")
	}
	ok, _ := discovery.Config(settings, tesla)
	if discovery.IsClear(ok) {
		t.Error("IsClear(payload) = true")
	}
}

func TestConfigRejects(t *testing.T) {
	cases := []struct {
		name    string
		s       discovery.Settings
		v       discovery.Vehicle
		want    string
		wantErr error
	}{
		{"empty id", settings, discovery.Vehicle{ID: ""}, "empty", discovery.ErrInvalidVehicleID},
		{"slash in id", settings, discovery.Vehicle{ID: "a/b"}, `"a/b"`, discovery.ErrInvalidVehicleID},
		{"plus in id", settings, discovery.Vehicle{ID: "a+b"}, `"a+b"`, discovery.ErrInvalidVehicleID},
		{"hash in id", settings, discovery.Vehicle{ID: "a#"}, `"a#"`, discovery.ErrInvalidVehicleID},
		{"space in id", settings, discovery.Vehicle{ID: "a b"}, `"a b"`, discovery.ErrInvalidVehicleID},
		{"dot in id", settings, discovery.Vehicle{ID: "a.b"}, `"a.b"`, discovery.ErrInvalidVehicleID},
		{"non-ascii id", settings, discovery.Vehicle{ID: "é"}, `"é"`, discovery.ErrInvalidVehicleID},
		{"NUL in id", settings, discovery.Vehicle{ID: "a\x00"}, "only letters", discovery.ErrInvalidVehicleID},
		{"empty prefix", discovery.Settings{BaseTopic: "b", Origin: settings.Origin}, tesla, "discovery prefix is empty", nil},
		{"prefix trailing slash", discovery.Settings{Prefix: "homeassistant/", BaseTopic: "b", Origin: settings.Origin}, tesla, "ends with '/'", nil},
		{"wildcard base", discovery.Settings{Prefix: "ha", BaseTopic: "cars/#", Origin: settings.Origin}, tesla, "wildcard", nil},
		{"control char base", discovery.Settings{Prefix: "ha", BaseTopic: "cars\n", Origin: settings.Origin}, tesla, "control", nil},
		{"C1 control base", discovery.Settings{Prefix: "ha", BaseTopic: "car\u0085s", Origin: settings.Origin}, tesla, "control", nil},
		{"non-character prefix", discovery.Settings{Prefix: "ha\ufdd0", BaseTopic: "b", Origin: settings.Origin}, tesla, "non-character", nil},
		{"no origin name", discovery.Settings{Prefix: "ha", BaseTopic: "b"}, tesla, "origin name is empty", nil},
		{"bad support url", discovery.Settings{Prefix: "ha", BaseTopic: "b", Origin: discovery.Origin{Name: "x", SupportURL: "github.com/x"}}, tesla, "not an http(s) URL", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := discovery.Config(c.s, c.v)
			if err == nil {
				t.Fatalf("want error, got payload %s", b)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q", err, c.want)
			}
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Errorf("error %v is not %v", err, c.wantErr)
			}
			if b != nil {
				t.Errorf("payload %s returned with error", b)
			}
		})
	}
}

func TestValidateVehicleID(t *testing.T) {
	for _, id := range []string{vid, "abc", "A_B-9"} {
		if err := discovery.ValidateVehicleID(id); err != nil {
			t.Errorf("ValidateVehicleID(%q) = %v", id, err)
		}
	}
}

// TestConfigGolden pins the whole payload byte for byte (key order included):
// device, origin, availability and every component with every option. It is
// also the determinism check: a payload built from map iteration would not
// match a constant (FuzzConfig also builds each payload twice).
func TestConfigGolden(t *testing.T) {
	b, err := discovery.Config(settings, discovery.Vehicle{ID: "V1", Make: "TESLA", Model: "Model 3", Year: 2021, ChargePortDoor: true, ChargeRead: true})
	if err != nil {
		t.Fatal(err)
	}
	const golden = `{"dev":{"ids":["smartcar2mqtt_V1"],"name":"Tesla Model 3 2021","mf":"Tesla","mdl":"Model 3"},` +
		`"o":{"name":"smartcar2mqtt","sw":"1.0.0","url":"https://github.com/smartcar2mqtt/smartcar2mqtt"},` +
		`"availability":[{"topic":"smartcar2mqtt/status","payload_available":"online","payload_not_available":"offline"},` +
		`{"topic":"smartcar2mqtt/V1/availability","payload_available":"online","payload_not_available":"offline"}],` +
		`"availability_mode":"all",` +
		`"cmps":{` +
		`"charge_limit":{"p":"sensor","unique_id":"smartcar2mqtt_V1_charge_limit","default_entity_id":"sensor.tesla_model_3_2021_charge_limit",` +
		`"name":"Charge limit","state_topic":"smartcar2mqtt/V1/charge_limit","unit_of_measurement":"%","state_class":"measurement","qos":1},` +
		`"charge_port":{"p":"cover","unique_id":"smartcar2mqtt_V1_charge_port","default_entity_id":"cover.tesla_model_3_2021_charge_port",` +
		`"name":"Charge port","device_class":"door",` +
		`"command_topic":"smartcar2mqtt/V1/charge_port/set","state_topic":"smartcar2mqtt/V1/charge_port/state",` +
		`"json_attributes_topic":"smartcar2mqtt/V1/charge_port/attributes","payload_open":"OPEN","payload_close":"CLOSE",` +
		`"payload_stop":null,"state_open":"open","state_closed":"closed","state_opening":"opening","state_closing":"closing",` +
		`"optimistic":false,"retain":false,"qos":1},` +
		`"charge_port_latch":{"p":"sensor","unique_id":"smartcar2mqtt_V1_charge_port_latch","default_entity_id":"sensor.tesla_model_3_2021_charge_port_latch",` +
		`"name":"Charge port latch","state_topic":"smartcar2mqtt/V1/charge_port_latch","qos":1},` +
		`"charging_state":{"p":"sensor","unique_id":"smartcar2mqtt_V1_charging_state","default_entity_id":"sensor.tesla_model_3_2021_charging_state",` +
		`"name":"Charging state","device_class":"enum","options":["CHARGING","FULLY_CHARGED","NOT_CHARGING"],` +
		`"state_topic":"smartcar2mqtt/V1/charging_state","qos":1},` +
		`"energy_added":{"p":"sensor","unique_id":"smartcar2mqtt_V1_energy_added","default_entity_id":"sensor.tesla_model_3_2021_energy_added",` +
		`"name":"Energy added","device_class":"energy","state_topic":"smartcar2mqtt/V1/energy_added","unit_of_measurement":"kWh",` +
		`"state_class":"total_increasing","qos":1},` +
		`"last_error":{"p":"sensor","unique_id":"smartcar2mqtt_V1_last_error","default_entity_id":"sensor.tesla_model_3_2021_last_error",` +
		`"name":"Last Smartcar error","entity_category":"diagnostic","state_topic":"smartcar2mqtt/V1/last_error",` +
		`"json_attributes_topic":"smartcar2mqtt/V1/last_error/attributes","qos":1},` +
		`"last_read":{"p":"sensor","unique_id":"smartcar2mqtt_V1_last_read","default_entity_id":"sensor.tesla_model_3_2021_last_read",` +
		`"name":"Last read","device_class":"timestamp","entity_category":"diagnostic","state_topic":"smartcar2mqtt/V1/last_read","qos":1},` +
		`"plugged_in":{"p":"binary_sensor","unique_id":"smartcar2mqtt_V1_plugged_in","default_entity_id":"binary_sensor.tesla_model_3_2021_plugged_in",` +
		`"name":"Plugged in","device_class":"plug","state_topic":"smartcar2mqtt/V1/plugged_in","payload_on":"ON","payload_off":"OFF","qos":1},` +
		`"refresh":{"p":"button","unique_id":"smartcar2mqtt_V1_refresh","default_entity_id":"button.tesla_model_3_2021_refresh",` +
		`"name":"Refresh","command_topic":"smartcar2mqtt/V1/refresh","payload_press":"PRESS","retain":false,"qos":1}` +
		`}}`
	if string(b) != golden {
		t.Errorf("payload changed:\n got %s\nwant %s", b, golden)
	}
}

// Characters that are legal in topics and names reach the payload as they
// are (no HTML escaping of & < >).
func TestConfigNoHTMLEscaping(t *testing.T) {
	s := settings
	s.BaseTopic = "cars & more"
	v := tesla
	v.Model = "EQS <AMG>"
	b, err := discovery.Config(s, v)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"cars & more/status"`, `"EQS <AMG>"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("payload lacks %s: %s", want, b)
		}
	}
}

func TestVehicleFromConfigTopic(t *testing.T) {
	tests := []struct {
		topic string
		id    string
		ok    bool
	}{
		{discovery.ConfigTopic("homeassistant", "V-1_a"), "V-1_a", true},
		{"homeassistant/device/smartcar2mqtt_V1/config", "V1", true},
		{"homeassistant/device/other_V1/config", "", false},
		{"homeassistant/device/smartcar2mqtt_/config", "", false},
		{"homeassistant/device/smartcar2mqtt_V1/state", "", false},
		{"homeassistant/device/smartcar2mqtt_V 1/config", "", false},
		{"ha/device/smartcar2mqtt_V1/config", "", false},
		{"homeassistant/cover/smartcar2mqtt_V1/config", "", false},
	}
	for _, tt := range tests {
		id, ok := discovery.VehicleFromConfigTopic("homeassistant", tt.topic)
		if id != tt.id || ok != tt.ok {
			t.Errorf("VehicleFromConfigTopic(%q) = %q, %v; want %q, %v", tt.topic, id, ok, tt.id, tt.ok)
		}
	}
}
