package smartcar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// DefaultUserAgent is sent when no WithUserAgent option is given. Smartcar,
// like any API provider, should be able to tell who is calling.
const DefaultUserAgent = "smartcar2mqtt/dev"

// DefaultPageSize is the limit asked for on v2.0's paged lists: Smartcar's
// own default, so most accounts need exactly one call.
const DefaultPageSize = 10

// DefaultV3PageSize is the page size asked of v3's /connections: its
// largest, so a listing costs one call for up to 50 cars.
const DefaultV3PageSize = 50

// maxBody bounds how much of a response is read; Smartcar's bodies are small.
const maxBody = 1 << 20

// maxPages stops a server whose paging never ends from looping us forever.
const maxPages = 100

// TokenSource is an oauth2.TokenSource that can be told its current access
// token was refused, so a 401 can force exactly one refresh and one retry.
type TokenSource interface {
	Token() (*oauth2.Token, error)
	Invalidate()
}

// Client calls one generation of the Smartcar API (v3 or v2.0, chosen by its
// constructor; callers need not know which), retrying as do describes. It is
// safe for concurrent use, and meant to be shared: a 429 one caller receives
// holds back the others through the Client's gate.
type Client struct {
	api       generation
	base      string // API root, e.g. https://vehicle.api.smartcar.com/v3, no trailing slash
	tokens    TokenSource
	hc        *http.Client
	userAgent string
	timeout   time.Duration
	pageSize  int
	now       func() time.Time

	backoff      time.Duration // full-jitter base for 500/502/transport retries
	maxRetryWait time.Duration // longest Retry-After one call waits out
	observer     CallObserver  // nil: nobody counts
	gate         gate          // shared 429 holds, per vehicle and app-wide
	userFilter   string        // v3: list only this user's connections
	trace        func(Trace)   // nil: requests are not traced
}

// generation is what differs between API v3 and v2.0: where things are and
// what their bodies look like. The retry, rate-limit and token machinery is
// the Client's, shared by both.
type generation interface {
	version() string
	// vehicles lists the account: the details of the vehicles in only (all
	// when only is empty), and the id of every vehicle on it. A generation
	// that pays a call per vehicle for details may take them from known.
	vehicles(ctx context.Context, c *Client, only []string, known []VehicleDetails) (wanted []VehicleDetails, account []string, err error)
	read(ctx context.Context, c *Client, v Vehicle) (ChargeState, error)
	chargePortDoor(ctx context.Context, c *Client, v Vehicle, a Action) error
}

// API generations, as Client.Version and the vehicle cache name them.
const (
	V3 = "v3"
	V2 = "v2"
)

