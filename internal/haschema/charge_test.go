package haschema_test

import (
	"strings"
	"testing"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/haschema"
)

// chargeDevice is a valid device payload with one entity of each kind the
// charge read feeds, written out by hand so the validator is not checked
// against the generator it is meant to check.
func chargeDevice() map[string]any {
	return map[string]any{
		"dev":               map[string]any{"ids": []any{"smartcar2mqtt_V1"}, "name": "Tesla Model 3 2021"},
		"o":                 map[string]any{"name": "smartcar2mqtt"},
		"availability":      []any{map[string]any{"topic": "smartcar2mqtt/status"}, map[string]any{"topic": "smartcar2mqtt/V1/availability"}},
		"availability_mode": "all",
		"cmps": map[string]any{
			"plugged_in": map[string]any{
				"p": "binary_sensor", "unique_id": "u_plugged_in", "default_entity_id": "binary_sensor.tesla_model_3_2021_plugged_in",
				"name": "Plugged in", "device_class": "plug", "state_topic": "smartcar2mqtt/V1/plugged_in",
				"payload_on": "ON", "payload_off": "OFF", "qos": 1,
			},
			"charging_state": map[string]any{
				"p": "sensor", "unique_id": "u_charging_state", "default_entity_id": "sensor.tesla_model_3_2021_charging_state",
				"name": "Charging state", "device_class": "enum", "options": []any{"CHARGING", "FULLY_CHARGED", "NOT_CHARGING"},
				"state_topic": "smartcar2mqtt/V1/charging_state", "qos": 1,
			},
			"charge_limit": map[string]any{
				"p": "sensor", "unique_id": "u_charge_limit", "default_entity_id": "sensor.tesla_model_3_2021_charge_limit",
				"name": "Charge limit", "unit_of_measurement": "%", "state_class": "measurement",
				"state_topic": "smartcar2mqtt/V1/charge_limit", "qos": 1,
			},
			"energy_added": map[string]any{
				"p": "sensor", "unique_id": "u_energy_added", "default_entity_id": "sensor.tesla_model_3_2021_energy_added",
				"name": "Energy added", "device_class": "energy", "unit_of_measurement": "kWh", "state_class": "total_increasing",
				"state_topic": "smartcar2mqtt/V1/energy_added", "qos": 1,
			},
			"refresh": map[string]any{
				"p": "button", "unique_id": "u_refresh", "default_entity_id": "button.tesla_model_3_2021_refresh",
				"name": "Refresh", "command_topic": "smartcar2mqtt/V1/refresh", "payload_press": "PRESS", "retain": false, "qos": 1,
			},
			"last_error": map[string]any{
				"p": "sensor", "unique_id": "u_last_error", "default_entity_id": "sensor.tesla_model_3_2021_last_error",
				"name": "Last Smartcar error", "entity_category": "diagnostic", "state_topic": "smartcar2mqtt/V1/last_error",
				"json_attributes_topic": "smartcar2mqtt/V1/last_error/attributes", "qos": 1,
			},
			"last_read": map[string]any{
				"p": "sensor", "unique_id": "u_last_read", "default_entity_id": "sensor.tesla_model_3_2021_last_read",
				"name": "Last read", "device_class": "timestamp", "entity_category": "diagnostic",
				"state_topic": "smartcar2mqtt/V1/last_read", "qos": 1,
			},
		},
	}
}

