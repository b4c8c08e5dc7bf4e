package smartcar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/atomicfile"
)

// VehicleDetails is a vehicle with the permissions the user granted for it,
// and what Smartcar offers for it.
type VehicleDetails struct {
	Vehicle
	Permissions []string `json:"permissions"`
	// TeslaEndpoints: served through API v2.0, whose charge read and door
	// command are Tesla brand-specific endpoints. API v3 is make-agnostic.
	TeslaEndpoints bool `json:"tesla_endpoints,omitempty"`
	// NoDoorCommand says why Smartcar has no charge port command for this
	// vehicle, once it answered so (404 or 501); "" while it may have one.
	NoDoorCommand string `json:"no_door_command,omitempty"`
}

// IsTesla reports whether Smartcar names the make Tesla.
func (d VehicleDetails) IsTesla() bool { return strings.EqualFold(d.Make, "tesla") }

// ChargePortDoorSupport says whether the daemon offers the charge port door
// for this vehicle (control_charge granted, and a command Smartcar has for
// it), and if not, why.
func (d VehicleDetails) ChargePortDoorSupport() (bool, string) {
	switch {
	case d.TeslaEndpoints && !d.IsTesla():
		return false, "Smartcar API v2.0 offers the charge port door command for Tesla only"
	case d.NoDoorCommand != "":
		return false, d.NoDoorCommand
	case !slices.Contains(d.Permissions, PermControlCharge):
		return false, "permission control_charge not granted (allow it in Smartcar Connect: smartcar2mqtt auth)"
	}
	return true, ""
}

// CanReadCharge says whether the daemon may read the door and charge state:
// read_charge granted (and, through API v2.0, a Tesla).
func (d VehicleDetails) CanReadCharge() bool {
	return (!d.TeslaEndpoints || d.IsTesla()) && slices.Contains(d.Permissions, PermReadCharge)
}

// fleetSource is the part of Client a FleetCache reads through.
type fleetSource interface {
	Version() string
	Vehicles(ctx context.Context, only []string) ([]VehicleDetails, error)
}

// FleetFile is the vehicle cache's file name inside DATA_DIR.
const FleetFile = "vehicles.json"

// FleetCache answers "which vehicles, with which permissions" from a file in
// DATA_DIR while it is younger than MaxAge, so a restart spends no Smartcar
// call; otherwise it asks Smartcar and rewrites the file. A cache written
// through one API generation (or for another SMARTCAR_USER_ID) never answers
// for another: v3 needs each car's user, which v2.0 never listed.
type FleetCache struct {
	Path   string
	MaxAge time.Duration
	User   string           // the SMARTCAR_USER_ID filter the source lists with
	Now    func() time.Time // for tests; time.Now when nil
}

type fleetFile struct {
	FetchedAt time.Time `json:"fetched_at"`
	// API is the generation that listed the vehicles; "" in files written
	// before v3 existed, which were all v2.0.
	API      string           `json:"api,omitempty"`
	User     string           `json:"user,omitempty"`
	Only     []string         `json:"only,omitempty"` // the SMARTCAR_VEHICLE_IDS filter it was fetched for
	Vehicles []VehicleDetails `json:"vehicles"`
}

func (ff fleetFile) api() string {
	if ff.API == "" {
		return V2
	}
	return ff.API
}

// Vehicles returns the vehicles to bridge: all on the account, or those in only.
// A cache fetched for every vehicle (or for a wider filter) also answers a
// filtered request, filtered here.
func (f FleetCache) Vehicles(ctx context.Context, src fleetSource, only []string) ([]VehicleDetails, error) {
	cached, err := f.load()
	if err == nil && f.answers(cached, src.Version(), only) && f.now().Sub(cached.FetchedAt) < f.MaxAge {
		return filterVehicles(cached.Vehicles, only), nil
	}
	vehicles, err := src.Vehicles(ctx, only)
	if err != nil {
		return nil, err
	}
	// What Smartcar said by refusing a command is not in a listing: keep it.
	for i, v := range vehicles {
		if j := slices.IndexFunc(cached.Vehicles, func(c VehicleDetails) bool { return c.ID == v.ID }); j >= 0 && cached.api() == src.Version() {
			vehicles[i].NoDoorCommand = cached.Vehicles[j].NoDoorCommand
		}
	}
	if err := f.write(fleetFile{FetchedAt: f.now().UTC(), API: src.Version(), User: f.User, Only: only, Vehicles: vehicles}); err != nil {
		return nil, err
	}
	return vehicles, nil
}

