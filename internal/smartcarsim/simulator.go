// Package smartcarsim simulates the Smartcar cloud API for tests and the
// demo: the legacy API v2.0 (per-user OAuth tokens, /v2.0/vehicles/...) and
// API v3 (one application token, the user in the sc-user-id header,
// JSON:API documents under /v3), both OAuth token endpoints and Connect.
//
// It deliberately imports nothing of this project: every body it reads or
// writes has its own struct here, with its own JSON tags and string literals
// for error types, permission names and headers. Were the simulator to reuse
// the client's types, a wrong tag would be wrong on both sides and every test
// would still pass.
package smartcarsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Vehicles (and their user) the Simulator always starts with.
const (
	// TeslaID is a 2021 Tesla Model 3 granting read_vehicle_info,
	// read_charge and control_charge: everything the daemon uses.
	TeslaID = "5f7a3f3e-0a1b-4c2d-9e8f-7a6b5c4d3e21"
	// OtherID is a 2022 Ford Mustang Mach-E granting the same and
	// read_battery. Smartcar has no charge port door command for it: the
	// command answers 501 COMPATIBILITY.
	OtherID = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
	// UserID is the Smartcar user who connected both default vehicles; v3
	// requests about them must name this user in sc-user-id.
	UserID = "0b6f1f2a-7c3d-4e58-9a1b-6d2e4f8a0c37"
)

// Permission names as Smartcar spells them.
const (
	permReadVehicleInfo = "read_vehicle_info"
	permReadCharge      = "read_charge"
	permControlCharge   = "control_charge"
)

// Header names. Go canonicalises them (Sc-Request-Id), and HTTP header
// names are case-insensitive, so "SC-Request-Id", which v2 clients look
// for, is this same header.
const (
	headerRequestID = "sc-request-id"
	headerUserID    = "sc-user-id"
)

// Vehicle is a simulated car and the user whose Connect gave access to it.
type Vehicle struct {
	ID, UserID, Make, Model string // UserID "" means the package's UserID
	Year                    int
}

// Options configures a Simulator.
type Options struct {
	// ClientID and ClientSecret are the v2 OAuth client: POST /oauth/token
	// checks them as HTTP Basic credentials, v2 Connect checks client_id.
	ClientID, ClientSecret string
	// APIClientID and APIClientSecret are the v3 API credentials for the
	// client_credentials grant at POST /oauth2/token. Empty ones never
	// authenticate.
	APIClientID, APIClientSecret string
	// ApplicationID is the client_id of v3 Connect.
	ApplicationID string

	AccessTTL   time.Duration // v2 access token lifetime, default 2h
	AppTokenTTL time.Duration // v3 application token lifetime, default 1h

	Latency time.Duration // added to vehicle commands, default 0
	Now     func() time.Time

	// CompleteOnCancel makes a command whose client gave up during Latency
	// still move the door, as a real car may: the case where a timed-out
	// POST must not be re-sent blindly.
	CompleteOnCancel bool

	// RefreshGrace keeps a used v2 refresh token redeemable for this long
	// after its first use, as Smartcar does (the old one dies a minute after
	// use): a client that crashed before saving the new pair can retry with
	// the old one. 0 refuses any reuse, the strictest server.
	RefreshGrace time.Duration

	// DenyConnect makes GET /oauth/authorize answer as if the user pressed
	// "Deny access": a redirect with error=access_denied.
	DenyConnect bool

	// Async makes v3 door commands answer 202 at once with a PENDING
	// command execution, then, after Latency, stream the final one in the
	// same body: the shape of a command the car takes its time over.
	Async bool
}

// Fault makes matching requests fail. The body follows the path: the OAuth
// body on the token endpoints (or anywhere with Type "OAUTH"), the v3 error
// envelope under /v3/, the v2.0 error body elsewhere.
//
// On a v3 command path, a fault with Status 200 or 202 (and no RawBody) is
// not an HTTP failure: the command is accepted and runs as usual, but ends
// FAILED with Type and Code (default VEHICLE_STATE ASLEEP) in the
// command-execution document instead of moving the door.
type Fault struct {
	Method     string        // "" matches any method
	Path       string        // suffix match on the URL path, e.g. "/charge/charge_port_door"; "" matches any
	Status     int           // HTTP status, e.g. 409; 0 means 500
	Type, Code string        // default from Status (409 → VEHICLE_STATE ASLEEP …)
	RetryAfter time.Duration // sent as Retry-After seconds
	Times      int           // 0 = once; n > 0 = n times; < 0 = until ClearFaults
	RawBody    string        // if set, sent as text/plain instead of a JSON error body
}

