package smartcar

import (
	"errors"
	"time"
)

// Endpoints, as Call.Endpoint names them: low-cardinality labels, never a
// path with a vehicle id in it.
const (
	EndpointConnections       = "connections"         // v3 GET /connections
	EndpointSignals           = "signals"             // v3 GET /vehicles/{id}/signals
	EndpointChargePortCommand = "charge_port_command" // v3 POST /vehicles/{id}/commands/charge-port/{open,close}
	EndpointVehicles          = "vehicles"            // v2 GET /vehicles
	EndpointVehicle           = "vehicle"             // v2 GET /vehicles/{id}
	EndpointPermissions       = "permissions"         // v2 GET /vehicles/{id}/permissions
	EndpointTeslaCharge       = "tesla_charge"        // v2 GET /vehicles/{id}/tesla/charge
	EndpointChargePortDoor    = "charge_port_door"    // v2 POST /vehicles/{id}/{make}/charge/charge_port_door
	EndpointToken             = "token"               // POST to the OAuth token endpoint
)

// Outcomes a Call reports besides a Smartcar error type (VEHICLE_STATE,
// RATE_LIMIT, OAUTH …).
const (
	OutcomeOK              = "ok"
	OutcomeNetwork         = "network"          // no HTTP response
	OutcomeTimeout         = "timeout"          // SMARTCAR_TIMEOUT or a transport timeout
	OutcomeCanceled        = "canceled"         // the caller gave up (shutdown)
	OutcomeHTTP            = "http"             // an error status without Smartcar's body (a proxy)
	OutcomeInvalidResponse = "invalid_response" // 2xx with a body that does not decode
)

// Call is one HTTP request to Smartcar, as reported to a CallObserver. Every
// request counts, retries included: each one may be billed.
type Call struct {
	Endpoint  string // one of the Endpoint constants
	VehicleID string // "" for the vehicle list and token requests
	Outcome   string // OutcomeOK, a Smartcar error type, or another Outcome constant
	Status    int    // HTTP status; 0 when there was no response
	Duration  time.Duration
}

// CallObserver is told about every request. It is called synchronously on
// the requesting goroutine, possibly concurrently, so it must be quick and
// safe for concurrent use.
type CallObserver interface {
	ObserveCall(c Call)
}

// TokenCall describes one token endpoint request that took d and ended with
// err (the error oauthError returns, or nil), so Tokens can report refreshes
// to the same observer as the Client.
func TokenCall(d time.Duration, err error) Call {
	c := Call{Endpoint: EndpointToken, Outcome: OutcomeOK, Status: 200, Duration: d}
	if err != nil {
		c.Outcome, c.Status = errorOutcome(err)
	}
	return c
}

// errorOutcome classifies a failed request: a Smartcar *Error by its type,
// anything else as a transport failure.
func errorOutcome(err error) (outcome string, status int) {
	var e *Error
	if errors.As(err, &e) {
		if e.Type == "" {
			return OutcomeHTTP, e.StatusCode
		}
		return e.Type, e.StatusCode
	}
	return TransportOutcome(err), 0
}

// CallObservers tells each of its observers about every call, so one client can
// feed both the quota ledger and the metrics.
type CallObservers []CallObserver

// ObserveCall implements CallObserver.
func (o CallObservers) ObserveCall(c Call) {
	for _, obs := range o {
		obs.ObserveCall(c)
	}
}