// Save writes vehicles as a full listing of the account (no filter), as
// `auth` does with the listing that showed it the new car.
func (f FleetCache) Save(api string, vehicles []VehicleDetails) error {
	return f.write(fleetFile{FetchedAt: f.now().UTC(), API: api, User: f.User, Vehicles: vehicles})
}

// Cached returns the vehicles in the cache whatever their age, with when they
// were listed, for a daemon watching for cars `auth` connected. A missing
// file is fs.ErrNotExist.
func (f FleetCache) Cached(api string, only []string) ([]VehicleDetails, time.Time, error) {
	ff, err := f.load()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !f.answers(ff, api, only) {
		return nil, time.Time{}, fmt.Errorf("vehicle cache %s was listed for another API or filter: %w", f.Path, fs.ErrNotExist)
	}
	return filterVehicles(ff.Vehicles, only), ff.FetchedAt, nil
}

// MarkNoDoorCommand records that Smartcar has no charge port command for
// the vehicle, so the next start offers no cover for it either.
func (f FleetCache) MarkNoDoorCommand(vehicleID, why string) error {
	ff, err := f.load()
	if err != nil {
		return fmt.Errorf("mark vehicle %s: %w", vehicleID, err)
	}
	for i := range ff.Vehicles {
		if ff.Vehicles[i].ID == vehicleID {
			ff.Vehicles[i].NoDoorCommand = why
		}
	}
	return f.write(ff)
}

// Forget drops the cache, so the next Vehicles call asks Smartcar (after a 403/404
// says what we knew is out of date).
func (f FleetCache) Forget() error {
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget vehicle cache: %w", err)
	}
	return nil
}

// answers reports whether a cached listing can stand for one by api with
// the filter only: same generation and user, and a filter that covers it.
func (f FleetCache) answers(ff fleetFile, api string, only []string) bool {
	return ff.api() == api && ff.User == f.User && covers(ff.Only, only)
}

// covers reports whether a fleet fetched for filter had every vehicle that
// only asks for: no filter covers any; a filter covers its subsets.
func covers(filter, only []string) bool {
	if len(filter) == 0 {
		return true
	}
	return len(only) > 0 && !slices.ContainsFunc(only, func(id string) bool { return !slices.Contains(filter, id) })
}

func filterVehicles(vs []VehicleDetails, only []string) []VehicleDetails {
	if len(only) == 0 {
		return vs
	}
	return slices.DeleteFunc(vs, func(v VehicleDetails) bool { return !slices.Contains(only, v.ID) })
}

func (f FleetCache) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f FleetCache) load() (fleetFile, error) {
	var ff fleetFile
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return ff, err
	}
	if err := json.Unmarshal(data, &ff); err != nil {
		return fleetFile{}, fmt.Errorf("read vehicle cache %s: %w", f.Path, err)
	}
	if ff.api() == V2 {
		for i := range ff.Vehicles {
			ff.Vehicles[i].TeslaEndpoints = true
		}
	}
	return ff, nil
}

func (f FleetCache) write(ff fleetFile) error {
	data, err := json.MarshalIndent(ff, "", "  ")
	if err != nil {
		return fmt.Errorf("encode vehicle cache: %w", err)
	}
	if err := atomicfile.Write(f.Path, data, 0o600); err != nil {
		return fmt.Errorf("write vehicle cache: %w", err)
	}
	return nil
}

// Watch looks at the cache file every interval and hands changed the vehicles
// in it whenever it was rewritten (by `auth` connecting a car, say) since the
// last look, until ctx ends. A look is a stat: it costs no Smartcar call.
func (f FleetCache) Watch(ctx context.Context, api string, only []string, interval time.Duration, changed func([]VehicleDetails)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := f.modTime()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m := f.modTime()
		if m.Equal(last) {
			continue
		}
		last = m
		if vs, _, err := f.Cached(api, only); err == nil {
			changed(vs)
		}
	}
}

func (f FleetCache) modTime() time.Time {
	fi, err := os.Stat(f.Path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
