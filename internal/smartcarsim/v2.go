package smartcarsim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// refreshTTL is what the v2 token endpoint reports for refresh tokens:
// Smartcar's 60 days.
const refreshTTL = 60 * 24 * time.Hour

func (s *Simulator) routeV2() {
	s.mux.HandleFunc("POST /oauth/token", s.handleToken)
	s.mux.HandleFunc("GET /v2.0/vehicles", s.authed(s.handleVehicles))
	s.mux.HandleFunc("GET /v2.0/vehicles/{id}", s.authed(s.handleVehicle))
	// Smartcar's own Node SDK asks for these two with a trailing slash
	// (getVehicles: GET /v2.0/vehicles/, vehicle.attributes(): GET
	// /v2.0/vehicles/{id}/), and Smartcar serves them: so must we.
	s.mux.HandleFunc("GET /v2.0/vehicles/{$}", s.authed(s.handleVehicles))
	s.mux.HandleFunc("GET /v2.0/vehicles/{id}/{$}", s.authed(s.handleVehicle))
	s.mux.HandleFunc("GET /v2.0/vehicles/{id}/permissions", s.authed(s.handlePermissions))
	s.mux.HandleFunc("GET /v2.0/vehicles/{id}/tesla/charge", s.authed(s.handleTeslaCharge))
	s.mux.HandleFunc("POST /v2.0/vehicles/{id}/{make}/charge/charge_port_door", s.authed(s.handleDoor))
}

// v2Vehicle is GET /v2.0/vehicles/{id}.
type v2Vehicle struct {
	ID    string `json:"id"`
	Make  string `json:"make"`
	Model string `json:"model"`
	Year  int    `json:"year"`
}

// v2Paging is v2.0's offset paging block; count is the whole query's.
type v2Paging struct {
	Count  int `json:"count"`
	Offset int `json:"offset"`
}

type v2VehicleList struct {
	Vehicles []string `json:"vehicles"`
	Paging   v2Paging `json:"paging"`
}

type v2PermissionList struct {
	Permissions []string `json:"permissions"`
	Paging      v2Paging `json:"paging"`
}

// v2TokenResponse is the v2 token endpoint's success body.
type v2TokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	RefreshExpiresIn int64  `json:"refresh_expires_in"`
}

// v2DoorCommand is the charge_port_door request body.
type v2DoorCommand struct {
	Action string `json:"action"` // OPEN or CLOSE
}

// v2ActionResponse is what a v2.0 command answers on success.
type v2ActionResponse struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// basicCredentials reads HTTP Basic credentials, form-urlencoded first as
// RFC 6749 §2.3.1 requires of OAuth clients.
func basicCredentials(r *http.Request) (id, secret string, ok bool) {
	id, secret, ok = r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	return id, secret, ok
}

