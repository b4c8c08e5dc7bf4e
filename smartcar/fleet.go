package smartcar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/atomicfile"
)

// VehicleDetails is a vehicle with the permissions the user granted for it.
type VehicleDetails struct {
	Vehicle
	Permissions []string `json:"permissions"`
}

// IsTesla: Smartcar offers the charge port door command and the tesla/charge
// read for Tesla only (SPEC §1).
func (d VehicleDetails) IsTesla() bool { return strings.EqualFold(d.Make, "tesla") }

// ChargePortDoorSupport says whether the daemon will offer the charge port
// door for this vehicle (Tesla, with control_charge granted), and if not, why.
func (d VehicleDetails) ChargePortDoorSupport() (bool, string) {
	switch {
	case !d.IsTesla():
		return false, "Smartcar offers the charge port door command for Tesla only"
	case !slices.Contains(d.Permissions, PermControlCharge):
		return false, "permission control_charge not granted (allow it in smartcar2mqtt auth)"
	}
	return true, ""
}

// CanReadCharge says whether the daemon may read the door state (Tesla, with
// read_charge granted).
func (d VehicleDetails) CanReadCharge() bool {
	return d.IsTesla() && slices.Contains(d.Permissions, PermReadCharge)
}

// fleetSource is the part of Client a FleetCache reads through.
type fleetSource interface {
	VehicleIDs(ctx context.Context) ([]string, error)
	Vehicle(ctx context.Context, id string) (Vehicle, error)
	Permissions(ctx context.Context, id string) ([]string, error)
}

// FleetFile is the vehicle cache's file name inside DATA_DIR.
const FleetFile = "vehicles.json"

// FleetCache answers "which vehicles, with which permissions" from a file in
// DATA_DIR while it is younger than MaxAge, so a restart spends no Smartcar call;
// otherwise it asks Smartcar (1 + 2 calls per vehicle) and rewrites the file.
type FleetCache struct {
	Path   string
	MaxAge time.Duration
	Now    func() time.Time // for tests; time.Now when nil
}

type fleetFile struct {
	FetchedAt time.Time        `json:"fetched_at"`
	Only      []string         `json:"only,omitempty"` // the SMARTCAR_VEHICLE_IDS filter it was fetched for
	Vehicles  []VehicleDetails `json:"vehicles"`
}

// Vehicles returns the vehicles to bridge: all on the account, or those in only.
// A cache fetched for every vehicle (or for a wider filter) also answers a
// filtered request, filtered here as fetchFleet would.
func (f FleetCache) Vehicles(ctx context.Context, src fleetSource, only []string) ([]VehicleDetails, error) {
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	if cached, err := f.load(); err == nil && covers(cached.Only, only) && now().Sub(cached.FetchedAt) < f.MaxAge {
		if len(only) == 0 {
			return cached.Vehicles, nil
		}
		return slices.DeleteFunc(cached.Vehicles, func(v VehicleDetails) bool { return !slices.Contains(only, v.ID) }), nil
	}
	vehicles, err := fetchFleet(ctx, src, only)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(fleetFile{FetchedAt: now().UTC(), Only: only, Vehicles: vehicles}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode vehicle cache: %w", err)
	}
	if err := atomicfile.Write(f.Path, data, 0o600); err != nil {
		return nil, fmt.Errorf("write vehicle cache: %w", err)
	}
	return vehicles, nil
}

// Forget drops the cache, so the next Vehicles call asks Smartcar (after a 403/404
// says what we knew is out of date).
func (f FleetCache) Forget() error {
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget vehicle cache: %w", err)
	}
	return nil
}

// covers reports whether a fleet fetched for filter had every vehicle that
// only asks for: no filter covers any; a filter covers its subsets.
func covers(filter, only []string) bool {
	if len(filter) == 0 {
		return true
	}
	return len(only) > 0 && !slices.ContainsFunc(only, func(id string) bool { return !slices.Contains(filter, id) })
}

func (f FleetCache) load() (fleetFile, error) {
	var ff fleetFile
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return ff, err
	}
	return ff, json.Unmarshal(data, &ff)
}

func fetchFleet(ctx context.Context, src fleetSource, only []string) ([]VehicleDetails, error) {
	ids, err := src.VehicleIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list vehicles: %w", err)
	}
	if len(only) > 0 {
		ids = slices.DeleteFunc(ids, func(id string) bool { return !slices.Contains(only, id) })
	}
	out := make([]VehicleDetails, 0, len(ids))
	for _, id := range ids {
		v, err := src.Vehicle(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("vehicle %s: %w", id, err)
		}
		perms, err := src.Permissions(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("vehicle %s permissions: %w", id, err)
		}
		out = append(out, VehicleDetails{Vehicle: v, Permissions: perms})
	}
	return out, nil
}