func TestValidateChargeEntities(t *testing.T) {
	type tc struct {
		name   string
		mutate func(m map[string]any)
		// lenient and strict list substrings each validator's error must
		// contain; empty means that validator must accept the payload.
		lenient, strict []string
	}
	set := func(id, key string, v any) func(map[string]any) {
		return func(m map[string]any) { cmp(m, id)[key] = v }
	}
	del := func(id string, keys ...string) func(map[string]any) {
		return func(m map[string]any) {
			for _, k := range keys {
				delete(cmp(m, id), k)
			}
		}
	}
	both := func(s ...string) ([]string, []string) { return s, s }
	l, s := both(`"kwh" is not a valid unit for device class energy`)
	cases := []tc{
		{name: "good", mutate: func(map[string]any) {}},
		{name: "abbreviated keys", mutate: func(m map[string]any) {
			c := cmp(m, "refresh")
			c["pl_prs"] = c["payload_press"]
			delete(c, "payload_press")
			c = cmp(m, "last_read")
			c["ent_cat"] = c["entity_category"]
			delete(c, "entity_category")
			c = cmp(m, "plugged_in")
			c["def_ent_id"] = c["default_entity_id"]
			delete(c, "default_entity_id")
		}},
		{name: "name null makes the main entity", mutate: set("charge_limit", "name", nil)},

		// default_entity_id: Home Assistant takes any string.
		{name: "default_entity_id wrong domain", mutate: set("plugged_in", "default_entity_id", "sensor.tesla_model_3_2021_plugged_in"),
			strict: []string{`has domain "sensor" but the entity is a binary_sensor`}},
		{name: "default_entity_id without domain", mutate: set("refresh", "default_entity_id", "tesla_model_3_2021_refresh"),
			strict: []string{`"tesla_model_3_2021_refresh" is not of the form button.<object_id>`}},
		{name: "default_entity_id not a slug", mutate: set("last_read", "default_entity_id", "sensor.Tesla Model 3_last_read"),
			strict: []string{`object id "Tesla Model 3_last_read" is not a slug`}},
		{name: "default_entity_id double underscore", mutate: set("last_read", "default_entity_id", "sensor.tesla__last_read"),
			strict: []string{"is not a slug"}},
		{name: "default_entity_id trailing underscore", mutate: set("last_read", "default_entity_id", "sensor.last_read_"),
			strict: []string{"is not a slug"}},
		{name: "default_entity_id too long", mutate: set("last_read", "default_entity_id", "sensor."+strings.Repeat("a", 250)),
			strict: []string{"longer than 255 characters"}},
		{name: "default_entity_id null", mutate: set("last_read", "default_entity_id", nil),
			lenient: []string{"default_entity_id: must be a string, not null"}, strict: []string{"default_entity_id: must be a string, not null"}},
		{name: "default_entity_id duplicated", mutate: set("charge_limit", "default_entity_id", "sensor.tesla_model_3_2021_last_read"),
			strict: []string{`"sensor.tesla_model_3_2021_last_read" already used by component "charge_limit"`}},
		{name: "object_id deprecated", mutate: set("charge_limit", "object_id", "tesla_model_3_2021_charge_limit"),
			strict: []string{"object_id: deprecated since Home Assistant 2025.10"}},

		// Names.
		{name: "name missing", mutate: del("charge_limit", "name"), strict: []string{"charge_limit.name: not set"}},
		{name: "name repeats device name", mutate: set("charge_limit", "name", "Tesla Model 3 2021 Charge limit"),
			strict: []string{"starts with the device name"}},
		{name: "name is device name", mutate: set("charge_limit", "name", "tesla model 3 2021"),
			strict: []string{"is the device name; send null"}},

		// Binary sensor.
		{name: "binary sensor equal payloads", mutate: set("plugged_in", "payload_off", "ON"),
			strict: []string{`payload_on and payload_off are both "ON"`}},
		{name: "binary sensor default payloads clash", mutate: func(m map[string]any) {
			delete(cmp(m, "plugged_in"), "payload_on")
			cmp(m, "plugged_in")["payload_off"] = "ON"
		}, strict: []string{"off state can never be reached"}},
		{name: "binary sensor category config", mutate: set("plugged_in", "entity_category", "config"),
			strict: []string{"config is not allowed for a binary_sensor"}},

		// Enum sensor.
		{name: "enum without options", mutate: del("charging_state", "options"),
			strict: []string{"an enum sensor should list its options"}},
		{name: "enum option null", mutate: set("charging_state", "options", []any{"CHARGING", nil}),
			lenient: []string{"options[1]: must be a string, not null"}, strict: []string{"options[1]: must be a string, not null"}},
		{name: "enum with unit", mutate: set("charging_state", "unit_of_measurement", "%"),
			lenient: []string{"not allowed together with state_class or unit_of_measurement", `"%" is not a valid unit for device class enum`},
			strict:  []string{"not allowed together with state_class or unit_of_measurement"}},
		{name: "enum with state class", mutate: set("charging_state", "state_class", "measurement"),
			lenient: []string{`"measurement" is not valid for device class enum`}, strict: []string{`"measurement" is not valid for device class enum`}},
		{name: "options on plain sensor", mutate: set("last_error", "options", []any{"none"}),
			lenient: []string{`options: requires device_class enum, got ""`}, strict: []string{`options: requires device_class enum`}},

		// Timestamp sensor.
		{name: "timestamp with unit", mutate: set("last_read", "unit_of_measurement", "s"),
			lenient: []string{`"s" is not a valid unit for device class timestamp`}, strict: []string{`"s" is not a valid unit for device class timestamp`}},
		{name: "timestamp with measurement", mutate: set("last_read", "state_class", "measurement"),
			lenient: []string{`"measurement" is not valid for device class timestamp`}, strict: []string{`"measurement" is not valid for device class timestamp`}},
		{name: "sensor category config", mutate: set("last_read", "entity_category", "config"),
			strict: []string{"config is not allowed for a sensor"}},
		{name: "category capitalised", mutate: set("last_read", "entity_category", "Diagnostic"),
			lenient: []string{`"Diagnostic" is not one of`}, strict: []string{`"Diagnostic" is not one of`}},

		// Energy and plain measurement sensors.
		{name: "energy in Wh", mutate: set("energy_added", "unit_of_measurement", "Wh")},
		{name: "energy total", mutate: set("energy_added", "state_class", "total")},
		{name: "energy unit wrong case", mutate: set("energy_added", "unit_of_measurement", "kwh"), lenient: l, strict: s},
		{name: "energy as measurement", mutate: set("energy_added", "state_class", "measurement"),
			lenient: []string{`"measurement" is not valid for device class energy`}, strict: []string{`"measurement" is not valid for device class energy`}},
		{name: "energy without state class", mutate: del("energy_added", "state_class"),
			strict: []string{"an energy sensor needs state_class total or total_increasing"}},
		{name: "energy without unit", mutate: del("energy_added", "unit_of_measurement"),
			strict: []string{"device class energy needs one of"}},
		{name: "percentage as battery is fine for Home Assistant", mutate: set("charge_limit", "device_class", "battery")},
		{name: "percentage with unknown state class", mutate: set("charge_limit", "state_class", "gauge"),
			lenient: []string{`"gauge" is not one of`}, strict: []string{`"gauge" is not one of`}},

		// Button.
		{name: "button payload_press null", mutate: set("refresh", "payload_press", nil),
			lenient: []string{"refresh.payload_press: must be a string, not null"}, strict: []string{"refresh.payload_press: must be a string, not null"}},
		{name: "button payload_press number", mutate: set("refresh", "payload_press", 1),
			strict: []string{"refresh.payload_press: must be a JSON string"}},
		{name: "button with state topic", mutate: set("refresh", "state_topic", "smartcar2mqtt/V1/refresh/state"),
			strict: []string{"refresh.state_topic: unknown button option"}},
		{name: "button diagnostic", mutate: set("refresh", "entity_category", "diagnostic")},
	}
	for _, c := range cases {
		for _, mode := range []struct {
			name     string
			validate func(string, []byte) error
			want     []string
		}{{"lenient", haschema.Validate, c.lenient}, {"strict", haschema.ValidateStrict, c.strict}} {
			t.Run(c.name+"/"+mode.name, func(t *testing.T) {
				m := chargeDevice()
				c.mutate(m)
				err := mode.validate(devTopic, encode(t, m))
				if len(mode.want) == 0 {
					if err != nil {
						t.Fatalf("want valid, got %v", err)
					}
					return
				}
				if err == nil {
					t.Fatalf("want error containing %q, got none", mode.want)
				}
				for _, w := range mode.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
			})
		}
	}
}