// handleToken serves v2's refresh_token and authorization_code grants.
// Every grant rotates the refresh token; a used one is refused once
// RefreshGrace has passed since its first use.
func (s *Simulator) handleToken(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := basicCredentials(r)
	if !ok || id != s.opts.ClientID || secret != s.opts.ClientSecret {
		w.Header().Set("WWW-Authenticate", `Basic realm="smartcar"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Malformed form body.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.PostForm.Get("grant_type") {
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		usedAt, known := s.refresh[rt]
		now := s.opts.Now()
		if !known || (!usedAt.IsZero() && !now.Before(usedAt.Add(s.opts.RefreshGrace))) {
			writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "The refresh token is invalid, expired or already used.")
			return
		}
		if usedAt.IsZero() {
			s.refresh[rt] = now // the grace runs from the first use
		}
	case "authorization_code":
		code := r.PostForm.Get("code")
		redirect, known := s.codes[code]
		delete(s.codes, code)
		if !known || redirect != r.PostForm.Get("redirect_uri") {
			writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "The authorization code is invalid, expired or already used.")
			return
		}
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "Use authorization_code or refresh_token.")
		return
	}
	at, rt := "sim-at-"+randomHex(16), "sim-rt-"+randomHex(16)
	s.access[at] = s.opts.Now().Add(s.opts.AccessTTL)
	s.refresh[rt] = time.Time{}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, v2TokenResponse{
		AccessToken:      at,
		TokenType:        "Bearer",
		ExpiresIn:        int64(s.opts.AccessTTL / time.Second),
		RefreshToken:     rt,
		RefreshExpiresIn: int64(refreshTTL / time.Second),
	})
}

// bearer is the token of an "Authorization: Bearer …" header.
func bearer(r *http.Request) (string, bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// validToken reports whether tok is in tokens and unexpired.
func (s *Simulator) validToken(tokens map[string]time.Time, tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, known := tokens[tok]
	return known && s.opts.Now().Before(exp)
}

// authed requires a known, unexpired v2 access token.
func (s *Simulator) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := bearer(r); !ok || !s.validToken(s.access, tok) {
			writeV2Error(w, r, http.StatusUnauthorized, "AUTHENTICATION", "", 0)
			return
		}
		h(w, r)
	}
}

// v2Vehicle returns a snapshot of the vehicle in the path, after checking it
// exists and that perm is granted; it has answered the request if !ok.
func (s *Simulator) v2Vehicle(w http.ResponseWriter, r *http.Request, perm string) (vehicle, bool) {
	v, ok := s.snapshot(r.PathValue("id"))
	if !ok {
		writeV2Error(w, r, http.StatusNotFound, "RESOURCE_NOT_FOUND", "PATH", 0)
		return vehicle{}, false
	}
	if perm != "" && !slices.Contains(v.perms, perm) {
		writeV2Error(w, r, http.StatusForbidden, "PERMISSION", "", 0)
		return vehicle{}, false
	}
	return v, true
}

// pageParams reads limit/offset as Smartcar does: limit 1..50, default 10.
func pageParams(w http.ResponseWriter, r *http.Request) (limit, offset int, ok bool) {
	limit, offset = 10, 0
	var err error
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 50 {
			writeV2Error(w, r, http.StatusBadRequest, "VALIDATION", "INVALID_INPUT_FORMAT", 0)
			return 0, 0, false
		}
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			writeV2Error(w, r, http.StatusBadRequest, "VALIDATION", "INVALID_INPUT_FORMAT", 0)
			return 0, 0, false
		}
	}
	return limit, offset, true
}

// page is all[offset:offset+limit], clipped, never nil (an empty page is
// [] on the wire, not null).
func page[T any](all []T, limit, offset int) []T {
	if offset >= len(all) {
		return []T{}
	}
	return all[offset:min(offset+limit, len(all))]
}

func (s *Simulator) handleVehicles(w http.ResponseWriter, r *http.Request) {
	limit, offset, ok := pageParams(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	all := slices.Clone(s.order)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, v2VehicleList{
		Vehicles: page(all, limit, offset),
		Paging:   v2Paging{Count: len(all), Offset: offset},
	})
}

func (s *Simulator) handleVehicle(w http.ResponseWriter, r *http.Request) {
	v, ok := s.v2Vehicle(w, r, permReadVehicleInfo)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, v2Vehicle{ID: v.info.ID, Make: v.info.Make, Model: v.info.Model, Year: v.info.Year})
}

func (s *Simulator) handlePermissions(w http.ResponseWriter, r *http.Request) {
	limit, offset, ok := pageParams(w, r)
	if !ok {
		return
	}
	v, ok := s.v2Vehicle(w, r, "")
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, v2PermissionList{
		Permissions: page(v.perms, limit, offset),
		Paging:      v2Paging{Count: len(v.perms), Offset: offset},
	})
}

func isTesla(v vehicle) bool { return strings.EqualFold(v.info.Make, "TESLA") }

func (s *Simulator) handleTeslaCharge(w http.ResponseWriter, r *http.Request) {
	v, ok := s.v2Vehicle(w, r, permReadCharge)
	if !ok {
		return
	}
	if !isTesla(v) {
		writeV2Error(w, r, http.StatusNotImplemented, "COMPATIBILITY", "MAKE_NOT_COMPATIBLE", 0)
		return
	}
	writeJSON(w, http.StatusOK, teslaCharge(v))
}

// teslaCharge is the tesla/charge body for a car that charges at 32 A /
// 240 V whenever it is plugged in.
func teslaCharge(v vehicle) map[string]any {
	c := map[string]any{
		"chargePortOpen":       v.open,
		"isPluggedIn":          v.plugged,
		"chargePortLatch":      "DISENGAGED",
		"state":                "NOT_CHARGING",
		"socLimit":             0.8,
		"energyAdded":          0.0,
		"amperage":             0.0,
		"amperageRequested":    32.0,
		"amperageMax":          48.0,
		"voltage":              0.0,
		"wattage":              0.0,
		"chargeRate":           0.0,
		"timeToComplete":       0,
		"chargerPhases":        nil,
		"isFastChargerPresent": false,
		"fastChargerType":      nil,
	}
	if v.plugged {
		c["chargePortLatch"] = "ENGAGED"
		c["state"] = "CHARGING"
		c["energyAdded"] = 4.2
		c["amperage"] = 32.0
		c["voltage"] = 240.0
		c["wattage"] = 7.68
		c["chargeRate"] = 45.0
		c["timeToComplete"] = 95
		c["chargerPhases"] = 1
	}
	return c
}

func (s *Simulator) handleDoor(w http.ResponseWriter, r *http.Request) {
	// Compatibility before permission: the make cannot do this whatever
	// the owner granted.
	v, ok := s.v2Vehicle(w, r, "")
	if !ok {
		return
	}
	if !isTesla(v) {
		writeV2Error(w, r, http.StatusNotImplemented, "COMPATIBILITY", "MAKE_NOT_COMPATIBLE", 0)
		return
	}
	if !slices.Contains(v.perms, permControlCharge) {
		writeV2Error(w, r, http.StatusForbidden, "PERMISSION", "", 0)
		return
	}
	if r.PathValue("make") != "tesla" {
		writeV2Error(w, r, http.StatusNotFound, "RESOURCE_NOT_FOUND", "PATH", 0)
		return
	}
	var body v2DoorCommand
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || (body.Action != "OPEN" && body.Action != "CLOSE") {
		writeV2Error(w, r, http.StatusBadRequest, "VALIDATION", "INVALID_INPUT_FORMAT", 0)
		return
	}
	open := body.Action == "OPEN"
	if !open && v.plugged {
		writeV2Error(w, r, http.StatusConflict, "VEHICLE_STATE", "CHARGING_PLUG_CONNECTED", 0)
		return
	}
	if !s.waitLatency(r.Context()) {
		if s.opts.CompleteOnCancel {
			s.moveDoor(v.info.ID, open)
		}
		return
	}
	s.moveDoor(v.info.ID, open)
	writeJSON(w, http.StatusOK, v2ActionResponse{Status: "success", Message: "Successfully sent request to vehicle"})
}
