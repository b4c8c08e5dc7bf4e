package smartcar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// v2API is the legacy API v2.0: per-user tokens, a vehicle list of ids, and
// the Tesla brand-specific charge endpoints. It remembers which paths have
// answered, so that a 404 on one of them later can be recognised as Smartcar
// switching v2.0 off rather than a typo.
type v2API struct {
	mu     sync.Mutex
	worked map[string]bool // request paths that answered 2xx in this process
}

func (*v2API) version() string { return V2 }

// codeVersion is v2.0's RESOURCE_NOT_FOUND code for an API version that is
// not (or no longer) available.
const codeVersion = "VERSION"

// check turns an answer meaning "v2.0 is gone" into the TypeAPIRetired
// *Error and remembers a path that worked.
func (a *v2API) check(path string, err error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		if a.worked == nil {
			a.worked = map[string]bool{}
		}
		a.worked[path] = true
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	gone := e.StatusCode == http.StatusGone ||
		e.StatusCode == http.StatusNotFound && (e.Code == codeVersion || a.worked[path])
	if !gone {
		return err
	}
	return &Error{StatusCode: e.StatusCode, Type: TypeAPIRetired, Code: "V2", Description: V2RetiredAdvice,
		Resolution: "MOVE_TO_API_V3", RequestID: e.RequestID}
}

func (a *v2API) getJSON(ctx context.Context, c *Client, r request, out any) (string, error) {
	reqID, err := c.getJSON(ctx, r, out)
	return reqID, a.check(r.path, err)
}

// vehicles lists the ids (GET /vehicles), then asks each wanted one for its
// attributes and permissions. Every vehicle is marked TeslaEndpoints: v2.0
// reads and moves the door through Tesla-only paths.
func (a *v2API) vehicles(ctx context.Context, c *Client, only []string, known []VehicleDetails) ([]VehicleDetails, []string, error) {
	ids, err := a.ids(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	out := make([]VehicleDetails, 0, len(ids))
	for _, id := range ids {
		if len(only) > 0 && !slices.Contains(only, id) {
			continue
		}
		if i := slices.IndexFunc(known, func(k VehicleDetails) bool { return k.ID == id }); i >= 0 {
			out = append(out, known[i])
			continue
		}
		v, err := a.vehicle(ctx, c, id)
		if err != nil {
			return nil, nil, err
		}
		perms, err := a.permissions(ctx, c, id)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, VehicleDetails{Vehicle: v, Permissions: perms, TeslaEndpoints: true})
	}
	return out, ids, nil
}

// ids lists the ids of every vehicle the login can see (GET /vehicles),
// following limit/offset paging.
func (a *v2API) ids(ctx context.Context, c *Client) ([]string, error) {
	return pages(c.pageSize, func(limit, offset int) ([]string, paging, error) {
		var resp struct {
			Vehicles []string `json:"vehicles"`
			Paging   paging   `json:"paging"`
		}
		_, err := a.getJSON(ctx, c, request{endpoint: EndpointVehicles, method: http.MethodGet,
			path: "/vehicles", query: pageQuery(limit, offset)}, &resp)
		return resp.Vehicles, resp.Paging, err
	})
}

// vehicle reads a vehicle's make, model and year (GET /vehicles/{id}).
func (a *v2API) vehicle(ctx context.Context, c *Client, id string) (Vehicle, error) {
	var v Vehicle
	r := request{endpoint: EndpointVehicle, vehicleID: id, method: http.MethodGet, path: vehiclePath(id)}
	if _, err := a.getJSON(ctx, c, r, &v); err != nil {
		return Vehicle{}, fmt.Errorf("get vehicle %s: %w", id, err)
	}
	v.ID, v.UserID = id, ""
	return v, nil
}

// permissions lists what the owner granted for a vehicle
// (GET /vehicles/{id}/permissions), following paging.
func (a *v2API) permissions(ctx context.Context, c *Client, id string) ([]string, error) {
	perms, err := pages(c.pageSize, func(limit, offset int) ([]string, paging, error) {
		var resp struct {
			Permissions []string `json:"permissions"`
			Paging      paging   `json:"paging"`
		}
		_, err := a.getJSON(ctx, c, request{endpoint: EndpointPermissions, vehicleID: id, method: http.MethodGet,
			path: vehiclePath(id) + "/permissions", query: pageQuery(limit, offset)}, &resp)
		return resp.Permissions, resp.Paging, err
	})
	if err != nil {
		return nil, fmt.Errorf("get permissions of %s: %w", id, err)
	}
	return perms, nil
}

