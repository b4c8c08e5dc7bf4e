package smartcar

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// How ConnectV3 watches /connections for the new car: often at first (a
// user on a phone is done within a minute), then rarely, and not for ever.
// Smartcar's application bucket holds 120 requests and refills at 2 a
// minute; this schedule spends at most 40 in 15 minutes.
const (
	connectFastPoll   = 5 * time.Second
	connectFastPhase  = time.Minute
	connectSlowPoll   = 30 * time.Second
	DefaultConnectFor = 15 * time.Minute
)

// ConnectPollInterval is how long to wait before the next look at
// /connections, elapsed after the Connect link was shown.
func ConnectPollInterval(elapsed time.Duration) time.Duration {
	if elapsed < connectFastPhase {
		return connectFastPoll
	}
	return connectSlowPoll
}

// ConnectV3 is Smartcar Connect for API v3, the `auth` command: it prints the
// Connect link and waits for the new connection. There is no code to
// exchange: the application token already reaches every connected car. It
// finishes on whichever comes first: the browser coming back to a local
// redirect URI (served only when it names localhost or 127.0.0.1, with
// `state` checked), or a car in /connections that was not there when it
// started. So a headless server needs no tunnel: the link works on a phone.
type ConnectV3 struct {
	ApplicationID string // Connect's client_id
	ConnectURL    string
	RedirectURI   string
	Mode          string // live (default), simulated or test
	Client        *Client
	// Out receives the link and progress; nil discards them. Never a secret.
	Out io.Writer
	// Listen overrides the callback's bind address (":8000" in a container).
	Listen string
	// Interval and For shape the watch on /connections; ConnectPollInterval
	// and DefaultConnectFor when zero.
	Interval func(elapsed time.Duration) time.Duration
	For      time.Duration
}

// Connected is what ConnectV3 saw once the car was connected.
type Connected struct {
	UserID   string           // from the redirect; "" when polling found the car first
	New      []VehicleDetails // cars not connected before
	Vehicles []VehicleDetails // the whole listing that showed them, for the vehicle cache
}

// URL is the Connect link carrying state: response_type=code, client_id (the
// Application ID), redirect_uri, the scopes the daemon uses, state and mode.
func (c ConnectV3) URL(state string) (string, error) {
	if c.ApplicationID == "" {
		return "", errors.New("smartcar connect: no Application ID (SMARTCAR_APPLICATION_ID, from the Smartcar dashboard)")
	}
	mode := c.Mode
	if mode == "" {
		mode = "live"
	}
	if !slices.Contains([]string{"live", "simulated", "test"}, mode) {
		return "", fmt.Errorf("smartcar connect: mode %q: want live, simulated or test", mode)
	}
	u, err := url.Parse(c.ConnectURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("smartcar connect: Connect URL %q is not a URL", c.ConnectURL)
	}
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", c.ApplicationID)
	q.Set("redirect_uri", c.RedirectURI)
	q.Set("scope", DefaultScope)
	q.Set("state", state)
	q.Set("mode", mode)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Run performs the flow. It fails if the first listing fails, on an error
// redirect (the user denied access: an *Error of type TypeConnect), when no
// new connection appears in time, or when ctx ends.
func (c ConnectV3) Run(ctx context.Context) (Connected, error) {
	if c.Client == nil {
		return Connected{}, errors.New("smartcar connect: no API client")
	}
	state, err := newState()
	if err != nil {
		return Connected{}, fmt.Errorf("smartcar connect: %w", err)
	}
	link, err := c.URL(state)
	if err != nil {
		return Connected{}, err
	}
	before, err := c.Client.Vehicles(ctx, nil)
	if err != nil {
		return Connected{}, fmt.Errorf("smartcar connect: %w", err)
	}
	out := &lockedWriter{w: c.Out}

	redirects := make(chan callbackOutcome, 1)
	where := "Smartcar to list the new car"
	if stop, addr, err := c.serveCallback(state, out, redirects); err != nil {
		out.printf("Note: %v; waiting for the new connection at Smartcar instead.\n", err)
	} else if stop != nil {
		defer stop()
		where = fmt.Sprintf("the browser to come back to %s (listening on %s), or for Smartcar to list the new car", c.RedirectURI, addr)
	}
	out.printf("Open this link in a browser (on any device, a phone will do) and connect the car in Smartcar Connect:\n\n  %s\n\nWaiting for %s; Ctrl-C to give up ...\n", link, where)
	return c.wait(ctx, before, redirects, out)
}

// wait watches /connections for a car not in before, or for the redirect's
// outcome, on the schedule of Interval and For.
func (c ConnectV3) wait(ctx context.Context, before []VehicleDetails, redirects <-chan callbackOutcome, out *lockedWriter) (Connected, error) {
	limit := c.For
	if limit <= 0 {
		limit = DefaultConnectFor
	}
	interval := c.Interval
	if interval == nil {
		interval = ConnectPollInterval
	}
	start := time.Now()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	var userID string
	wait := time.NewTimer(interval(0))
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return Connected{}, fmt.Errorf("smartcar connect: gave up waiting for the new connection: %w", ctx.Err())
		case <-deadline.C:
			return Connected{}, fmt.Errorf("smartcar connect: %w", &ConnectTimeoutError{After: limit})
		case r := <-redirects:
			if r.err != nil {
				return Connected{}, r.err
			}
			userID = r.userID
			out.printf("Smartcar Connect finished for user %s; listing the vehicles ...\n", userID)
		case <-wait.C:
		}
		now, err := c.Client.Vehicles(ctx, nil)
		var e *Error
		switch {
		case err == nil:
			if fresh := newVehicles(before, now, userID); len(fresh) > 0 {
				return Connected{UserID: userID, New: fresh, Vehicles: now}, nil
			}
		case IsLoginRefused(err) || ctx.Err() != nil:
			return Connected{}, fmt.Errorf("smartcar connect: %w", err)
		case errors.As(err, &e) && e.RetryAfter > 0:
			// The application's bucket is empty: wait as long as asked, so
			// the daemon (sharing the bucket) keeps its calls.
			wait.Reset(e.RetryAfter)
			continue
		default:
			out.printf("Listing the connections failed (%v); trying again.\n", err)
		}
		wait.Reset(interval(time.Since(start)))
	}
}

