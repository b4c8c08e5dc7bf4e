package discovery

import (
	"encoding/json"
	"testing"
)

// An entity the vehicle does not offer renders as {"p": platform} alone:
// that is how Home Assistant removes one component while the device keeps
// its others (e.g. a car that has read_charge but not the door command).
func TestComponentRemovalStub(t *testing.T) {
	v := Vehicle{ID: "V1", ChargePortDoor: false}
	c := chargePortCover(VehicleTopics("base", "V1"), v)
	b, err := json.Marshal(c.config())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"p":"cover"}`; got != want {
		t.Errorf("config = %s, want %s", got, want)
	}
	v.ChargePortDoor = true
	c = chargePortCover(VehicleTopics("base", "V1"), v)
	if c.uniqueID != "smartcar2mqtt_V1_charge_port" {
		t.Errorf("uniqueID = %q", c.uniqueID)
	}
	if c.entityID != "cover.vehicle_v1_charge_port" {
		t.Errorf("entityID = %q", c.entityID)
	}
}
