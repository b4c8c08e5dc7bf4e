package smartcar

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Vehicles the Simulator always has.
const (
	// SimTeslaID is a 2021 Tesla Model 3 granting read_vehicle_info,
	// read_charge and control_charge: everything the daemon uses.
	SimTeslaID = "5f7a3f3e-0a1b-4c2d-9e8f-7a6b5c4d3e21"
	// SimOtherID is a 2022 Ford Mustang Mach-E. Smartcar has no charge port
	// door command for it: the command answers 501 COMPATIBILITY.
	SimOtherID = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
)

// simRefreshTTL is what the token endpoint reports for refresh tokens:
// Smartcar's 60 days.
const simRefreshTTL = 60 * 24 * time.Hour

// SimOptions configures a Simulator.
type SimOptions struct {
	ClientID, ClientSecret string        // the token endpoint checks HTTP Basic auth
	AccessTTL              time.Duration // access token lifetime, default 2h
	Latency                time.Duration // added to vehicle commands, default 0
	Now                    func() time.Time

	// CompleteOnCancel makes a command whose client gave up during Latency
	// still move the door, as a real car may: the case where a timed-out
	// POST must not be re-sent blindly.
	CompleteOnCancel bool

	// RefreshGrace keeps a used refresh token redeemable for this long after
	// its first use, as Smartcar does (the old one dies a minute after use):
	// a client that crashed before saving the new pair can retry with the
	// old one. 0 refuses any reuse, the strictest server.
	RefreshGrace time.Duration

	// DenyConnect makes GET /oauth/authorize answer as if the user pressed
	// "Deny access": a redirect with error=access_denied.
	DenyConnect bool
}

// Fault makes matching requests fail with a Smartcar error body.
type Fault struct {
	Method     string        // "" matches any method
	Path       string        // suffix match on the URL path, e.g. "/charge/charge_port_door"; "" matches any
	Status     int           // HTTP status, e.g. 409
	Type, Code string        // default from Status (409 → VEHICLE_STATE:ASLEEP …); Type "OAUTH" sends an OAuth body
	RetryAfter time.Duration // sent as Retry-After seconds
	Times      int           // 0 = once; n > 0 = n times; < 0 = until ClearFaults
	RawBody    string        // if set, sent as text/plain instead of a JSON error body
}

// SimRequest is one request the Simulator received, in arrival order.
type SimRequest struct {
	Method, Path, Body, Authorization string
	Query, UserAgent, RequestID       string
	Status                            int       // 0 while in flight; 499 if the client went away
	At                                time.Time // arrival, from SimOptions.Now, so tests can check waits
}

// Simulator is an http.Handler speaking Smartcar's documented shapes: the
// OAuth token endpoint with rotating refresh tokens and the v2.0 API under
// /v2.0. Tests and `demo` run it over httptest / a local listener. It is safe
// for concurrent use.
type Simulator struct {
	opts SimOptions
	mux  *http.ServeMux

	mu       sync.Mutex
	refresh  map[string]time.Time // refresh token → first use; zero = unused
	access   map[string]time.Time // access token → expiry
	codes    map[string]string    // authorization code → redirect_uri
	vehicles map[string]*simVehicle
	order    []string // vehicle ids in listing order
	faults   []*Fault
	log      []SimRequest
	changed  chan struct{} // closed and replaced whenever log changes
}

type simVehicle struct {
	info    Vehicle
	perms   []string
	open    bool
	plugged bool
}

// NewSimulator returns a simulator holding SimTeslaID and SimOtherID.
func NewSimulator(opts SimOptions) *Simulator {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 2 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Simulator{
		opts:     opts,
		mux:      http.NewServeMux(),
		refresh:  map[string]time.Time{},
		access:   map[string]time.Time{},
		codes:    map[string]string{},
		vehicles: map[string]*simVehicle{},
		changed:  make(chan struct{}),
	}
	s.AddVehicle(Vehicle{ID: SimTeslaID, Make: "TESLA", Model: "Model 3", Year: 2021},
		[]string{PermReadVehicleInfo, PermReadCharge, PermControlCharge})
	s.AddVehicle(Vehicle{ID: SimOtherID, Make: "FORD", Model: "Mustang Mach-E", Year: 2022},
		[]string{PermReadVehicleInfo, PermReadCharge, PermControlCharge, "read_battery"})

	s.mux.HandleFunc("POST /oauth/token", s.handleToken)
	s.mux.HandleFunc("GET /oauth/authorize", s.handleAuthorize)
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
	// The demo's knob: plug the simulated car in or out, as a user would at the car.
	s.mux.HandleFunc("POST /simulator/vehicles/{id}/plug", s.handlePlug(true))
	s.mux.HandleFunc("POST /simulator/vehicles/{id}/unplug", s.handlePlug(false))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, http.StatusNotFound, TypeResourceNotFound, "PATH", 0)
	})
	return s
}

