package discovery

import (
	"encoding/json"
	"testing"
)

// An entity the vehicle does not offer renders as {"p": platform} alone:
// that is how Home Assistant removes one component while the device keeps
// its others. (With a single component today, Config instead returns nil to
// clear the whole device; this pins down the per-component form for when
// more entities exist.)
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
}