// Request is one request the Simulator received, in arrival order.
type Request struct {
	Method, Path, Query, Body string
	Authorization, UserAgent  string
	RequestID                 string    // the sc-request-id sent back
	UserID                    string    // the sc-user-id header
	Status                    int       // 0 while in flight; 499 if the client went away
	At                        time.Time // arrival, from Options.Now, so tests can check waits
}

// Simulator is an http.Handler speaking Smartcar's documented shapes. Tests
// run it over httptest, the demo on a local listener. It is safe for
// concurrent use.
type Simulator struct {
	opts Options
	mux  *http.ServeMux

	mu sync.Mutex
	// wait spends Options.Latency for a command and reports whether the
	// client was still there at the end. Tests in this package replace it
	// to release a command on cue instead of sleeping.
	wait func(ctx context.Context) bool

	refresh   map[string]time.Time // v2 refresh token → first use; zero = unused
	access    map[string]time.Time // v2 access token → expiry
	appTokens map[string]time.Time // v3 application token → expiry
	codes     map[string]string    // v2 authorization code → redirect_uri
	vehicles  map[string]*vehicle
	order     []string        // vehicle ids in insertion order
	queued    []queuedConnect // what the next v3 Connects connect
	faults    []*Fault
	log       []Request
	changed   chan struct{} // closed and replaced whenever log changes
	v2Retired bool
	altBodies bool
	// webhook is where SetWebhook sends deliveries (nil: none), and
	// deliveries what was sent there.
	webhook    *webhookTarget
	deliveries []WebhookDelivery
}

// vehicle is a Vehicle with its grants and state.
type vehicle struct {
	info        Vehicle // UserID always set
	perms       []string
	open        bool
	plugged     bool
	connectedAt time.Time            // when the connection was made, for v3 createdAt
	updatedAt   time.Time            // the car's last state change, for oemUpdatedAt
	signalErrs  map[string]signalErr // signal code → the error it reports
	noData      int                  // SetNoData's status; 0 = normal
}

type signalErr struct{ typ, code string }

type queuedConnect struct {
	v     Vehicle
	perms []string
}

// New returns a simulator holding TeslaID and OtherID, connected by UserID.
func New(opts Options) *Simulator {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 2 * time.Hour
	}
	if opts.AppTokenTTL <= 0 {
		opts.AppTokenTTL = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Simulator{
		opts:      opts,
		mux:       http.NewServeMux(),
		refresh:   map[string]time.Time{},
		access:    map[string]time.Time{},
		appTokens: map[string]time.Time{},
		codes:     map[string]string{},
		vehicles:  map[string]*vehicle{},
		changed:   make(chan struct{}),
	}
	s.wait = s.sleepLatency
	s.AddVehicle(Vehicle{ID: TeslaID, Make: "TESLA", Model: "Model 3", Year: 2021},
		[]string{permReadVehicleInfo, permReadCharge, permControlCharge})
	s.AddVehicle(Vehicle{ID: OtherID, Make: "FORD", Model: "Mustang Mach-E", Year: 2022},
		[]string{permReadVehicleInfo, permReadCharge, permControlCharge, "read_battery"})
	s.routeV2()
	s.routeV3()
	s.mux.HandleFunc("GET /oauth/authorize", s.handleAuthorize)
	// The demo's knob: plug the simulated car in or out, as a user would at the car.
	s.mux.HandleFunc("POST /simulator/vehicles/{id}/plug", s.handlePlug(true))
	s.mux.HandleFunc("POST /simulator/vehicles/{id}/unplug", s.handlePlug(false))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeV2Error(w, r, http.StatusNotFound, "RESOURCE_NOT_FOUND", "PATH", 0)
	})
	return s
}