// AddVehicle adds (or replaces) a vehicle with the given permissions, e.g. to
// test paging over many vehicles.
func (s *Simulator) AddVehicle(v Vehicle, permissions []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.vehicles[v.ID]; !ok {
		s.order = append(s.order, v.ID)
	}
	s.vehicles[v.ID] = &simVehicle{info: v, perms: slices.Clone(permissions)}
}

// SetPermissions replaces what the owner granted for a vehicle.
func (s *Simulator) SetPermissions(vehicleID string, permissions ...string) {
	s.withVehicle(vehicleID, func(v *simVehicle) { v.perms = slices.Clone(permissions) })
}

// IssueRefreshToken returns a fresh refresh token, as if a user had just
// completed Connect.
func (s *Simulator) IssueRefreshToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := "sim-rt-" + randomHex(16)
	s.refresh[rt] = time.Time{}
	return rt
}

// InjectFault makes the next matching request(s) fail. Faults are checked
// before authentication, in the order injected.
func (s *Simulator) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every pending fault.
func (s *Simulator) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Requests returns every request received so far, in arrival order.
func (s *Simulator) Requests() []SimRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// WaitRequest blocks until a logged request satisfies match (one already
// logged counts) or ctx ends. It lets tests wait on an event instead of
// sleeping. A request is logged on arrival, with Status 0 until answered.
func (s *Simulator) WaitRequest(ctx context.Context, match func(SimRequest) bool) (SimRequest, error) {
	for {
		s.mu.Lock()
		for _, r := range s.log {
			if match(r) {
				s.mu.Unlock()
				return r, nil
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return SimRequest{}, ctx.Err()
		}
	}
}

// ChargePortOpen reports the car's real door state.
func (s *Simulator) ChargePortOpen(vehicleID string) bool {
	var open bool
	s.withVehicle(vehicleID, func(v *simVehicle) { open = v.open })
	return open
}

// SetChargePortOpen moves the door as if someone pressed it at the car.
func (s *Simulator) SetChargePortOpen(vehicleID string, open bool) {
	s.withVehicle(vehicleID, func(v *simVehicle) { v.open = open })
}

// SetPluggedIn plugs or unplugs the cable. A cable needs an open door, so
// plugging in opens it; unplugging leaves the door as it is.
func (s *Simulator) SetPluggedIn(vehicleID string, plugged bool) {
	s.withVehicle(vehicleID, func(v *simVehicle) {
		v.plugged = plugged
		if plugged {
			v.open = true
		}
	})
}

func (s *Simulator) withVehicle(id string, f func(*simVehicle)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vehicles[id]; ok {
		f(v)
	}
}

// ServeHTTP logs the request, gives it a request id, applies any matching
// fault, and otherwise routes it.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	reqID := newUUID()
	w.Header().Set(RequestIDHeader, reqID)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, reqID))

	idx := s.record(SimRequest{
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.RawQuery,
		Body:          string(body),
		Authorization: r.Header.Get("Authorization"),
		UserAgent:     r.Header.Get("User-Agent"),
		RequestID:     reqID,
		At:            s.opts.Now(),
	})
	rec := &statusRecorder{ResponseWriter: w}
	if f, ok := s.takeFault(r); ok {
		s.writeFault(rec, r, f)
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
		if r.Context().Err() != nil {
			status = 499 // client closed request
		}
	}
	s.finish(idx, status)
}

// handlePlug is not part of Smartcar's API: it stands for the user at the car.
func (s *Simulator) handlePlug(plugged bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		s.mu.Lock()
		_, ok := s.vehicles[id]
		s.mu.Unlock()
		if !ok {
			http.Error(w, "no such vehicle", http.StatusNotFound)
			return
		}
		s.SetPluggedIn(id, plugged)
		fmt.Fprintf(w, "vehicle %s plugged in: %v\n", id, plugged)
	}
}

