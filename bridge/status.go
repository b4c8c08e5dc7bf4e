package bridge

import (
	"errors"
	"sort"
	"sync/atomic"
	"time"
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

// VehicleStatus is one vehicle's part of Status.
type VehicleStatus struct {
	ID        string
	Available bool
	KnownAt   time.Time // when the door state was last learned from the car; zero if never
}

// vehicleGauges mirror what a worker owns, for readers on other goroutines.
type vehicleGauges struct {
	available atomic.Bool
	knownAt   atomic.Int64 // unix nanoseconds; 0 for never
}

func (g *vehicleGauges) set(available bool, knownAt time.Time) {
	g.available.Store(available)
	if knownAt.IsZero() {
		g.knownAt.Store(0)
	} else {
		g.knownAt.Store(knownAt.UnixNano())
	}
}

// Status reports the bridge's state now.
func (b *Bridge) Status() Status {
	s := Status{
		Serving:         b.serving.Load(),
		Connected:       b.client.IsConnectionOpen(),
		Connects:        b.connects.Load(),
		ConnectionsLost: b.lost.Load(),
	}
	for id, w := range b.fleet.Load().workers {
		v := VehicleStatus{ID: id, Available: w.gauges.available.Load()}
		if ns := w.gauges.knownAt.Load(); ns != 0 {
			v.KnownAt = time.Unix(0, ns)
		}
		s.Vehicles = append(s.Vehicles, v)
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
