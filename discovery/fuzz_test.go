package discovery_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/haschema"
)

// fuzzSettings are two valid installations: the defaults, and a nested base
// topic with a non-default prefix.
var fuzzSettings = []discovery.Settings{
	{Prefix: "homeassistant", BaseTopic: "smartcar2mqtt",
		Origin: discovery.Origin{Name: "smartcar2mqtt", SWVersion: "1.0.0", SupportURL: "https://github.com/smartcar2mqtt/smartcar2mqtt"}},
	{Prefix: "ha", BaseTopic: "home/cars", Origin: discovery.Origin{Name: "smartcar2mqtt"}},
}

// FuzzConfig builds the device discovery payload for a vehicle whose id,
// make, model and year come from Smartcar (or a user's SMARTCAR_VEHICLE_IDS).
// Config must return an invalid-vehicle-id error, the "remove the device"
// nil payload, or a payload Home Assistant accepts (haschema.Validate) on the
// topic the bridge publishes it to, naming the vehicle's device and
// topics; the same input always gives the same bytes.
func FuzzConfig(f *testing.F) {
	f.Add("36ab27d0-fd9d-4455-823a-ce30af709ffc", "TESLA", "Model 3", 2021, uint8(3))
	f.Add("V1", "MERCEDES-BENZ", "EQS", 2023, uint8(2))
	f.Add("V_2", "LAND ROVER", " Range Rover ", 0, uint8(1))
	f.Add("V-3", "bmw", "", -1, uint8(3|4))
	f.Add("V4", "", "", 0, uint8(0))
	f.Add("V5", "Tesla", "Model <S> & \"X\"", 2024, uint8(3))
	f.Add("V6", "\xff\xfe", "\x00\u2028\U0001F697", 1<<62, uint8(3))
	f.Add("V7", "   ", "model/with/slashes+#", 99999, uint8(1|4))
	f.Add("", "TESLA", "Model Y", 2022, uint8(3))
	f.Add("has space", "TESLA", "Model Y", 2022, uint8(3))
	f.Add("a/b", "TESLA", "Model Y", 2022, uint8(3))
	f.Add("Vé", "TESLA", "Model Y", 2022, uint8(3))
	f.Fuzz(func(t *testing.T, id, mk, model string, year int, flags uint8) {
		s := fuzzSettings[int(flags>>2)%len(fuzzSettings)]
		v := discovery.Vehicle{ID: id, Make: mk, Model: model, Year: year,
			ChargePortDoor: flags&1 != 0, ChargeRead: flags&2 != 0}

		payload, err := discovery.Config(s, v)
		if err != nil {
			if !errors.Is(err, discovery.ErrInvalidVehicleID) || discovery.ValidateVehicleID(id) == nil {
				t.Fatalf("Config(%+v) failed for a reason other than the vehicle id: %v", v, err)
			}
			if payload != nil {
				t.Fatalf("Config(%+v) returned a payload together with error %v", v, err)
			}
			return
		}
		if discovery.ValidateVehicleID(id) != nil {
			t.Fatalf("Config(%+v) accepted an invalid vehicle id", v)
		}

		topic := discovery.ConfigTopic(s.Prefix, id)
		if got, ok := discovery.VehicleFromConfigTopic(s.Prefix, topic); !ok || got != id {
			t.Fatalf("VehicleFromConfigTopic(%q) = %q, %v; want %q", topic, got, ok, id)
		}
		if again, _ := discovery.Config(s, v); !bytes.Equal(payload, again) {
			t.Fatalf("Config(%+v) is not deterministic:\n%s\n%s", v, payload, again)
		}
		if err := haschema.Validate(topic, payload); err != nil {
			t.Fatalf("Home Assistant would refuse the payload for %+v: %v\n%s", v, err, payload)
		}
		// Nothing to offer exactly when neither the door nor the charge read is.
		if discovery.IsClear(payload) != (!v.ChargePortDoor && !v.ChargeRead) {
			t.Fatalf("Config(%+v): IsClear = %v", v, discovery.IsClear(payload))
		}
		if discovery.IsClear(payload) {
			return
		}

		if !utf8.Valid(payload) {
			t.Fatalf("payload is not UTF-8: %q", payload)
		}
		var p struct {
			Dev struct {
				IDs  []string `json:"ids"`
				Name string   `json:"name"`
			} `json:"dev"`
			Availability []struct {
				Topic string `json:"topic"`
			} `json:"availability"`
		}
		if err := json.Unmarshal(payload, &p); err != nil {
			t.Fatalf("payload does not decode: %v\n%s", err, payload)
		}
		if want := []string{discovery.ObjectID(id)}; !slices.Equal(p.Dev.IDs, want) {
			t.Fatalf("device ids %q, want %q", p.Dev.IDs, want)
		}
		// The name went through JSON, which turns each invalid byte into
		// U+FFFD, as a conversion to []rune does.
		if want := string([]rune(discovery.DeviceName(v))); p.Dev.Name != want {
			t.Fatalf("device name %q, want %q", p.Dev.Name, discovery.DeviceName(v))
		}
		var avail []string
		for _, a := range p.Availability {
			avail = append(avail, a.Topic)
		}
		if want := []string{discovery.StatusTopic(s.BaseTopic), discovery.VehicleTopics(s.BaseTopic, id).Availability}; !slices.Equal(avail, want) {
			t.Fatalf("availability topics %q, want %q", avail, want)
		}
	})
}
