package bridge

import (
	"errors"
	"sort"
	"sync/atomic"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Status is a snapshot of the bridge for health checks and metrics, safe to take
// from any goroutine.
type Status struct {
	Serving         bool   // Run is past its first connect and not yet stopping
	Connected       bool   // the MQTT session is up now
	Connects        uint64 // sessions established, the first included
	ConnectionsLost uint64
	Vehicles        []VehicleStatus
}

// VehicleStatus is one vehicle's part of Status: what its worker last
// published, as a person reads it.
type VehicleStatus struct {
	ID    string
	Make  string
	Model string
	Year  int
	// Unbridged: the car has no entity in Home Assistant, as Smartcar grants
	// it neither the door command nor the charge read; nothing is asked of it.
	Unbridged bool
	Available bool
	KnownAt   time.Time // when the door state was last learned from the car; zero if never

	// Door is the cover's state: open, closed, opening, closing, or "" while
	// unknown. HasDoor is false for a car without the door command (no cover).
	Door    string
	HasDoor bool
	// Charge is the last successful read (nil before one), ReadAt its time.
	Charge *smartcar.ChargeState
	ReadAt time.Time

	LastCommand       string // OPEN or CLOSE; "" before the first
	LastCommandResult string // success, error or unknown
	LastCommandAt     time.Time
	Error             *ErrorStatus // the last call's failure; nil once a call works
	// LastDeliveryAt is when Smartcar's last webhook delivery for this car
	// was applied; zero if none.
	LastDeliveryAt time.Time
}

// ErrorStatus is a failure in the words Home Assistant shows.
type ErrorStatus struct {
	Type, Code, Description, Resolution string
	At                                  time.Time
}

// vehicleGauges mirror what a worker owns, for readers on other goroutines:
// the snapshot show took last, nil before the worker started.
type vehicleGauges struct {
	view atomic.Pointer[VehicleStatus]
}

// show records what the worker has just published, for Status. Only the
// worker's goroutine calls it; the ChargeState it points to is never changed
// once read, so readers may share it.
func (w *worker) show() {
	v := &VehicleStatus{
		ID: w.vehicle.ID, Make: w.vehicle.Make, Model: w.vehicle.Model, Year: w.vehicle.Year,
		Available: w.available, KnownAt: w.known, HasDoor: *w.doorWhy.Load() == "" && hasDoor(w.vehicle),
		Charge: w.charge, ReadAt: w.readAt,
		LastCommand: w.attrs.LastCommand, LastCommandResult: w.attrs.LastCommandResult, LastCommandAt: w.attrs.LastCommandAt,
		LastDeliveryAt: w.hooks.lastAt,
	}
	if w.state != stateUnknown {
		v.Door = w.state
	}
	if e := w.attrs.Error; e != nil {
		v.Error = &ErrorStatus{Type: e.Type, Code: e.Code, Description: e.Description, Resolution: e.Resolution, At: e.At}
	}
	w.gauges.view.Store(v)
}

// Status reports the bridge's state now: every vehicle the fleet holds, those
// with no worker too (no door command and no charge read: nothing calls
// Smartcar for them, yet they are on the account and the page should say so).
func (b *Bridge) Status() Status {
	s := Status{
		Serving:         b.serving.Load(),
		Connected:       b.client.IsConnectionOpen(),
		Connects:        b.connects.Load(),
		ConnectionsLost: b.lost.Load(),
	}
	f := b.fleet.Load()
	for id, v := range f.vehicles {
		w := f.workers[id]
		if w != nil {
			if shown := w.gauges.view.Load(); shown != nil {
				s.Vehicles = append(s.Vehicles, *shown)
				continue
			}
		}
		// No worker, or one not started yet: what is known without it.
		s.Vehicles = append(s.Vehicles, VehicleStatus{ID: id, Make: v.Make, Model: v.Model, Year: v.Year, HasDoor: hasDoor(v), Unbridged: w == nil})
	}
	sort.Slice(s.Vehicles, func(i, j int) bool { return s.Vehicles[i].ID < s.Vehicles[j].ID })
	return s
}

// Errors for the health check, one per part that is not well.
var (
	ErrNotServing   = errors.New("the bridge is not serving (starting or stopping)")
	ErrDisconnected = errors.New("the MQTT session is down")
)

// CheckMQTT is the health of the MQTT session.
func (b *Bridge) CheckMQTT() error {
	if !b.client.IsConnectionOpen() {
		return ErrDisconnected
	}
	return nil
}

// CheckServing is the health of the bridge loop.
func (b *Bridge) CheckServing() error {
	if !b.serving.Load() {
		return ErrNotServing
	}
	return nil
}
