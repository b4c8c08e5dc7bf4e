// Package smartcar talks to the Smartcar API v2.0: a small client on net/http,
// a typed *Error for Smartcar's error bodies, OAuth tokens that are persisted
// atomically before use, and a Simulator that speaks the same shapes for tests
// and the demo. It knows nothing of MQTT or Home Assistant.
package smartcar

// Vehicle is GET /vehicles/{id}.
type Vehicle struct {
	ID    string `json:"id"`
	Make  string `json:"make"` // as Smartcar returns it, e.g. "TESLA"
	Model string `json:"model"`
	Year  int    `json:"year"`
}

// Action is the body of a charge port door command.
type Action string

// The two actions Smartcar's charge_port_door command accepts.
const (
	Open  Action = "OPEN"
	Close Action = "CLOSE"
)

// Valid reports whether a is an action Smartcar accepts; anything else is
// refused locally so a typo never costs an API call.
func (a Action) Valid() bool { return a == Open || a == Close }

// Permissions Smartcar grants, as the daemon uses them.
const (
	PermReadVehicleInfo = "read_vehicle_info"
	PermReadCharge      = "read_charge"
	PermControlCharge   = "control_charge"
)

// Charge is GET /vehicles/{id}/tesla/charge. Pointer fields are nil when
// Smartcar sent null or omitted them: a Tesla that is asleep or a field the
// car does not report is "unknown", not false or zero.
type Charge struct {
	ChargePortOpen  *bool   `json:"chargePortOpen"`
	ChargePortLatch *string `json:"chargePortLatch"` // e.g. ENGAGED, DISENGAGED
	IsPluggedIn     *bool   `json:"isPluggedIn"`
	State           *string `json:"state"` // CHARGING, FULLY_CHARGED, NOT_CHARGING
	// SocLimit is the charge limit as a fraction (0.8 = 80 %), Smartcar's
	// convention for charge limits.
	SocLimit             *float64 `json:"socLimit"`
	EnergyAdded          *float64 `json:"energyAdded"`          // kWh this session
	Amperage             *float64 `json:"amperage"`             // A
	AmperageRequested    *float64 `json:"amperageRequested"`    // A
	AmperageMax          *float64 `json:"amperageMax"`          // A
	Voltage              *float64 `json:"voltage"`              // V
	Wattage              *float64 `json:"wattage"`              // kW
	ChargeRate           *float64 `json:"chargeRate"`           // km of range added per hour
	TimeToComplete       *float64 `json:"timeToComplete"`       // minutes
	ChargerPhases        *int     `json:"chargerPhases"`        //
	IsFastChargerPresent *bool    `json:"isFastChargerPresent"` //
	FastChargerType      *string  `json:"fastChargerType"`      //

	RequestID string `json:"-"` // SC-Request-Id response header
}

// paging is Smartcar's offset paging block. Count is the total number of
// elements for the whole query, not just this page.
type paging struct {
	Count  int `json:"count"`
	Offset int `json:"offset"`
}
