package smartcar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
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
		return false, "permission control_charge not granted (allow it in Smartcar Connect: Connect a car on the web page, or smartcar2mqtt auth)"
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
	ListKnowing(ctx context.Context, only []string, known []VehicleDetails) (Listing, error)
}

// FleetFile is the vehicle cache's file name inside DATA_DIR.
const FleetFile = "vehicles.json"

// goneAfter is how many successful listings in a row must lack a vehicle
// before it is removed from Home Assistant: one could be a glitch at
// Smartcar, and removing a device loses the user's names and areas.
const goneAfter = 2

// FleetCache keeps what Smartcar last said about the account in a file in
// DATA_DIR: which vehicles, with which permissions. A start serves from it
// whatever its age, so a restart spends no call and starts when Smartcar is
// out of reach; listings refresh it in the background (FleetKeeper). A cache
// written through one API generation (or for another SMARTCAR_USER_ID) never
// answers for another: v3 needs each car's user, which v2.0 never listed.
type FleetCache struct {
	Path   string
	MaxAge time.Duration    // how old a listing Vehicles accepts
	User   string           // the SMARTCAR_USER_ID filter the source lists with
	Now    func() time.Time // for tests; time.Now when nil
}

type fleetFile struct {
	FetchedAt time.Time `json:"fetched_at"`
	// API is the generation that listed the vehicles; "" in files written
	// before v3 existed, which were all v2.0.
	API  string   `json:"api,omitempty"`
	User string   `json:"user,omitempty"`
	Only []string `json:"only,omitempty"` // the SMARTCAR_VEHICLE_IDS filter it was fetched for
	// Account is every vehicle id on the account at the last listing;
	// absent from files written before it was kept.
	Account  []string         `json:"account,omitempty"`
	Vehicles []VehicleDetails `json:"vehicles"`
	// Missing counts, for vehicles served or announced before, the
	// successful listings in a row that lacked them.
	Missing map[string]int `json:"missing,omitempty"`
}

func (ff fleetFile) api() string {
	if ff.API == "" {
		return V2
	}
	return ff.API
}

// Known is what the cache knows for a start, whatever its age.
type Known struct {
	Vehicles []VehicleDetails // the cached vehicles the filter selects
	ListedAt time.Time        // zero: never listed for this API and user
	// Complete says the cache has every vehicle the filter asks for; a
	// listing is due at once otherwise.
	Complete bool
	// Deselected are on the cached account but left out by the filter: the
	// user's choice, to remove from Home Assistant.
	Deselected []string
}

// Known returns the cached vehicles the filter only selects, whatever their
// age. A filter naming ids the cached account lacks is an
// *UnknownVehiclesError: known before any network call.
func (f FleetCache) Known(api string, only []string) (Known, error) {
	ff, err := f.load()
	if errors.Is(err, fs.ErrNotExist) {
		return Known{}, nil
	}
	if err != nil {
		return Known{}, err
	}
	if !f.answers(ff, api) {
		return Known{}, nil
	}
	if err := checkFilter(only, ff.Account); err != nil {
		return Known{}, err
	}
	vs := filterVehicles(ff.Vehicles, only)
	complete := covers(ff.Only, only)
	if len(only) > 0 {
		complete = len(vs) == len(only)
	}
	var deselected []string
	if len(only) > 0 {
		for _, id := range ff.Account {
			if !slices.Contains(only, id) {
				deselected = append(deselected, id)
			}
		}
	}
	return Known{Vehicles: vs, ListedAt: ff.FetchedAt, Complete: complete, Deselected: deselected}, nil
}

// Vehicles returns the vehicles to bridge: all on the account, or those in
// only; from the cache while it is younger than MaxAge and has them all,
// otherwise from a listing, which it keeps.
func (f FleetCache) Vehicles(ctx context.Context, src fleetSource, only []string) ([]VehicleDetails, error) {
	k, err := f.Known(src.Version(), only)
	if err != nil {
		return nil, err
	}
	if !k.ListedAt.IsZero() && k.Complete && f.now().Sub(k.ListedAt) < f.MaxAge {
		return k.Vehicles, nil
	}
	u, err := f.Refresh(ctx, src, only, nil, false)
	if err != nil {
		return nil, err
	}
	return u.Vehicles, nil
}

// Update is what a listing changed.
type Update struct {
	Vehicles []VehicleDetails // to serve: the listing, plus vehicles it lacked for the first time
	// Gone are the vehicles to remove from Home Assistant: absent from
	// goneAfter successful listings in a row, or left out by the filter
	// while still on the account.
	Gone []string
}