type requestIDKey struct{}

func (s *Simulator) record(req SimRequest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, req)
	s.notifyLocked()
	return len(s.log) - 1
}

func (s *Simulator) finish(idx, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log[idx].Status = status
	s.notifyLocked()
}

func (s *Simulator) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Simulator) takeFault(r *http.Request) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if f.Path != "" && !strings.HasSuffix(r.URL.Path, f.Path) {
			continue
		}
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return *f, true
	}
	return Fault{}, false
}

func (s *Simulator) writeFault(w http.ResponseWriter, r *http.Request, f Fault) {
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if f.RawBody != "" {
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		io.WriteString(w, f.RawBody)
		return
	}
	if f.Type == TypeOAuth {
		code := f.Code
		if code == "" {
			code = CodeInvalidGrant
		}
		writeOAuthError(w, status, code, "injected fault")
		return
	}
	typ, code := f.Type, f.Code
	if typ == "" {
		typ, code = defaultFault(status)
	}
	s.writeError(w, r, status, typ, code, f.RetryAfter)
}

// defaultFault maps a status to the error Smartcar documents for it.
func defaultFault(status int) (typ, code string) {
	switch status {
	case http.StatusBadRequest:
		return TypeValidation, "INVALID_INPUT_FORMAT"
	case http.StatusUnauthorized:
		return TypeAuthentication, ""
	case http.StatusForbidden:
		return TypePermission, ""
	case http.StatusNotFound:
		return TypeResourceNotFound, "PATH"
	case http.StatusConflict:
		return TypeVehicleState, "ASLEEP"
	case http.StatusTooManyRequests:
		return TypeRateLimit, "VEHICLE"
	case http.StatusNotImplemented:
		return TypeCompatibility, "MAKE_NOT_COMPATIBLE"
	case http.StatusBadGateway:
		return TypeUpstream, "UNKNOWN_ISSUE"
	default:
		return TypeServer, "INTERNAL"
	}
}

// simDescription is the simulator's wording for the errors it serves, keyed
// by "TYPE:CODE" or "TYPE".
func simDescription(key string) string {
	switch key {
	case TypeAuthentication:
		return "The access token is missing, malformed, invalid or expired."
	case TypePermission:
		return "The user did not grant the permission this endpoint needs."
	case TypeResourceNotFound + ":PATH":
		return "No such resource. Check the path."
	case TypeValidation + ":INVALID_INPUT_FORMAT":
		return "The request body is not valid for this endpoint."
	case TypeVehicleState + ":ASLEEP":
		return "The vehicle is asleep and cannot perform the request right now."
	case TypeVehicleState + ":UNREACHABLE":
		return "The vehicle cannot be reached right now."
	case TypeVehicleState + ":CHARGING_PLUG_CONNECTED":
		return "The charging cable is plugged in, so the vehicle cannot do this."
	case TypeRateLimit + ":VEHICLE":
		return "Too many requests for this vehicle. See the Retry-After header."
	case TypeRateLimit + ":SMARTCAR_API":
		return "The application exceeded its rate limit. Retry later."
	case TypeServer + ":INTERNAL":
		return "Smartcar had an internal error."
	case TypeUpstream + ":UNKNOWN_ISSUE":
		return "The manufacturer's service failed in an unexpected way."
	case TypeUpstream + ":NO_RESPONSE":
		return "The manufacturer's service did not answer."
	case TypeCompatibility + ":MAKE_NOT_COMPATIBLE":
		return "This feature is not available for the vehicle's make."
	}
	return ""
}

// simResolution is resolution.type for an error type; "" sends null.
func simResolution(typ string) string {
	switch typ {
	case TypeRateLimit, TypeUpstream, TypeServer:
		return "RETRY_LATER"
	case TypePermission:
		return "REAUTHENTICATE"
	}
	return ""
}

// simErrorBody is Smartcar's v2.0 error shape, nulls included.
type simErrorBody struct {
	Type       string  `json:"type"`
	Code       *string `json:"code"`
	Desc       string  `json:"description"`
	DocURL     string  `json:"docURL"`
	StatusCode int     `json:"statusCode"`
	RequestID  string  `json:"requestId"`
	Resolution struct {
		Type *string `json:"type"`
	} `json:"resolution"`
	SuggestedUserMessage string `json:"suggestedUserMessage,omitempty"`
}