// AddVehicle adds (or replaces) a vehicle and its connection with the given
// permissions, e.g. to test paging over many vehicles. v2 sees every
// vehicle; v3 sees it as connected by v.UserID.
func (s *Simulator) AddVehicle(v Vehicle, permissions []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(v, permissions)
}

// Grant adds a v3 connection at once, as if a user completed Connect on a
// phone. It is AddVehicle under the name a v3 test reads best.
func (s *Simulator) Grant(v Vehicle, permissions []string) { s.AddVehicle(v, permissions) }

func (s *Simulator) addLocked(v Vehicle, permissions []string) {
	if v.UserID == "" {
		v.UserID = UserID
	}
	if _, ok := s.vehicles[v.ID]; !ok {
		s.order = append(s.order, v.ID)
	}
	now := s.opts.Now()
	s.vehicles[v.ID] = &vehicle{info: v, perms: slices.Clone(permissions), connectedAt: now, updatedAt: now}
}

// RemoveVehicle removes a vehicle and its connection, as if the user
// disconnected it.
func (s *Simulator) RemoveVehicle(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.vehicles, id)
	s.order = slices.DeleteFunc(s.order, func(o string) bool { return o == id })
}

// QueueConnect makes the next v3 Connect approval connect v with these
// permissions (v.ID "" gets a fresh id). Without one queued, Connect
// connects a fresh 2024 Tesla Model Y for a fresh user.
func (s *Simulator) QueueConnect(v Vehicle, permissions []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued = append(s.queued, queuedConnect{v: v, perms: slices.Clone(permissions)})
}

// SetPermissions replaces what the owner granted for a vehicle.
func (s *Simulator) SetPermissions(vehicleID string, permissions ...string) {
	s.withVehicle(vehicleID, func(v *vehicle) { v.perms = slices.Clone(permissions) })
}

// IssueRefreshToken returns a fresh v2 refresh token, as if a user had just
// completed v2 Connect.
func (s *Simulator) IssueRefreshToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := "sim-rt-" + randomHex(16)
	s.refresh[rt] = time.Time{}
	return rt
}

// InjectFault makes the next matching request(s) fail. Faults are checked
// before anything else (authentication, RetireV2), in the order injected.
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

// RetireV2 makes every /v2.0 API request answer 410, as Smartcar will once
// v2.0 is switched off. The v2 token endpoint and Connect keep working: a
// client must notice from the API answer.
func (s *Simulator) RetireV2(retired bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v2Retired = retired
}

// SetSignalError makes a vehicle's v3 signal report status ERROR with this
// type and code, its last body still present (stale), as Smartcar reports a
// signal the car could not refresh. Empty type and code clear it.
func (s *Simulator) SetSignalError(vehicleID, signalCode, errType, errCode string) {
	s.withVehicle(vehicleID, func(v *vehicle) {
		if errType == "" && errCode == "" {
			delete(v.signalErrs, signalCode)
			return
		}
		if v.signalErrs == nil {
			v.signalErrs = map[string]signalErr{}
		}
		v.signalErrs[signalCode] = signalErr{typ: errType, code: errCode}
	})
}

// SetNoData makes a vehicle's v3 signal reads find nothing, as for a car
// that has not reported yet: 404 answers a 404 error envelope, 200 an empty
// signal list (a single signal is then 404). 0 restores normal answers.
func (s *Simulator) SetNoData(vehicleID string, status int) {
	s.withVehicle(vehicleID, func(v *vehicle) { v.noData = status })
}

// SetAltBodies switches v3 signals to their second documented body forms
// (e.g. {"isOpen":true} for the door, an ISO-8601 oemUpdatedAt), so a client
// can be tested against both.
func (s *Simulator) SetAltBodies(alt bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.altBodies = alt
}

// Requests returns every request received so far, in arrival order.
func (s *Simulator) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// WaitRequest blocks until a logged request satisfies match (one already
// logged counts) or ctx ends. It lets tests wait on an event instead of
// sleeping. A request is logged on arrival, with Status 0 until answered.
func (s *Simulator) WaitRequest(ctx context.Context, match func(Request) bool) (Request, error) {
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
			return Request{}, ctx.Err()
		}
	}
}