// Trace is one HTTP exchange with Smartcar, for a debug log line. It never
// holds a token, a secret or a body.
type Trace struct {
	Method, Path string // Path is below the API root, without the query
	Status       int    // 0: no response
	Duration     time.Duration
	RequestID    string
	Err          error // transport failure, if any
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client; its Timeout, if any, still applies on
// top of WithTimeout.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent sent on every request.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithTimeout bounds one API call (SMARTCAR_TIMEOUT), including its retries
// and the waits before them, so a caller knows when it gets an answer.
// Commands can take minutes, so this is applied per call with a context, not
// as a client-wide http.Client timeout. Zero means no bound beyond ctx.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithBackoff sets the full-jitter base for retrying 500/502 and transport
// errors (DefaultBackoff); tests pass something tiny. Zero retries at once.
func WithBackoff(base time.Duration) Option { return func(c *Client) { c.backoff = base } }

// WithMaxRetryWait sets the longest Retry-After one call waits out
// (DefaultMaxRetryWait); a longer one returns the 429 *Error at once.
func WithMaxRetryWait(d time.Duration) Option { return func(c *Client) { c.maxRetryWait = d } }

// WithObserver reports every HTTP request, retries included, to o (e.g. a
// *Usage), so the calls spent are visible.
func WithObserver(o CallObserver) Option { return func(c *Client) { c.observer = o } }

// WithPageSize sets the limit asked for on paged lists.
func WithPageSize(n int) Option { return func(c *Client) { c.pageSize = n } }

// WithUserFilter makes the vehicle list hold only this Smartcar user's cars
// (API v3, SMARTCAR_USER_ID); v2.0 has one user per login and ignores it.
func WithUserFilter(userID string) Option { return func(c *Client) { c.userFilter = userID } }

// WithTrace reports every HTTP exchange to f, e.g. for a debug log line.
func WithTrace(f func(Trace)) Option { return func(c *Client) { c.trace = f } }

// NewV3Client returns a client for API v3 rooted at apiURL (e.g.
// "https://vehicle.api.smartcar.com/v3"), with an application token from
// tokens (see AppTokens) on every request.
func NewV3Client(apiURL string, tokens TokenSource, opts ...Option) *Client {
	return newClient(v3API{}, apiURL, tokens, DefaultV3PageSize, opts)
}

// NewV2Client returns a client for the legacy API v2.0 rooted at apiURL (e.g.
// "https://api.smartcar.com/v2.0"), with the user's access token from tokens
// (see Tokens) on every request.
func NewV2Client(apiURL string, tokens TokenSource, opts ...Option) *Client {
	return newClient(&v2API{}, apiURL, tokens, DefaultPageSize, opts)
}

func newClient(api generation, apiURL string, tokens TokenSource, pageSize int, opts []Option) *Client {
	c := &Client{
		api:       api,
		base:      strings.TrimRight(apiURL, "/"),
		tokens:    tokens,
		hc:        http.DefaultClient,
		userAgent: DefaultUserAgent,
		pageSize:  pageSize,
		now:       time.Now,

		backoff:      DefaultBackoff,
		maxRetryWait: DefaultMaxRetryWait,
	}
	for _, o := range opts {
		o(c)
	}
	if c.pageSize <= 0 {
		c.pageSize = pageSize
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	return c
}

// Version names the API generation this client speaks: V3 or V2.
func (c *Client) Version() string { return c.api.version() }

// List lists the vehicles the application may use, with their make, model,
// year, user and permissions: all of them, or only those in only; and the
// id of every vehicle on the account. v3 reads them from /connections (one
// call per 50 cars); v2.0 lists the ids and asks each wanted vehicle for its
// attributes and permissions.
//
// An id in only that is not on a listed account is a typo, not a car gone:
// that is an *UnknownVehiclesError. An empty account proves nothing (the
// cars may not be connected yet), so it lists no vehicles and no error.
func (c *Client) List(ctx context.Context, only []string) (Listing, error) {
	return c.ListKnowing(ctx, only, nil)
}

// ListKnowing is List for a daily refresh: a vehicle in known keeps its
// details where they cost a call per vehicle (API v2.0's info and
// permissions), so the refresh costs one call for the list, not 1 + 2 per car.
// A listing after Smartcar said what we know is stale passes no known.
func (c *Client) ListKnowing(ctx context.Context, only []string, known []VehicleDetails) (Listing, error) {
	vs, account, err := c.api.vehicles(ctx, c, only, known)
	if err != nil {
		return Listing{}, fmt.Errorf("list vehicles: %w", err)
	}
	if err := checkFilter(only, account); err != nil {
		return Listing{}, err
	}
	return Listing{Vehicles: vs, Account: account}, nil
}

// Vehicles is List's vehicles.
func (c *Client) Vehicles(ctx context.Context, only []string) ([]VehicleDetails, error) {
	l, err := c.List(ctx, only)
	return l.Vehicles, err
}

// Read reads the charge port door and the charge state of v in one call.
func (c *Client) Read(ctx context.Context, v Vehicle) (ChargeState, error) {
	st, err := c.api.read(ctx, c, v)
	if err != nil {
		return ChargeState{}, fmt.Errorf("read charge state of %s: %w", v.ID, err)
	}
	return st, nil
}

// ChargePortDoor opens or closes the charge port door of v. A command
// answered 500, 502 or 503 is sent again (it names a target state, so a
// second one is harmless); after a timeout or a transport error nobody knows
// whether the car acted, so the caller gets the error (OutcomeUnknown says
// so) and should read the state instead of sending it again.
func (c *Client) ChargePortDoor(ctx context.Context, v Vehicle, a Action) error {
	op := "open charge port"
	if a == Close {
		op = "close charge port"
	}
	if !a.Valid() {
		return fmt.Errorf("charge port door: invalid action %q (want OPEN or CLOSE)", a)
	}
	if err := c.api.chargePortDoor(ctx, c, v, a); err != nil {
		return fmt.Errorf("%s of %s: %w", op, v.ID, err)
	}
	return nil
}

// errUnfinishedCommand: the command's answer ended before its outcome.
var errUnfinishedCommand = errors.New("the answer ended before the command finished")

// OutcomeUnknown reports whether a failed command may still have reached the
// car: it timed out, the connection failed once the request was on its way, or
// the answer ended before the outcome. The state should then be read, never the
// command sent again blindly. A failure before the request could leave (no
// name, a refused or timed-out connection, an untrusted one, no login) sent
// nothing, and a cancel is the daemon stopping: neither is unknown.
func OutcomeUnknown(err error) bool {
	var e *Error
	if err == nil || errors.As(err, &e) || errors.Is(err, context.Canceled) || sentNothing(Describe(err, 0)) {
		return false
	}
	if errors.Is(err, errUnfinishedCommand) || TransportOutcome(err) == OutcomeTimeout {
		return true
	}
	var op *net.OpError
	return !(errors.As(err, &op) && op.Op == "dial")
}

// request is one API call as do sends it.
type request struct {
	endpoint  string // Endpoint constant, for the observer
	vehicleID string // for the 429 gate and the observer; "" for the vehicle list
	userID    string // v3: sent as sc-user-id
	method    string
	path      string // below the API root, e.g. /vehicles/{id}
	query     url.Values
	rawQuery  string // used instead of query when set (a paging link, as Smartcar wrote it)
	body      []byte // JSON; nil for none
	// targetState: sending it twice is harmless (a door command names the
	// state it wants), so a 500/502/503 answer may be retried like a GET.
	targetState bool
	// decode reads a 2xx body; its failure is the call's error, counted as an
	// invalid response. nil: the caller reads the body itself.
	decode func(body []byte) error
}

// response is a 2xx answer.
type response struct {
	status    int
	requestID string
	body      []byte
}

// getJSON sends r and decodes the 2xx body into out; it returns the request id.
func (c *Client) getJSON(ctx context.Context, r request, out any) (string, error) {
	r.decode = func(body []byte) error {
		if out == nil || len(bytes.TrimSpace(body)) == 0 {
			return nil
		}
		return json.Unmarshal(body, out)
	}
	resp, err := c.do(ctx, r)
	return resp.requestID, err
}

// do sends one API call and returns its 2xx answer, body read in full. The
// whole call, retries and waits included, runs under the WithTimeout bound.
// Retries:
//
//   - 401: invalidate the token, refresh, retry once (any method).
//   - 429: close the gate for the vehicle (RATE_LIMIT:VEHICLE) or for
//     everything (any other 429) until Retry-After (30 s if absent), then
//     retry, at most maxRateLimitRetries times (any method: Smartcar did not
//     process it). Every request first waits for the gate; a wait longer than
//     WithMaxRetryWait or past the deadline returns the 429 *Error at once.
//   - 500, 502, 503: GETs and door commands (targetState), maxAttempts tries
//     in all, with full-jitter exponential backoff; a backoff past the
//     deadline returns the last error at once.
//   - transport errors: GET only, likewise. A POST is never re-sent after
//     one: nobody knows whether it arrived.
//   - anything else (409 VEHICLE_STATE, other 4xx, 501…): no retry.
//
// After the last try it returns the last *Error (or transport error).
func (c *Client) do(ctx context.Context, r request) (response, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	u := c.base + r.path
	switch {
	case r.rawQuery != "":
		u += "?" + r.rawQuery
	case len(r.query) > 0:
		u += "?" + r.query.Encode()
	}
	var (
		refreshed bool   // a 401 has been answered with a refresh
		limited   int    // 429s so far
		failures  int    // 500/502/transport failures so far
		last429   *Error // this call's own latest 429
	)
	for {
		if err := c.waitGate(ctx, r.vehicleID, last429); err != nil {
			return response{}, err
		}
		tok, err := c.tokens.Token()
		if err != nil {
			return response{}, fmt.Errorf("get access token: %w", err)
		}
		start := time.Now()
		status, h, respBody, err := c.send(ctx, r, u, tok.AccessToken)
		reqID := h.Get(RequestIDHeader)
		c.traceCall(r, status, reqID, start, err)
		if err != nil {
			c.observe(r, TransportOutcome(err), 0, start)
			if ctx.Err() != nil || r.method != http.MethodGet {
				return response{}, err
			}
			failures++
			if failures >= maxAttempts {
				return response{}, err
			}
			if werr := c.backoffWait(ctx, failures, err); werr != nil {
				return response{}, werr
			}
			continue
		}
		if status >= 200 && status <= 299 {
			if r.decode != nil {
				if err := r.decode(respBody); err != nil {
					c.observe(r, OutcomeInvalidResponse, status, start)
					return response{requestID: reqID}, fmt.Errorf("decode response (status %d, request id %s): %w", status, reqID, err)
				}
			}
			c.observe(r, OutcomeOK, status, start)
			return response{status: status, requestID: reqID, body: respBody}, nil
		}
		e := newHTTPError(status, h, respBody, c.now())
		e.redact(tok.AccessToken) // a proxy's error page may echo our headers
		if status == http.StatusTooManyRequests {
			// Hold back every request this limit applies to, this call's
			// retry included (waitGate at the top of the loop); closed
			// before the observer hears of it, so nothing slips through.
			c.gate.close(rateLimitScope(e, r.vehicleID), c.now().Add(rateLimitWait(e)), e)
		}
		outcome, _ := errorOutcome(e)
		c.observe(r, outcome, status, start)
		switch {
		case status == http.StatusUnauthorized && !refreshed:
			// The access token may have been revoked or expired early:
			// refresh once, try once more. Smartcar refused before acting,
			// so this holds for the command too.
			refreshed = true
			c.tokens.Invalidate()
		case status == http.StatusTooManyRequests:
			if limited++; limited > maxRateLimitRetries {
				return response{}, e
			}
			last429 = e
		case retryableStatus(status) && (r.method == http.MethodGet || r.targetState) && failures+1 < maxAttempts:
			failures++
			if werr := c.backoffWait(ctx, failures, e); werr != nil {
				return response{}, werr
			}
		default:
			return response{}, e
		}
	}
}

// waitGate waits until the gate lets a request to vehicleID through. If the
// wait does not fit (longer than maxRetryWait, or past ctx's deadline) it
// returns at once with a RATE_LIMIT *Error: own429 if this call was the one
// rate limited, else a copy of the 429 that closed the gate, its RetryAfter
// set to the time left, so a caller can tell the user when to try again.
func (c *Client) waitGate(ctx context.Context, vehicleID string, own429 *Error) error {
	now := c.now()
	h := c.gate.hold(vehicleID, now)
	if h.until.IsZero() {
		return nil
	}
	d := h.until.Sub(now)
	if !fits(ctx, now, d, c.maxRetryWait) {
		if own429 != nil {
			return own429
		}
		e := *h.cause
		e.RetryAfter = d.Round(time.Second)
		return &e
	}
	if err := sleep(ctx, d); err != nil {
		return fmt.Errorf("wait %s for Smartcar's rate limit: %w", d.Round(time.Millisecond), err)
	}
	return nil
}

// backoffWait sleeps the jittered backoff before retry n after lastErr. A
// wait that would end past the deadline returns lastErr at once: the retry
// could not finish anyway.
func (c *Client) backoffWait(ctx context.Context, n int, lastErr error) error {
	d := backoffWait(c.backoff, n)
	if !fits(ctx, c.now(), d, maxBackoff) {
		return lastErr
	}
	if err := sleep(ctx, d); err != nil {
		// Wrap only ctx's error: the caller is shutting down or out of
		// time, and that, not the earlier failure, is what it must see.
		return fmt.Errorf("retry after %v: %w", lastErr, err)
	}
	return nil
}

// observe reports one exchange to the observer, if any.
func (c *Client) observe(r request, outcome string, status int, start time.Time) {
	if c.observer == nil {
		return
	}
	c.observer.ObserveCall(Call{
		Endpoint:  r.endpoint,
		VehicleID: r.vehicleID,
		Outcome:   outcome,
		Status:    status,
		Duration:  time.Since(start),
	})
}

// traceCall reports one exchange to the WithTrace function, if any.
func (c *Client) traceCall(r request, status int, reqID string, start time.Time, err error) {
	if c.trace == nil {
		return
	}
	c.trace(Trace{Method: r.method, Path: r.path, Status: status, Duration: time.Since(start), RequestID: reqID, Err: err})
}

// send performs one HTTP exchange with the bearer token and returns the
// fully read body, so ctx's deadline covers the body too (a v3 command that
// takes minutes streams its answer: reading it to the end is waiting for
// the outcome).
func (c *Client) send(ctx context.Context, r request, u, bearer string) (status int, h http.Header, respBody []byte, err error) {
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, rd)
	if err != nil {
		return 0, http.Header{}, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if r.userID != "" {
		req.Header.Set(UserIDHeader, r.userID)
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error names method and URL; our URLs carry no secrets.
		return 0, http.Header{}, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, resp.Header, nil, fmt.Errorf("read response (status %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// UserIDHeader scopes an API v3 vehicle request to the user whose
// connection holds the vehicle.
const UserIDHeader = "sc-user-id"