func (s *Simulator) writeError(w http.ResponseWriter, r *http.Request, status int, typ, code string, retryAfter time.Duration) {
	reqID, _ := r.Context().Value(requestIDKey{}).(string)
	b := simErrorBody{Type: typ, StatusCode: status, RequestID: reqID}
	key := typ
	doc := "https://smartcar.com/docs/errors/api-errors/" + strings.ToLower(strings.ReplaceAll(typ, "_", "-")) + "-errors"
	if code != "" {
		b.Code = &code
		key += ":" + code
		doc += "#" + strings.ToLower(strings.ReplaceAll(code, "_", "-"))
	}
	b.DocURL = doc
	b.Desc = simDescription(key)
	if b.Desc == "" {
		b.Desc = simDescription(typ)
	}
	if b.Desc == "" {
		b.Desc = "Simulated " + key + " error."
	}
	if res := simResolution(typ); res != "" {
		b.Resolution.Type = &res
	}
	if typ == TypeVehicleState || typ == TypeRateLimit || typ == TypeUpstream {
		b.SuggestedUserMessage = "Your car is temporarily unable to connect. Please try again later."
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(retryAfter))
	}
	writeJSON(w, status, b)
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// handleToken serves the refresh_token and authorization_code grants.
// Every grant rotates the refresh token; a used one is refused once
// RefreshGrace has passed since its first use.
func (s *Simulator) handleToken(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if ok {
		// RFC 6749 §2.3.1: Basic credentials are form-urlencoded first.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
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
			writeOAuthError(w, http.StatusBadRequest, CodeInvalidGrant, "The refresh token is invalid, expired or already used.")
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
			writeOAuthError(w, http.StatusBadRequest, CodeInvalidGrant, "The authorization code is invalid, expired or already used.")
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
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":       at,
		"token_type":         "Bearer",
		"expires_in":         int64(s.opts.AccessTTL / time.Second),
		"refresh_token":      rt,
		"refresh_expires_in": int64(simRefreshTTL / time.Second),
	})
}

// handleAuthorize is a minimal Connect: the user approves at once (or denies,
// with DenyConnect) and is redirected to redirect_uri with a code, or with
// error and error_description, plus the caller's state. Like Connect, it
// shows an error page instead of redirecting when the request itself is
// wrong: an OAuth server never redirects to an address it cannot trust.
func (s *Simulator) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.opts.ClientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "" || redirect.Fragment != "" {
		http.Error(w, "invalid redirect_uri", http.StatusBadRequest)
		return
	}
	if q.Get("response_type") != "code" {
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	}
	if m := q.Get("mode"); m != "" && m != "live" && m != "simulated" && m != "test" {
		http.Error(w, "mode must be live, simulated or test", http.StatusBadRequest)
		return
	}
	if p := q.Get("approval_prompt"); p != "" && p != "auto" && p != "force" {
		http.Error(w, "approval_prompt must be auto or force", http.StatusBadRequest)
		return
	}
	rq := redirect.Query()
	if s.opts.DenyConnect {
		rq.Set("error", "access_denied")
		rq.Set("error_description", "User denied access to application.")
	} else {
		code := "sim-code-" + randomHex(8)
		s.mu.Lock()
		s.codes[code] = q.Get("redirect_uri")
		s.mu.Unlock()
		rq.Set("code", code)
	}
	if st := q.Get("state"); st != "" {
		rq.Set("state", st)
	}
	redirect.RawQuery = rq.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// authed requires a known, unexpired bearer token.
func (s *Simulator) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		exp, known := s.access[tok]
		valid := ok && known && s.opts.Now().Before(exp)
		s.mu.Unlock()
		if !valid {
			s.writeError(w, r, http.StatusUnauthorized, TypeAuthentication, "", 0)
			return
		}
		h(w, r)
	}
}

