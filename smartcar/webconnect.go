package smartcar

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// ConnectPhase is where a Connect started from the web page stands.
type ConnectPhase string

const (
	ConnectIdle      ConnectPhase = ""          // no flow yet
	ConnectWaiting   ConnectPhase = "waiting"   // the link is out; waiting for Smartcar
	ConnectConnected ConnectPhase = "connected" // the new car is known
	ConnectFailed    ConnectPhase = "failed"
)

// ConnectState is a snapshot of the web page's Connect flow. It holds no
// secret: the link's state is a single-use nonce of this flow.
type ConnectState struct {
	Phase   ConnectPhase
	Started time.Time
	Link    string // the Connect link while waiting
	// NeedsAddress: API v2.0 needs the address the browser ended on, whose
	// code is exchanged for the login (API v3 has nothing to exchange).
	NeedsAddress bool
	// New, once connected: the cars this flow connected; for API v2.0,
	// those the first listing with its login shows (see Listed).
	New     []VehicleDetails
	Problem string // failed: what went wrong, in words
}

// restartGuard is how soon a second Start reuses the flow already waiting
// instead of beginning another: a double click must not cost a listing.
const restartGuard = 10 * time.Second

// startTimeout bounds what Start may ask Smartcar: the page waits for it.
const startTimeout = 30 * time.Second

// WebConnect runs Smartcar Connect for the daemon's web page, one flow at a
// time: Start gives the link to open, State tells the page how it stands.
// For API v3 it watches /connections as `auth` does; for API v2.0 Finish
// takes the address the browser ended on and exchanges its code. Connected
// is called with what the flow found, before State says so, so the page
// shows a car only once the daemon has it.
type WebConnect struct {
	ctx       context.Context // flows end with it
	v3        *ConnectV3
	v2        *Connect
	before    func(ctx context.Context) ([]VehicleDetails, error)
	connected func(ctx context.Context, c Connected) error

	mu      sync.Mutex
	state   ConnectState
	changed chan struct{} // closed when state changes, then replaced
	flow    *flow         // the latest flow, waiting or ended; nil before the first
	// naming is the API v2.0 flow whose login is new and whose cars are
	// not known yet: Listed names them.
	naming *flow

	joined func() // tests: a Finish is waiting for the exchange another Finish began
}

// flow is one Connect, from Start to its end.
type flow struct {
	secret string             // its state parameter
	cancel context.CancelFunc // stops its watcher (API v3)
	// claimed: a Finish has taken its address, and only that Finish
	// exchanges the code, which Smartcar accepts once.
	claimed bool
	done    chan struct{} // closed once it has ended
	err     error         // its outcome, once done is closed
	listed  []VehicleDetails
}

func (f *flow) ended() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// NewWebConnectV3 serves Connect for API v3. before is what is connected
// already, taken when a flow starts, before the user can approve anything (the
// vehicle cache costs no call; nil lists the connections); connected keeps
// the listing that showed the new car and tells the daemon.
func NewWebConnectV3(ctx context.Context, c ConnectV3, before func(ctx context.Context) ([]VehicleDetails, error), connected func(ctx context.Context, c Connected) error) *WebConnect {
	if before == nil && c.Client != nil {
		before = func(ctx context.Context) ([]VehicleDetails, error) { return c.Client.Vehicles(ctx, nil) }
	}
	return &WebConnect{ctx: ctx, v3: &c, before: before, connected: connected, changed: make(chan struct{})}
}

// NewWebConnectV2 serves Connect for API v2.0: the code of the pasted
// address is exchanged and the pair saved to c.Store; connected then takes
// the new login and lists its vehicles, and Listed hands that listing back
// so the page names the cars.
func NewWebConnectV2(ctx context.Context, c Connect, connected func(ctx context.Context, c Connected) error) *WebConnect {
	return &WebConnect{ctx: ctx, v2: &c, connected: connected, changed: make(chan struct{})}
}

// Listed is the daemon's first listing with the login an API v2.0 flow has
// just saved: the flow names those cars, as an API v3 flow names the cars
// of its connection. Other listings change nothing. It never blocks long.
func (w *WebConnect) Listed(vs []VehicleDetails) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.naming
	if f == nil {
		return
	}
	w.naming = nil
	f.listed = slices.Clone(vs)
	if f == w.flow && w.state.Phase == ConnectConnected {
		st := w.state
		st.New = f.listed
		w.setState(st)
	} // else end names them once the flow is done
}

