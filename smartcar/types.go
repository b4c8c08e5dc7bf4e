// Package smartcar talks to the Smartcar API, generation v3 (an application
// token, /connections, /signals, charge-port commands) and the legacy v2.0
// (per-user rotating refresh tokens, Tesla brand-specific endpoints), behind
// one Client; a typed *Error for both error shapes; token sources; Smartcar
// Connect; and the vehicle cache. It knows nothing of MQTT or Home Assistant.
package smartcar

// Vehicle is one car on the Smartcar application.
type Vehicle struct {
	ID    string `json:"id"`
	Make  string `json:"make"` // as Smartcar returns it, e.g. "TESLA"
	Model string `json:"model"`
	Year  int    `json:"year"`
	// UserID is the Smartcar user whose connection holds the car: API v3
	// scopes every vehicle request to it. "" under API v2.0.
	UserID string `json:"user_id,omitempty"`
}

// Action is a charge port door command.
type Action string

// The two actions Smartcar's charge port door commands take.
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

// ChargeState is what one read says about the charge port and charging, the
// same whichever API generation answered. A nil field is unknown: the car is
// asleep, does not report it, or Smartcar marked the value as failed.
type ChargeState struct {
	DoorOpen  *bool   `json:"chargePortOpen"`
	PluggedIn *bool   `json:"isPluggedIn"`
	Latch     *string `json:"chargePortLatch"` // ENGAGED or DISENGAGED
	Charging  *string `json:"state"`           // CHARGING, NOT_CHARGING, FULLY_CHARGED
	// LimitPercent is the charge limit in percent (80, not 0.8).
	LimitPercent *float64 `json:"chargeLimitPercent"`
	EnergyAdded  *float64 `json:"energyAdded"` // kWh this session

	// NoData says Smartcar answered but holds no value for this car yet
	// (API v3 often has none until the car is subscribed to a webhook).
	NoData    bool   `json:"-"`
	RequestID string `json:"-"` // Smartcar's request id of the read
}

// Latch values, as both API generations report them to Home Assistant.
const (
	LatchEngaged    = "ENGAGED"
	LatchDisengaged = "DISENGAGED"
)
