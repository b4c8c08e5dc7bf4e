package bridge

import (
	"slices"
	"strings"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Vehicle is a car on the account with the permissions the user granted to this app.
type Vehicle struct {
	smartcar.Vehicle
	Permissions []string
}

// Smartcar offers the charge port door command and the charge read for Tesla only.
func (v Vehicle) isTesla() bool { return strings.EqualFold(v.Make, "tesla") }

func (v Vehicle) has(permission string) bool { return slices.Contains(v.Permissions, permission) }

// hasDoor: the cover is offered (SPEC §1: Tesla, permission control_charge).
func (v Vehicle) hasDoor() bool { return v.isTesla() && v.has("control_charge") }

// canRead: the door state can be read (permission read_charge).
func (v Vehicle) canRead() bool { return v.isTesla() && v.has("read_charge") }

// whyNoDoor explains, for one log line, why a vehicle gets no cover; "" if it gets one.
func (v Vehicle) whyNoDoor() string {
	switch {
	case !v.isTesla():
		return "Smartcar offers the charge port door command for Tesla only"
	case !v.has("control_charge"):
		return "the control_charge permission was not granted (run smartcar2mqtt auth and allow it)"
	}
	return ""
}

func (v Vehicle) discovery() discovery.Vehicle {
	return discovery.Vehicle{ID: v.ID, Make: v.Make, Model: v.Model, Year: v.Year, ChargePortDoor: v.hasDoor(), ChargeRead: v.canRead()}
}