// State is the flow as it stands.
func (w *WebConnect) State() ConnectState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Changed is closed once State changes from what it is now: wait on it,
// then ask State again.
func (w *WebConnect) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// setState replaces the state and wakes those waiting on Changed. Callers
// hold mu.
func (w *WebConnect) setState(st ConnectState) {
	w.state = st
	close(w.changed)
	w.changed = make(chan struct{})
}

// Start begins a flow and returns the Connect link to open. A flow already
// waiting is given up, unless it began moments ago: then its link is
// returned again.
func (w *WebConnect) Start() (string, error) {
	w.mu.Lock()
	if w.state.Phase == ConnectWaiting && time.Since(w.state.Started) < restartGuard {
		defer w.mu.Unlock()
		return w.state.Link, nil
	}
	w.mu.Unlock()

	secret, err := newState()
	if err != nil {
		return "", fmt.Errorf("smartcar connect: %w", err)
	}
	var link string
	var before []VehicleDetails
	if w.v3 != nil {
		if link, err = w.v3.URL(secret); err != nil {
			return "", err
		}
		if w.v3.Client == nil || w.before == nil {
			return "", errors.New("smartcar connect: no API client")
		}
		// Known before the link is out: a car approved in the meantime
		// would otherwise count as connected before. Bounded: the page
		// waits for this answer.
		ctx, cancel := context.WithTimeout(w.ctx, startTimeout)
		before, err = w.before(ctx)
		cancel()
		if err != nil {
			return "", fmt.Errorf("smartcar connect: %w", err)
		}
	} else if link, err = w.v2.AuthURL(secret); err != nil {
		return "", err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if old := w.flow; old != nil {
		old.cancel() // the flow this one replaces
	}
	ctx, cancel := context.WithCancel(w.ctx)
	f := &flow{secret: secret, cancel: cancel, done: make(chan struct{})}
	w.flow = f
	w.setState(ConnectState{Phase: ConnectWaiting, Started: time.Now(), Link: link, NeedsAddress: w.v2 != nil})
	if w.v3 != nil {
		go w.watchV3(ctx, f, before)
	}
	return link, nil
}

// watchV3 waits for a connection not in before.
func (w *WebConnect) watchV3(ctx context.Context, f *flow, before []VehicleDetails) {
	c, err := w.v3.wait(ctx, before, nil, &lockedWriter{})
	if err == nil {
		err = w.connected(ctx, c)
	}
	w.end(f, c, err)
}

// ErrNoFlow is Finish without a flow waiting for an address.
var ErrNoFlow = errors.New("no Connect is waiting for an address: press Connect a car first")

// Finish completes an API v2.0 flow with the address the browser ended on
// (…?code=…&state=…). An address of another flow (its state differs) is
// refused and the flow keeps waiting; an error redirect ends the flow. The
// first Finish with the right address claims the flow and its code is
// exchanged once; a second one (a double click) waits for that outcome and
// answers it, as does one after the flow has ended.
func (w *WebConnect) Finish(ctx context.Context, address string) error {
	w.mu.Lock()
	f := w.flow
	w.mu.Unlock()
	if w.v2 == nil || f == nil {
		return ErrNoFlow
	}
	q, err := redirectedQuery(address)
	if err != nil {
		if f.ended() {
			return ErrNoFlow
		}
		return err
	}
	conf, _, err := w.v2.settings()
	if err != nil {
		return err
	}
	if w.v2.Store == nil {
		return errors.New("smartcar connect: no token store")
	}

	w.mu.Lock()
	f = w.flow // Start may have replaced it meanwhile
	mine := subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.secret)) == 1
	switch {
	case !mine && f.ended():
		w.mu.Unlock()
		return ErrNoFlow
	case !mine:
		w.mu.Unlock()
		return errors.New("this address belongs to another Connect (its state does not match): press Connect a car and use the address that flow ends on")
	case f.claimed:
		w.mu.Unlock()
		if w.joined != nil {
			w.joined()
		}
		return w.outcome(ctx, f)
	}
	code := q.Get("code")
	if q.Get("error") == "" && code == "" {
		w.mu.Unlock()
		return errors.New("the address carries no code: paste the whole address the browser ended on after approving")
	}
	f.claimed = true
	st := w.state
	st.NeedsAddress = false // taken: the page stops asking for it
	w.setState(st)
	w.mu.Unlock()

	if e := q.Get("error"); e != "" {
		ce := &Error{Type: TypeConnect, Code: printable(e, maxCallbackText, "…"), Description: printable(q.Get("error_description"), maxCallbackText, "…")}
		w.end(f, Connected{}, fmt.Errorf("smartcar connect: %w", ce))
		return w.outcome(ctx, f)
	}
	// Off the request: a browser that gives up on it (a double click
	// does) must not cut short an exchange that may already have used
	// the code. The token endpoint's client timeout bounds it.
	go w.exchangeV2(f, conf, code)
	return w.outcome(ctx, f)
}

