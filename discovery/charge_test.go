package discovery_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

// Which entities exist depends on the two permissions; an entity the car
// does not offer is sent as a {"p": …} removal stub, and a car with nothing
// to offer is cleared.
func TestConfigPermissions(t *testing.T) {
	readOnly := []string{"charge_limit", "charge_port_latch", "charging_state", "energy_added", "last_error", "last_read", "plugged_in", "refresh"}
	all := append([]string{"charge_port"}, readOnly...)
	slices.Sort(all)
	cases := []struct {
		name       string
		door, read bool
		live       []string // nil: Config returns the clear payload
	}{
		{"both", true, true, all},
		{"door only", true, false, []string{"charge_port"}},
		{"read only", false, true, readOnly},
		{"neither", false, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := tesla
			v.ChargePortDoor, v.ChargeRead = c.door, c.read
			b, err := discovery.Config(settings, v)
			if err != nil {
				t.Fatal(err)
			}
			if c.live == nil {
				if !discovery.IsClear(b) {
					t.Fatalf("want clear payload, got %s", b)
				}
				return
			}
			_, cmps := decode(t, b)
			var live []string
			for _, key := range all {
				cfg, ok := cmps[key]
				if !ok {
					t.Errorf("component %s missing (absent components are not removed by Home Assistant)", key)
					continue
				}
				if len(cfg) == 1 {
					if _, ok := cfg["p"]; !ok {
						t.Errorf("%s: stub without p: %v", key, cfg)
					}
					continue
				}
				live = append(live, key)
			}
			if !slices.Equal(live, c.live) {
				t.Errorf("live = %v, want %v", live, c.live)
			}
		})
	}
}

// Entity names are relative to the device (Home Assistant prefixes the
// device name itself), and every entity shares the root availability.
func TestConfigEntityConventions(t *testing.T) {
	b, err := discovery.Config(settings, tesla)
	if err != nil {
		t.Fatal(err)
	}
	p, cmps := decode(t, b)
	seen := map[string]string{}
	for key, cfg := range cmps {
		name, _ := cfg["name"].(string)
		if name == "" || strings.HasPrefix(strings.ToLower(name), strings.ToLower(p.Dev.Name)) {
			t.Errorf("%s: name %q must be set and not repeat the device name", key, name)
		}
		if _, own := cfg["availability"]; own {
			t.Errorf("%s: has its own availability; it should inherit the root's", key)
		}
		if cfg["qos"] != float64(1) {
			t.Errorf("%s: qos = %v, want 1", key, cfg["qos"])
		}
		eid, _ := cfg["default_entity_id"].(string)
		if want := cfg["p"].(string) + ".tesla_model_3_2021_" + key; eid != want {
			t.Errorf("%s: default_entity_id = %q, want %q", key, eid, want)
		}
		if other, dup := seen[eid]; dup {
			t.Errorf("%s and %s share default_entity_id %q", key, other, eid)
		}
		seen[eid] = key
	}
}

func TestConfigDefaultEntityIDSlug(t *testing.T) {
	long := strings.Repeat("Long Model ", 40)
	cases := []struct {
		name string
		v    discovery.Vehicle
		want string // default_entity_id of the cover
	}{
		{"demo car", discovery.Vehicle{ID: "x", Make: "TESLA", Model: "Model 3", Year: 2021}, "cover.tesla_model_3_2021_charge_port"},
		{"punctuation collapses", discovery.Vehicle{ID: "x", Make: "MERCEDES-BENZ", Model: "EQS <AMG>  4MATIC+", Year: 2024}, "cover.mercedes_benz_eqs_amg_4matic_2024_charge_port"},
		{"no name known", discovery.Vehicle{ID: "36AB-27d0_x"}, "cover.vehicle_36ab_27d0_x_charge_port"},
		{"only non-latin name", discovery.Vehicle{ID: "Z9", Model: "理想"}, "cover.vehicle_z9_charge_port"},
		{"accents are separators", discovery.Vehicle{ID: "x", Make: "Škoda", Model: "Enyaq iV"}, "cover.koda_enyaq_iv_charge_port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.v.ChargePortDoor = true
			b, err := discovery.Config(settings, c.v)
			if err != nil {
				t.Fatal(err)
			}
			_, cmps := decode(t, b)
			if got := cmps["charge_port"]["default_entity_id"]; got != c.want {
				t.Errorf("default_entity_id = %v, want %q", got, c.want)
			}
		})
	}
	t.Run("long name is bounded", func(t *testing.T) {
		b, err := discovery.Config(settings, discovery.Vehicle{ID: "x", Model: long, ChargePortDoor: true})
		if err != nil {
			t.Fatal(err)
		}
		_, cmps := decode(t, b)
		got := cmps["charge_port"]["default_entity_id"].(string)
		if len(got) > 255 || strings.Contains(got, "__") || !strings.HasSuffix(got, "_charge_port") {
			t.Errorf("default_entity_id = %q (%d chars)", got, len(got))
		}
	})
}

func TestChargingStatesIsACopy(t *testing.T) {
	s := discovery.ChargingStates()
	s[0] = "changed"
	if discovery.ChargingStates()[0] != discovery.ChargingStateCharging {
		t.Error("ChargingStates shares its slice between callers")
	}
}

func TestLastErrorPayload(t *testing.T) {
	cases := []struct{ typ, code, want string }{
		{"VEHICLE_STATE", "ASLEEP", "VEHICLE_STATE:ASLEEP"},
		{"RATE_LIMIT", "", "RATE_LIMIT"},
		{"", "", "none"},
		{"", "IGNORED", "none"},
	}
	for _, c := range cases {
		if got := discovery.LastErrorPayload(c.typ, c.code); got != c.want {
			t.Errorf("LastErrorPayload(%q, %q) = %q, want %q", c.typ, c.code, got, c.want)
		}
	}
	b, err := json.Marshal(discovery.LastErrorAttrs{Description: "asleep", RequestID: "r1", At: "2025-01-02T03:04:05Z"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"description":"asleep","request_id":"r1","at":"2025-01-02T03:04:05Z"}`; string(b) != want {
		t.Errorf("attributes = %s, want %s", b, want)
	}
}

func TestTimestampPayload(t *testing.T) {
	if got := discovery.TimestampPayload(time.Time{}); got != "None" {
		t.Errorf("zero time = %q, want None", got)
	}
	at := time.Date(2025, 1, 2, 4, 4, 5, 999, time.FixedZone("CET", 3600))
	if got, want := discovery.TimestampPayload(at), "2025-01-02T03:04:05Z"; got != want {
		t.Errorf("TimestampPayload = %q, want %q", got, want)
	}
}
