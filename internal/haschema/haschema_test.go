package haschema_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/haschema"
)

const devTopic = "homeassistant/device/smartcar2mqtt_V1/config"

// goodDevice is a valid device payload; cases mutate a fresh copy.
func goodDevice() map[string]any {
	return map[string]any{
		"dev": map[string]any{"ids": []any{"smartcar2mqtt_V1"}, "name": "Tesla Model 3 2021", "mf": "Tesla", "mdl": "Model 3"},
		"o":   map[string]any{"name": "smartcar2mqtt", "sw": "1.0.0", "url": "https://example.com/support"},
		"availability": []any{
			map[string]any{"topic": "smartcar2mqtt/status"},
			map[string]any{"topic": "smartcar2mqtt/V1/availability", "payload_available": "online", "payload_not_available": "offline"},
		},
		"availability_mode": "all",
		"cmps": map[string]any{
			"charge_port": map[string]any{
				"p": "cover", "unique_id": "smartcar2mqtt_V1_charge_port", "name": "Charge port",
				"device_class": "door", "command_topic": "smartcar2mqtt/V1/charge_port/set",
				"state_topic": "smartcar2mqtt/V1/charge_port/state", "json_attributes_topic": "smartcar2mqtt/V1/charge_port/attributes",
				"payload_open": "OPEN", "payload_close": "CLOSE", "payload_stop": nil,
				"state_open": "open", "state_closed": "closed", "state_opening": "opening", "state_closing": "closing",
				"optimistic": false, "retain": false, "qos": 1,
			},
			"plugged_in": map[string]any{
				"p": "binary_sensor", "uniq_id": "smartcar2mqtt_V1_plugged_in", "name": "Plugged in",
				"dev_cla": "plug", "stat_t": "smartcar2mqtt/V1/charge/state", "val_tpl": "{{ value_json.plugged }}",
				"pl_on": "true", "pl_off": "false",
			},
			"energy_added": map[string]any{
				"p": "sensor", "unique_id": "smartcar2mqtt_V1_energy_added", "name": "Energy added",
				"device_class": "energy", "state_class": "total_increasing", "unit_of_measurement": "kWh",
				"state_topic": "smartcar2mqtt/V1/charge/state", "value_template": "{{ value_json.energy_added }}",
				"entity_category": "diagnostic", "suggested_display_precision": 1,
			},
			"refresh": map[string]any{
				"p": "button", "unique_id": "smartcar2mqtt_V1_refresh", "name": "Refresh",
				"command_topic": "smartcar2mqtt/V1/refresh", "entity_category": "config", "icon": "mdi:refresh",
			},
		},
	}
}