// exchangeV2 turns a claimed flow's code into the login, then tells the daemon.
func (w *WebConnect) exchangeV2(f *flow, conf *oauth2.Config, code string) {
	if _, err := w.v2.exchange(w.ctx, conf, code); err != nil {
		w.end(f, Connected{}, err)
		return
	}
	w.mu.Lock()
	w.naming = f // before connected: the listing it asks for must find it
	w.mu.Unlock()
	err := w.connected(w.ctx, Connected{})
	w.end(f, Connected{}, err)
}

// outcome waits for f to end, or for ctx; an outcome already there wins.
func (w *WebConnect) outcome(ctx context.Context, f *flow) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
	}
	select {
	case <-f.done:
		return f.err
	default:
		return fmt.Errorf("smartcar connect: wait for the code exchange: %w", ctx.Err())
	}
}

// redirectedQuery reads the query of a pasted address: a whole URL, or just
// its query.
func redirectedQuery(address string) (url.Values, error) {
	address = strings.TrimSpace(address)
	if address == "" {
		return nil, errors.New("paste the address the browser ended on")
	}
	if len(address) > 4096 {
		return nil, errors.New("that is not the address Smartcar sent the browser to (too long)")
	}
	raw := address
	if u, err := url.Parse(address); err == nil && u.RawQuery != "" {
		raw = u.RawQuery
	} else {
		raw = strings.TrimPrefix(raw, "?")
	}
	q, err := url.ParseQuery(raw)
	if err != nil || (q.Get("state") == "" && q.Get("code") == "" && q.Get("error") == "") {
		return nil, errors.New("that is not the address Smartcar sent the browser to: it carries no code and no state")
	}
	return q, nil
}

// end records a flow's outcome, on the page unless a newer flow has
// replaced it.
func (w *WebConnect) end(f *flow, c Connected, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f.ended() {
		return
	}
	f.err = err
	close(f.done)
	f.cancel()
	if err != nil && w.naming == f {
		w.naming = nil
	}
	if w.flow != f {
		return
	}
	st := w.state
	st.Link, st.NeedsAddress = "", false
	switch {
	case errors.Is(err, context.Canceled):
		st = ConnectState{} // the daemon is stopping
	case err != nil:
		st.Phase, st.Problem = ConnectFailed, ConnectProblem(err)
	default:
		st.Phase, st.New = ConnectConnected, c.New
		if f.listed != nil {
			st.New = f.listed
		}
	}
	w.setState(st)
}

// ConnectProblem is a failed Connect in a person's words: Smartcar's own
// description where there is one, never a Go error chain.
func ConnectProblem(err error) string {
	var timeout *ConnectTimeoutError
	if errors.As(err, &timeout) {
		return timeout.Error()
	}
	var e *Error
	if errors.As(err, &e) && e.Type == TypeConnect {
		if e.Code == CodeAccessDenied {
			return "Smartcar did not grant access: nothing was connected. Connect again and approve the permissions."
		}
		return fmt.Sprintf("Smartcar Connect ended with %s: %s", e.Code, e.Description)
	}
	if _, transport := describeTransport(err, 0); errors.As(err, &e) || transport {
		f := Describe(err, 0)
		return fmt.Sprintf("%s:%s: %s", f.Type, f.Code, f.Description)
	}
	// Our own refusals (no Application ID, a bad mode) are sentences already.
	return strings.TrimPrefix(err.Error(), "smartcar connect: ")
}