// ChargePortOpen reports the car's real door state.
func (s *Simulator) ChargePortOpen(vehicleID string) bool {
	var open bool
	s.withVehicle(vehicleID, func(v *vehicle) { open = v.open })
	return open
}

// SetChargePortOpen moves the door as if someone pressed it at the car.
func (s *Simulator) SetChargePortOpen(vehicleID string, open bool) {
	s.withVehicle(vehicleID, func(v *vehicle) { s.moveDoorLocked(v, open) })
}

// SetPluggedIn plugs or unplugs the cable. A cable needs an open door, so
// plugging in opens it; unplugging leaves the door as it is.
func (s *Simulator) SetPluggedIn(vehicleID string, plugged bool) {
	s.withVehicle(vehicleID, func(v *vehicle) {
		v.plugged = plugged
		if plugged {
			v.open = true
		}
		v.updatedAt = s.opts.Now()
	})
}

func (s *Simulator) moveDoorLocked(v *vehicle, open bool) {
	v.open = open
	v.updatedAt = s.opts.Now()
}

func (s *Simulator) moveDoor(id string, open bool) {
	s.withVehicle(id, func(v *vehicle) { s.moveDoorLocked(v, open) })
}

func (s *Simulator) withVehicle(id string, f func(*vehicle)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vehicles[id]; ok {
		f(v)
	}
}

// snapshot returns a copy of a vehicle that the caller may read unlocked.
func (s *Simulator) snapshot(id string) (vehicle, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vehicles[id]
	if !ok {
		return vehicle{}, false
	}
	c := *v
	c.perms = slices.Clone(v.perms)
	c.signalErrs = maps.Clone(v.signalErrs)
	return c, true
}

// ServeHTTP logs the request, gives it a request id, applies any matching
// fault, and otherwise routes it.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	reqID := newUUID()
	w.Header().Set(headerRequestID, reqID)
	ctx := context.WithValue(r.Context(), requestIDKey{}, reqID)

	idx := s.record(Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.RawQuery,
		Body:          string(body),
		Authorization: r.Header.Get("Authorization"),
		UserAgent:     r.Header.Get("User-Agent"),
		RequestID:     reqID,
		UserID:        r.Header.Get(headerUserID),
		At:            s.opts.Now(),
	})
	rec := &statusRecorder{ResponseWriter: w}
	f, faulted := s.takeFault(r)
	switch {
	case faulted && isCommandOutcome(f, r):
		s.mux.ServeHTTP(rec, r.WithContext(context.WithValue(ctx, outcomeKey{}, f)))
	case faulted:
		writeFault(rec, r.WithContext(ctx), f)
	case s.isV2Retired() && isV2API(r.URL.Path):
		writeV2Error(rec, r.WithContext(ctx), http.StatusGone, "RESOURCE_NOT_FOUND", "VERSION", 0)
	default:
		s.mux.ServeHTTP(rec, r.WithContext(ctx))
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
		if ctx.Err() != nil {
			status = 499 // client closed request
		}
	}
	s.finish(idx, status)
}

func (s *Simulator) isV2Retired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v2Retired
}

func isV2API(path string) bool { return path == "/v2.0" || strings.HasPrefix(path, "/v2.0/") }

// handlePlug is not part of Smartcar's API: it stands for the user at the car.
func (s *Simulator) handlePlug(plugged bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, ok := s.snapshot(id); !ok {
			http.Error(w, "no such vehicle", http.StatusNotFound)
			return
		}
		s.SetPluggedIn(id, plugged)
		fmt.Fprintf(w, "vehicle %s plugged in: %v\n", id, plugged)
		s.afterPlug(w, r, id)
	}
}

type requestIDKey struct{}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

func (s *Simulator) record(req Request) int {
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

// waitLatency runs a command's wait.
func (s *Simulator) waitLatency(ctx context.Context) bool {
	s.mu.Lock()
	wait := s.wait
	s.mu.Unlock()
	return wait(ctx)
}

// sleepLatency is the real wait: Options.Latency, cut short if the client
// goes away.
func (s *Simulator) sleepLatency(ctx context.Context) bool {
	d := s.opts.Latency
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
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

// Flush lets a streamed v3 command push its PENDING document out at once.
func (r *statusRecorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	http.NewResponseController(r.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

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