func cmp(m map[string]any, id string) map[string]any {
	return m["cmps"].(map[string]any)[id].(map[string]any)
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidate(t *testing.T) {
	type tc struct {
		name   string
		topic  string
		mutate func(m map[string]any) // nil: payload is raw
		raw    string
		strict bool
		// want lists substrings that must each appear in the error; empty
		// means the message must pass.
		want []string
	}
	cases := []tc{
		{name: "good device payload", mutate: func(map[string]any) {}},
		{name: "good device payload strict", strict: true, mutate: func(map[string]any) {}},
		{name: "empty payload removes", raw: ""},
		{name: "migration request", raw: `{"migrate_discovery": true}`},
		{name: "migration must be true", raw: `{"migr_discvry": false}`, want: []string{"migrate_discovery: must be true"}},
		{name: "component removal stub", mutate: func(m map[string]any) {
			m["cmps"].(map[string]any)["charge_port"] = map[string]any{"p": "cover"}
		}},
		{name: "long keys", mutate: func(m map[string]any) {
			m["device"] = m["dev"]
			delete(m, "dev")
			m["origin"] = map[string]any{"name": "x", "sw_version": "1", "support_url": "https://x.example"}
			delete(m, "o")
			m["components"] = m["cmps"]
			delete(m, "cmps")
		}},
		{name: "single component topic with node id", topic: "homeassistant/cover/bridge/door/config",
			raw: `{"name":"Door","cmd_t":"a/b/set","stat_t":"a/b/state","device_class":"door","uniq_id":"x","dev":{"ids":"x"}}`},
		{name: "single component with ~ base", topic: "homeassistant/sensor/x/config",
			raw: `{"~":"car/1","stat_t":"~/battery","dev_cla":"battery","unit_of_meas":"%","stat_cla":"measurement"}`},
		{name: "number where string wanted is coerced", mutate: func(m map[string]any) {
			cmp(m, "plugged_in")["pl_on"] = 1
		}},
		{name: "device class is lower-cased", mutate: func(m map[string]any) {
			cmp(m, "charge_port")["device_class"] = "Door"
		}},

		// Topic layout.
		{name: "object id with dot", topic: "homeassistant/device/smartcar2mqtt.V1/config", mutate: func(map[string]any) {},
			want: []string{`object_id "smartcar2mqtt.V1" must match`}},
		{name: "not ending in config", topic: "homeassistant/device/x/cfg", mutate: func(map[string]any) {},
			want: []string{"must be <prefix>/<component>"}},
		{name: "unknown component", topic: "homeassistant/thing/x/config", raw: `{}`,
			want: []string{"no supported component"}},
		{name: "wildcard in config topic", topic: "homeassistant/device/+/config", raw: `{}`,
			want: []string{"wildcards are not allowed"}},
		{name: "empty prefix", topic: "/device/x/config", raw: `{}`, want: []string{"discovery prefix is empty"}},

		// Payload shape.
		{name: "not json", raw: `{"dev":`, want: []string{"not valid JSON"}},
		{name: "array payload", raw: `[]`, want: []string{"must be a JSON object, got an array"}},
		{name: "invalid utf-8", raw: "{\"o\":\"\xff\"}", want: []string{"not valid UTF-8"}},

		// Device-based root.
		{name: "origin required", mutate: func(m map[string]any) { delete(m, "o") },
			want: []string{"origin: required in device-based discovery"}},
		{name: "device required", mutate: func(m map[string]any) { delete(m, "dev") },
			want: []string{"device: required in device-based discovery"}},
		{name: "unknown root key", mutate: func(m map[string]any) { m["retain"] = true },
			want: []string{"retain: not allowed at the root"}},
		{name: "unknown device key", mutate: func(m map[string]any) { m["dev"].(map[string]any)["year"] = "2021" },
			want: []string{"device.year: unknown device option"}},
		{name: "device name null", mutate: func(m map[string]any) { m["dev"].(map[string]any)["name"] = nil },
			want: []string{"device.name: must be a string, not null"}},
		{name: "device without identifiers", mutate: func(m map[string]any) { delete(m["dev"].(map[string]any), "ids") },
			want: []string{"needs at least one of identifiers or connections"}},
		{name: "unknown origin key", mutate: func(m map[string]any) { m["o"].(map[string]any)["version"] = "1" },
			want: []string{"origin.version: unknown origin option"}},
		{name: "origin name missing", mutate: func(m map[string]any) { delete(m["o"].(map[string]any), "name") },
			want: []string{"origin.name: required"}},
		{name: "origin url not http", mutate: func(m map[string]any) { m["o"].(map[string]any)["url"] = "ftp://x" },
			want: []string{"origin.support_url", "not an http(s) URL"}},
		{name: "unknown availability key at root", mutate: func(m map[string]any) {
			m["availability"].([]any)[0].(map[string]any)["qos"] = 1
		}, want: []string{"availability[0].qos: unknown availability option"}},
		{name: "availability topic missing", mutate: func(m map[string]any) {
			m["availability"] = []any{map[string]any{"payload_available": "online"}}
		}, want: []string{"availability[0].topic: required"}},
		{name: "availability topic and list exclusive", mutate: func(m map[string]any) {
			m["availability_topic"] = "smartcar2mqtt/status"
		}, want: []string{"availability_topic and availability are mutually exclusive"}},
		{name: "inherited availability clashes with component availability_topic", mutate: func(m map[string]any) {
			cmp(m, "charge_port")["avty_t"] = "x/y"
		}, want: []string{"components.charge_port: availability_topic and availability are mutually exclusive (one of them inherited"}},
		{name: "bad availability mode", mutate: func(m map[string]any) { m["availability_mode"] = "both" },
			want: []string{`"both" is not one of`}},
		{name: "wildcard in subscribe topic level", mutate: func(m map[string]any) {
			m["availability"].([]any)[0].(map[string]any)["topic"] = "a/b+/c"
		}, want: []string{"'+' must occupy a whole level"}},
		{name: "control char in topic", mutate: func(m map[string]any) {
			m["availability"].([]any)[0].(map[string]any)["topic"] = "a/\u0001"
		}, want: []string{"control character"}},
		{name: "components not an object", mutate: func(m map[string]any) { m["cmps"] = []any{} },
			want: []string{"components: must be an object"}},

		// Components.
		{name: "platform missing", mutate: func(m map[string]any) { delete(cmp(m, "charge_port"), "p") },
			want: []string{`components.charge_port: "platform" (p) is required`}},
		{name: "platform unsupported", mutate: func(m map[string]any) { cmp(m, "charge_port")["p"] = "door" },
			want: []string{`"door" is not a supported platform`}},
		{name: "unique_id required", mutate: func(m map[string]any) { delete(cmp(m, "charge_port"), "unique_id") },
			want: []string{"charge_port.unique_id: required in device-based discovery"}},
		{name: "duplicate unique_id", mutate: func(m map[string]any) {
			m["cmps"].(map[string]any)["second"] = map[string]any{"p": "cover", "unique_id": "smartcar2mqtt_V1_charge_port", "command_topic": "a/b"}
		}, want: []string{"already used by component"}},
		{name: "publish topic with wildcard", mutate: func(m map[string]any) {
			cmp(m, "charge_port")["command_topic"] = "smartcar2mqtt/+/set"
		}, want: []string{"charge_port.command_topic: wildcards are not allowed"}},
		{name: "empty topic", mutate: func(m map[string]any) { cmp(m, "charge_port")["state_topic"] = "" },
			want: []string{"charge_port.state_topic: topic must not be empty"}},
		{name: "qos out of range", mutate: func(m map[string]any) { cmp(m, "charge_port")["qos"] = 3 },
			want: []string{"charge_port.qos: must be 0, 1 or 2"}},
		{name: "entity category invalid", mutate: func(m map[string]any) { cmp(m, "refresh")["entity_category"] = "system" },
			want: []string{`refresh.entity_category: "system" is not one of`}},
		{name: "icon without prefix", mutate: func(m map[string]any) { cmp(m, "refresh")["icon"] = "refresh" },
			want: []string{"must be of the form prefix:name"}},

		// Cover.
		{name: "cover device class invalid", mutate: func(m map[string]any) { cmp(m, "charge_port")["device_class"] = "port" },
			want: []string{`charge_port.device_class: "port" is not one of`}},
		{name: "cover state null", mutate: func(m map[string]any) { cmp(m, "charge_port")["state_open"] = nil },
			want: []string{"charge_port.state_open: must be a string, not null"}},
		{name: "cover optimistic not boolean", mutate: func(m map[string]any) { cmp(m, "charge_port")["optimistic"] = "maybe" },
			want: []string{`charge_port.optimistic: invalid boolean "maybe"`}},
		{name: "cover value_template without state_topic", mutate: func(m map[string]any) {
			delete(cmp(m, "charge_port"), "state_topic")
			cmp(m, "charge_port")["value_template"] = "{{ value }}"
		}, want: []string{"value_template: must be set together with state_topic"}},
		{name: "cover set_position_topic without position_topic", mutate: func(m map[string]any) {
			cmp(m, "charge_port")["set_position_topic"] = "a/pos/set"
		}, want: []string{"set_position_topic: must be set together with position_topic"}},
		{name: "cover position_open float", mutate: func(m map[string]any) { cmp(m, "charge_port")["position_open"] = 100.5 },
			want: []string{"position_open: must be an integer"}},
		{name: "cover template null", mutate: func(m map[string]any) {
			cmp(m, "charge_port")["value_template"] = nil
		}, want: []string{"value_template: template must not be null"}},

		// Sensor.
		{name: "sensor state_topic required", mutate: func(m map[string]any) { delete(cmp(m, "energy_added"), "state_topic") },
			want: []string{"energy_added.state_topic: required for sensor"}},
		{name: "sensor inherits root state_topic", mutate: func(m map[string]any) {
			delete(cmp(m, "energy_added"), "state_topic")
			m["state_topic"] = "smartcar2mqtt/V1/charge/state"
		}},
		{name: "energy with measurement", mutate: func(m map[string]any) { cmp(m, "energy_added")["state_class"] = "measurement" },
			want: []string{`state_class: "measurement" is not valid for device class energy`}},
		{name: "energy in percent", mutate: func(m map[string]any) { cmp(m, "energy_added")["unit_of_measurement"] = "%" },
			want: []string{`unit_of_measurement: "%" is not a valid unit for device class energy`}},
		{name: "unknown state class", mutate: func(m map[string]any) { cmp(m, "energy_added")["state_class"] = "sum" },
			want: []string{`state_class: "sum" is not one of`}},
		{name: "unknown sensor device class", mutate: func(m map[string]any) { cmp(m, "energy_added")["device_class"] = "charge" },
			want: []string{`device_class: "charge" is not one of`}},
		{name: "timestamp with state class", mutate: func(m map[string]any) {
			c := cmp(m, "energy_added")
			c["device_class"] = "timestamp"
			delete(c, "unit_of_measurement")
		}, want: []string{`"total_increasing" is not valid for device class timestamp (valid: none)`}},
		{name: "options without enum", mutate: func(m map[string]any) {
			c := cmp(m, "energy_added")
			c["options"] = []any{"a"}
		}, want: []string{"options: not allowed together with state_class", `options: requires device_class enum, got "energy"`}},
		{name: "empty options", mutate: func(m map[string]any) {
			c := cmp(m, "energy_added")
			c["device_class"] = "enum"
			delete(c, "unit_of_measurement")
			delete(c, "state_class")
			c["options"] = []any{}
		}, want: []string{"options: must not be empty"}},
		{name: "last_reset needs total", mutate: func(m map[string]any) {
			cmp(m, "energy_added")["last_reset_value_template"] = "{{ value_json.reset }}"
		}, want: []string{"last_reset_value_template: only allowed with state_class total"}},
		{name: "negative precision", mutate: func(m map[string]any) { cmp(m, "energy_added")["suggested_display_precision"] = -1 },
			want: []string{"suggested_display_precision: must be a non-negative integer"}},
		{name: "measurement_angle needs degrees", mutate: func(m map[string]any) {
			c := cmp(m, "energy_added")
			delete(c, "device_class")
			c["state_class"] = "measurement_angle"
			c["unit_of_measurement"] = "rad"
		}, want: []string{"state class measurement_angle needs unit °"}},

		// Binary sensor and button.
		{name: "binary sensor device class invalid", mutate: func(m map[string]any) { cmp(m, "plugged_in")["dev_cla"] = "plugged" },
			want: []string{`plugged_in.device_class: "plugged" is not one of`}},
		{name: "binary sensor payload_on null", mutate: func(m map[string]any) { cmp(m, "plugged_in")["pl_on"] = nil },
			want: []string{"plugged_in.payload_on: must be a string, not null"}},
		{name: "button needs command_topic", mutate: func(m map[string]any) { delete(cmp(m, "refresh"), "command_topic") },
			want: []string{"refresh.command_topic: required for button"}},
		{name: "button device class invalid", mutate: func(m map[string]any) { cmp(m, "refresh")["device_class"] = "refresh" },
			want: []string{`refresh.device_class: "refresh" is not one of`}},

		// Strict-only findings (Home Assistant lets these through silently).
		{name: "misspelt option passes lenient", mutate: func(m map[string]any) { cmp(m, "charge_port")["payload_opn"] = "OPEN" }},
		{name: "misspelt option fails strict", strict: true, mutate: func(m map[string]any) { cmp(m, "charge_port")["payload_opn"] = "OPEN" },
			want: []string{"charge_port.payload_opn: unknown cover option"}},
		{name: "number for string fails strict", strict: true, mutate: func(m map[string]any) { cmp(m, "plugged_in")["pl_on"] = 1 },
			want: []string{"payload_on: must be a JSON string, got a number"}},
		{name: "string boolean fails strict", strict: true, mutate: func(m map[string]any) { cmp(m, "charge_port")["retain"] = "false" },
			want: []string{"retain: must be a boolean, got a string"}},
		{name: "short and long key fails strict", strict: true, mutate: func(m map[string]any) {
			cmp(m, "charge_port")["stat_t"] = "smartcar2mqtt/V1/charge_port/state"
		}, want: []string{`both "state_topic" and its abbreviation "stat_t"`}},
		{name: "upper-case class fails strict", strict: true, mutate: func(m map[string]any) { cmp(m, "charge_port")["device_class"] = "Door" },
			want: []string{`"Door" should be lower case`}},
		{name: "energy without unit fails strict", strict: true, mutate: func(m map[string]any) { delete(cmp(m, "energy_added"), "unit_of_measurement") },
			want: []string{"device class energy needs one of"}},

		// Every problem is reported, not just the first.
		{name: "all problems listed", mutate: func(m map[string]any) {
			delete(m, "o")
			cmp(m, "charge_port")["device_class"] = "port"
			cmp(m, "refresh")["qos"] = 7
		}, want: []string{"origin: required", `"port" is not one of`, "refresh.qos: must be 0, 1 or 2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topic := c.topic
			if topic == "" {
				topic = devTopic
			}
			payload := []byte(c.raw)
			if c.mutate != nil {
				m := goodDevice()
				c.mutate(m)
				payload = encode(t, m)
			}
			validate := haschema.Validate
			if c.strict {
				validate = haschema.ValidateStrict
			}
			err := validate(topic, payload)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got none", c.want)
			}
			var verr *haschema.Error
			if !errors.As(err, &verr) {
				t.Fatalf("want *haschema.Error, got %T", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// A lenient-valid payload with a misspelling must be caught only by the
// strict validator: this pins down which mode mirrors Home Assistant.
func TestStrictIsSuperset(t *testing.T) {
	m := goodDevice()
	if err := haschema.ValidateStrict(devTopic, encode(t, m)); err != nil {
		t.Fatalf("strict rejects the good payload: %v", err)
	}
}
