package bridge

import (
	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Vehicle is a car on the account with the permissions the user granted to this
// app; which entities it gets is decided by smartcar.VehicleDetails' own rules.
type Vehicle = smartcar.VehicleDetails

func hasDoor(v Vehicle) bool {
	ok, _ := v.ChargePortDoorSupport()
	return ok
}

func discoveryVehicle(v Vehicle) discovery.Vehicle {
	return discovery.Vehicle{ID: v.ID, Make: v.Make, Model: v.Model, Year: v.Year, ChargePortDoor: hasDoor(v), ChargeRead: v.CanReadCharge()}
}