// vehicle returns a snapshot of the vehicle in the path, after checking it
// exists and that perm is granted; it has answered the request if !ok.
func (s *Simulator) vehicle(w http.ResponseWriter, r *http.Request, perm string) (simVehicle, bool) {
	s.mu.Lock()
	v, ok := s.vehicles[r.PathValue("id")]
	var snap simVehicle
	if ok {
		snap = *v
		snap.perms = slices.Clone(v.perms)
	}
	s.mu.Unlock()
	if !ok {
		s.writeError(w, r, http.StatusNotFound, TypeResourceNotFound, "PATH", 0)
		return simVehicle{}, false
	}
	if perm != "" && !slices.Contains(snap.perms, perm) {
		s.writeError(w, r, http.StatusForbidden, TypePermission, "", 0)
		return simVehicle{}, false
	}
	return snap, true
}

// pageParams reads limit/offset as Smartcar does: limit 1..50, default 10.
func (s *Simulator) pageParams(w http.ResponseWriter, r *http.Request) (limit, offset int, ok bool) {
	limit, offset = 10, 0
	var err error
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 50 {
			s.writeError(w, r, http.StatusBadRequest, TypeValidation, "INVALID_INPUT_FORMAT", 0)
			return 0, 0, false
		}
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			s.writeError(w, r, http.StatusBadRequest, TypeValidation, "INVALID_INPUT_FORMAT", 0)
			return 0, 0, false
		}
	}
	return limit, offset, true
}

func page(all []string, limit, offset int) []string {
	if offset >= len(all) {
		return []string{}
	}
	return all[offset:min(offset+limit, len(all))]
}

func (s *Simulator) handleVehicles(w http.ResponseWriter, r *http.Request) {
	limit, offset, ok := s.pageParams(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	all := slices.Clone(s.order)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"vehicles": page(all, limit, offset),
		"paging":   paging{Count: len(all), Offset: offset},
	})
}

func (s *Simulator) handleVehicle(w http.ResponseWriter, r *http.Request) {
	v, ok := s.vehicle(w, r, PermReadVehicleInfo)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, v.info)
}

func (s *Simulator) handlePermissions(w http.ResponseWriter, r *http.Request) {
	limit, offset, ok := s.pageParams(w, r)
	if !ok {
		return
	}
	v, ok := s.vehicle(w, r, "")
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"permissions": page(v.perms, limit, offset),
		"paging":      paging{Count: len(v.perms), Offset: offset},
	})
}

func (s *Simulator) handleTeslaCharge(w http.ResponseWriter, r *http.Request) {
	v, ok := s.vehicle(w, r, PermReadCharge)
	if !ok {
		return
	}
	if !strings.EqualFold(v.info.Make, "TESLA") {
		s.writeError(w, r, http.StatusNotImplemented, TypeCompatibility, "MAKE_NOT_COMPATIBLE", 0)
		return
	}
	writeJSON(w, http.StatusOK, simCharge(v))
}

// simCharge is the tesla/charge body for a car that charges at 32 A / 240 V
// whenever it is plugged in.
func simCharge(v simVehicle) map[string]any {
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
	v, ok := s.vehicle(w, r, "")
	if !ok {
		return
	}
	if !strings.EqualFold(v.info.Make, "TESLA") {
		s.writeError(w, r, http.StatusNotImplemented, TypeCompatibility, "MAKE_NOT_COMPATIBLE", 0)
		return
	}
	if !slices.Contains(v.perms, PermControlCharge) {
		s.writeError(w, r, http.StatusForbidden, TypePermission, "", 0)
		return
	}
	if r.PathValue("make") != "tesla" {
		s.writeError(w, r, http.StatusNotFound, TypeResourceNotFound, "PATH", 0)
		return
	}
	var body struct {
		Action Action `json:"action"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !body.Action.Valid() {
		s.writeError(w, r, http.StatusBadRequest, TypeValidation, "INVALID_INPUT_FORMAT", 0)
		return
	}
	open := body.Action == Open
	if !open && v.plugged {
		s.writeError(w, r, http.StatusConflict, TypeVehicleState, "CHARGING_PLUG_CONNECTED", 0)
		return
	}
	if d := s.opts.Latency; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			if s.opts.CompleteOnCancel {
				s.SetChargePortOpen(v.info.ID, open)
			}
			return
		}
	}
	s.SetChargePortOpen(v.info.ID, open)
	writeJSON(w, http.StatusOK, map[string]string{
		"status":  "success",
		"message": "Successfully sent request to vehicle",
	})
}

// statusRecorder remembers the status written, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return hex.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