// teslaCharge is the body of GET /vehicles/{id}/tesla/charge, the fields the
// daemon uses. Pointers: null or absent is unknown, not false or zero.
type teslaCharge struct {
	ChargePortOpen  *bool   `json:"chargePortOpen"`
	ChargePortLatch *string `json:"chargePortLatch"`
	IsPluggedIn     *bool   `json:"isPluggedIn"`
	State           *string `json:"state"`
	// SocLimit is a fraction (0.8 = 80 %), Smartcar's convention for v2.0
	// charge limits; a value above 1 is taken as percent already.
	SocLimit    *float64 `json:"socLimit"`
	EnergyAdded *float64 `json:"energyAdded"`
}

// read reads a Tesla's charge state (GET /vehicles/{id}/tesla/charge,
// permission read_charge).
func (a *v2API) read(ctx context.Context, c *Client, v Vehicle) (ChargeState, error) {
	var tc teslaCharge
	reqID, err := a.getJSON(ctx, c, request{endpoint: EndpointTeslaCharge, vehicleID: v.ID, method: http.MethodGet,
		path: vehiclePath(v.ID) + "/tesla/charge"}, &tc)
	if err != nil {
		return ChargeState{}, err
	}
	st := ChargeState{DoorOpen: tc.ChargePortOpen, PluggedIn: tc.IsPluggedIn, Latch: tc.ChargePortLatch,
		Charging: tc.State, EnergyAdded: tc.EnergyAdded, RequestID: reqID}
	if l := tc.SocLimit; l != nil {
		st.LimitPercent = new(PercentFromFraction(*l))
	}
	return st, nil
}

// PercentFromFraction reads a v2.0 charge limit (0.8) as percent (80). A
// value above 1 is percent already. Rounded to a tenth, so 0.57 is 57, not
// 56.99999999999999.
func PercentFromFraction(f float64) float64 {
	if f <= 1 {
		f *= 100
	}
	return float64(int64(f*10+0.5)) / 10
}

// chargePortDoor opens or closes the door (POST
// /vehicles/{id}/{make}/charge/charge_port_door, permission control_charge),
// which Smartcar offers for Tesla only.
func (a *v2API) chargePortDoor(ctx context.Context, c *Client, v Vehicle, act Action) error {
	if v.Make == "" {
		return errors.New("vehicle make unknown")
	}
	body, err := json.Marshal(struct {
		Action Action `json:"action"`
	}{act})
	if err != nil {
		return err
	}
	var resp struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		errorBody
	}
	r := request{endpoint: EndpointChargePortDoor, vehicleID: v.ID, method: http.MethodPost,
		path: vehiclePath(v.ID) + "/" + url.PathEscape(strings.ToLower(v.Make)) + "/charge/charge_port_door", body: body, targetState: true}
	reqID, err := a.getJSON(ctx, c, r, &resp)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.StatusCode == http.StatusNotImplemented {
			return fmt.Errorf("%w: %w", ErrNoChargePortCommand, err)
		}
		return err
	}
	// A long-running command may answer 2xx and report its real outcome in
	// the body; an error object there is still an error.
	if resp.isError() && resp.StatusCode >= 400 {
		e := &Error{StatusCode: resp.StatusCode, RequestID: reqID}
		e.fill(resp.errorBody)
		return e
	}
	if resp.Status != "" && !strings.EqualFold(resp.Status, "success") {
		return fmt.Errorf("command status %q: %s", resp.Status, printable(resp.Message, maxErrorSnippet, "…"))
	}
	return nil
}

// paging is v2.0's offset paging block. Count is the total number of
// elements for the whole query, not just this page.
type paging struct {
	Count  int `json:"count"`
	Offset int `json:"offset"`
}

// pages collects a limit/offset paged list. It stops on an empty or short
// page, or once paging.count (the total) is reached.
func pages(limit int, fetch func(limit, offset int) ([]string, paging, error)) ([]string, error) {
	var all []string
	for offset, n := 0, 0; n < maxPages; n++ {
		items, pg, err := fetch(limit, offset)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		offset += len(items)
		if len(items) == 0 || len(items) < limit || (pg.Count > 0 && offset >= pg.Count) {
			return all, nil
		}
	}
	return nil, errors.New("paging did not end")
}

func pageQuery(limit, offset int) url.Values {
	return url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
}

func vehiclePath(id string) string { return "/vehicles/" + url.PathEscape(id) }