// Refresh lists the account and merges the listing into the cache. suspects
// are vehicles Home Assistant knows from an earlier run that the cache does
// not: they are counted as missing like the cached ones. An empty account
// changes nothing: it proves nothing (a fresh login, an account just moved to
// API v3 before its cars were connected again). With reuse, cached vehicles
// keep their details where those cost a call per vehicle.
func (f FleetCache) Refresh(ctx context.Context, src fleetSource, only, suspects []string, reuse bool) (Update, error) {
	prev, err := f.load()
	if err != nil || !f.answers(prev, src.Version()) {
		prev = fleetFile{}
	}
	var known []VehicleDetails
	if reuse {
		known = prev.Vehicles
	}
	l, err := src.ListKnowing(ctx, only, known)
	if err != nil {
		return Update{}, err
	}
	now := f.now().UTC()
	if len(l.Account) == 0 {
		if prev.API == "" && len(prev.Vehicles) == 0 {
			prev = fleetFile{API: src.Version(), User: f.User, Only: only}
		}
		prev.FetchedAt = now
		if err := f.write(prev); err != nil {
			return Update{}, err
		}
		return Update{Vehicles: filterVehicles(prev.Vehicles, only)}, nil
	}

	next := fleetFile{FetchedAt: now, API: src.Version(), User: f.User, Only: only, Account: l.Account, Missing: map[string]int{}}
	listed := map[string]bool{}
	for _, v := range l.Vehicles {
		// What Smartcar said by refusing a command is not in a listing: keep it.
		if i := slices.IndexFunc(prev.Vehicles, func(c VehicleDetails) bool { return c.ID == v.ID }); i >= 0 {
			v.NoDoorCommand = prev.Vehicles[i].NoDoorCommand
		}
		listed[v.ID] = true
		next.Vehicles = append(next.Vehicles, v)
	}
	var u Update
	candidates := slices.Collect(maps.Keys(prev.Missing))
	for _, v := range prev.Vehicles {
		candidates = append(candidates, v.ID)
	}
	candidates = append(candidates, suspects...)
	slices.Sort(candidates)
	for _, id := range slices.Compact(candidates) {
		switch {
		case listed[id]:
		case slices.Contains(l.Account, id):
			// On the account, left out by the filter: the user's choice.
			u.Gone = append(u.Gone, id)
		case prev.Missing[id]+1 >= goneAfter:
			u.Gone = append(u.Gone, id)
		default:
			next.Missing[id] = prev.Missing[id] + 1
			if i := slices.IndexFunc(prev.Vehicles, func(c VehicleDetails) bool { return c.ID == id }); i >= 0 && (len(only) == 0 || slices.Contains(only, id)) {
				next.Vehicles = append(next.Vehicles, prev.Vehicles[i])
			}
		}
	}
	if err := f.write(next); err != nil {
		return Update{}, err
	}
	u.Vehicles = next.Vehicles
	return u, nil
}

// Save writes vehicles as a full listing of the account (no filter), as
// `auth` does with the listing that showed it the new car.
func (f FleetCache) Save(api string, vehicles []VehicleDetails) error {
	ff := fleetFile{FetchedAt: f.now().UTC(), API: api, User: f.User, Vehicles: vehicles}
	for _, v := range vehicles {
		ff.Account = append(ff.Account, v.ID)
	}
	return f.write(ff)
}

// Cached returns the vehicles in the cache whatever their age, with when they
// were listed, for a daemon watching for cars `auth` connected. A missing
// file is fs.ErrNotExist.
func (f FleetCache) Cached(api string, only []string) ([]VehicleDetails, time.Time, error) {
	ff, err := f.load()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !f.answers(ff, api) || !covers(ff.Only, only) {
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

// Forget drops the cache, so the next Vehicles call asks Smartcar.
func (f FleetCache) Forget() error {
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget vehicle cache: %w", err)
	}
	return nil
}

// answers reports whether a cached listing can stand for one by api: same
// generation and user.
func (f FleetCache) answers(ff fleetFile, api string) bool {
	return ff.api() == api && ff.User == f.User
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
	return slices.DeleteFunc(slices.Clone(vs), func(v VehicleDetails) bool { return !slices.Contains(only, v.ID) })
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

// raw is the cache file's content; nil when it cannot be read.
func (f FleetCache) raw() []byte {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil
	}
	return data
}