// ConnectTimeoutError is Connect that saw no new connection in time.
type ConnectTimeoutError struct{ After time.Duration }

func (e *ConnectTimeoutError) Error() string {
	return fmt.Sprintf("no new connection appeared within %s; connect again", e.After)
}

// newVehicles are the connections in now that were not in before; once the
// redirect named the user, that user's cars (a user who connected again, to
// grant more permissions, has no new connection but is done).
func newVehicles(before, now []VehicleDetails, userID string) []VehicleDetails {
	var out []VehicleDetails
	for _, v := range now {
		seen := slices.ContainsFunc(before, func(b VehicleDetails) bool { return b.ID == v.ID && b.UserID == v.UserID })
		if userID != "" && v.UserID == userID || userID == "" && !seen {
			out = append(out, v)
		}
	}
	return out
}

type callbackOutcome struct {
	userID string
	err    error
}

// serveCallback serves the redirect URI when it names this machine; it
// returns nil stop when the redirect goes elsewhere (a phone could not reach
// it anyway).
func (c ConnectV3) serveCallback(state string, out *lockedWriter, redirects chan<- callbackOutcome) (stop func(), addr string, err error) {
	u, err := url.Parse(c.RedirectURI)
	if err != nil || u.Scheme != "http" || !isLoopbackName(u.Hostname()) {
		return nil, "", nil
	}
	path, addr, _, err := callbackTarget(c.RedirectURI)
	if err != nil {
		return nil, "", err
	}
	if c.Listen != "" {
		addr = c.Listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("cannot serve the redirect URI on %s: %w", addr, err)
	}
	h := &v3Callback{path: path, state: state, out: out, result: redirects}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: callbackReadTimeout, ReadTimeout: callbackReadTimeout,
		WriteTimeout: callbackReadTimeout, IdleTimeout: callbackIdleTimeout}
	go srv.Serve(ln)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), callbackShutdown)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}, ln.Addr().String(), nil
}

func isLoopbackName(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// v3Callback answers the browser Connect sends back: user_id (or userId)
// and state, or error and error_description.
type v3Callback struct {
	path   string
	state  string
	out    *lockedWriter
	result chan<- callbackOutcome // buffered 1
}

func (h *v3Callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q, ok := redirectQuery(w, r, h.path, h.state, h.out)
	if !ok {
		return
	}
	var res callbackOutcome
	if code := q.Get("error"); code != "" {
		e := &Error{Type: TypeConnect, Code: printable(code, maxCallbackText, "…"), Description: printable(q.Get("error_description"), maxCallbackText, "…")}
		h.out.printf("Smartcar Connect did not grant access (%s: %s).\n", e.Code, e.Description)
		renderPage(w, http.StatusOK, "Smartcar did not grant access", "Nothing was connected. Run smartcar2mqtt auth again and approve the permissions to connect a vehicle.")
		res.err = fmt.Errorf("smartcar connect: %w", e)
	} else {
		res.userID = printable(cmp.Or(q.Get("user_id"), q.Get("userId")), maxCallbackText, "")
		renderPage(w, http.StatusOK, "Vehicle connected", "Smartcar connected the car. smartcar2mqtt lists it now; you can close this tab.")
	}
	select {
	case h.result <- res:
	default: // an outcome is already waiting; the first one decides
	}
}
