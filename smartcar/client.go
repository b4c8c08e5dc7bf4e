package smartcar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// DefaultUserAgent is sent when no WithUserAgent option is given. Smartcar,
// like any API provider, should be able to tell who is calling.
const DefaultUserAgent = "smartcar2mqtt/dev"

// DefaultPageSize is the limit asked for on paged lists: Smartcar's own
// default, so most accounts need exactly one call.
const DefaultPageSize = 10

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

// Client calls the Smartcar API v2.0, retrying as SPEC §6 says (see do). It
// is safe for concurrent use, and meant to be shared: a 429 one caller
// receives holds back the others through the Client's gate.
type Client struct {
	base      string // API root, e.g. https://api.smartcar.com/v2.0, no trailing slash
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

// NewClient returns a client for the API rooted at apiURL (e.g.
// "https://api.smartcar.com/v2.0") that asks tokens for a bearer token on
// every request.
func NewClient(apiURL string, tokens TokenSource, opts ...Option) *Client {
	c := &Client{
		base:      strings.TrimRight(apiURL, "/"),
		tokens:    tokens,
		hc:        http.DefaultClient,
		userAgent: DefaultUserAgent,
		pageSize:  DefaultPageSize,
		now:       time.Now,

		backoff:      DefaultBackoff,
		maxRetryWait: DefaultMaxRetryWait,
	}
	for _, o := range opts {
		o(c)
	}
	if c.pageSize <= 0 {
		c.pageSize = DefaultPageSize
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	return c
}

// VehicleIDs lists the ids of every vehicle the token can see (GET /vehicles),
// following Smartcar's limit/offset paging.
func (c *Client) VehicleIDs(ctx context.Context) ([]string, error) {
	ids, err := pages(c.pageSize, func(limit, offset int) ([]string, paging, error) {
		var resp struct {
			Vehicles []string `json:"vehicles"`
			Paging   paging   `json:"paging"`
		}
		_, err := c.do(ctx, request{endpoint: EndpointVehicles, method: http.MethodGet,
			path: "/vehicles", query: pageQuery(limit, offset)}, &resp)
		return resp.Vehicles, resp.Paging, err
	})
	if err != nil {
		return nil, fmt.Errorf("list vehicles: %w", err)
	}
	return ids, nil
}

// Vehicle reads a vehicle's make, model and year (GET /vehicles/{id}).
func (c *Client) Vehicle(ctx context.Context, id string) (Vehicle, error) {
	var v Vehicle
	r := request{endpoint: EndpointVehicle, vehicleID: id, method: http.MethodGet, path: vehiclePath(id)}
	if _, err := c.do(ctx, r, &v); err != nil {
		return Vehicle{}, fmt.Errorf("get vehicle %s: %w", id, err)
	}
	if v.ID == "" {
		v.ID = id
	}
	return v, nil
}

// Permissions lists the permissions the owner granted for a vehicle
// (GET /vehicles/{id}/permissions), following paging.
func (c *Client) Permissions(ctx context.Context, id string) ([]string, error) {
	perms, err := pages(c.pageSize, func(limit, offset int) ([]string, paging, error) {
		var resp struct {
			Permissions []string `json:"permissions"`
			Paging      paging   `json:"paging"`
		}
		_, err := c.do(ctx, request{endpoint: EndpointPermissions, vehicleID: id, method: http.MethodGet,
			path: vehiclePath(id) + "/permissions", query: pageQuery(limit, offset)}, &resp)
		return resp.Permissions, resp.Paging, err
	})
	if err != nil {
		return nil, fmt.Errorf("get permissions of %s: %w", id, err)
	}
	return perms, nil
}

// TeslaCharge reads a Tesla's charge state, including the charge port door
// (GET /vehicles/{id}/tesla/charge, permission read_charge).
func (c *Client) TeslaCharge(ctx context.Context, id string) (Charge, error) {
	var ch Charge
	reqID, err := c.do(ctx, request{endpoint: EndpointTeslaCharge, vehicleID: id, method: http.MethodGet,
		path: vehiclePath(id) + "/tesla/charge"}, &ch)
	if err != nil {
		return Charge{}, fmt.Errorf("read charge state of %s: %w", id, err)
	}
	ch.RequestID = reqID
	return ch, nil
}

// ChargePortDoor opens or closes the charge port door
// (POST /vehicles/{id}/{make}/charge/charge_port_door, permission
// control_charge). Smartcar offers it for Tesla only; other makes get an
// *Error from Smartcar. The command is re-sent only after a 401 or 429, which
// Smartcar answers without acting; after a timeout, a transport error, a 500
// or a 502 the car may have acted, so the caller gets the error and should
// read the state before trying again.
func (c *Client) ChargePortDoor(ctx context.Context, v Vehicle, a Action) error {
	op := "open charge port"
	if a == Close {
		op = "close charge port"
	}
	if !a.Valid() {
		return fmt.Errorf("charge port door: invalid action %q (want OPEN or CLOSE)", a)
	}
	if v.Make == "" {
		return fmt.Errorf("%s of %s: vehicle make unknown", op, v.ID)
	}
	body, err := json.Marshal(struct {
		Action Action `json:"action"`
	}{a})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	path := vehiclePath(v.ID) + "/" + url.PathEscape(strings.ToLower(v.Make)) + "/charge/charge_port_door"

	var resp struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		errorBody
	}
	reqID, err := c.do(ctx, request{endpoint: EndpointChargePortDoor, vehicleID: v.ID, method: http.MethodPost,
		path: path, body: body}, &resp)
	if err != nil {
		return fmt.Errorf("%s of %s: %w", op, v.ID, err)
	}
	// A long-running command may answer 2xx and report its real outcome in
	// the body; an error object there is still an error.
	if resp.isError() && resp.StatusCode >= 400 {
		e := &Error{StatusCode: resp.StatusCode, RequestID: reqID}
		e.fill(resp.errorBody)
		return fmt.Errorf("%s of %s: %w", op, v.ID, e)
	}
	if resp.Status != "" && !strings.EqualFold(resp.Status, "success") {
		return fmt.Errorf("%s of %s: command status %q: %s", op, v.ID, resp.Status, resp.Message)
	}
	return nil
}

// request is one API call as do sends it.
type request struct {
	endpoint  string // Endpoint constant, for the observer
	vehicleID string // for the 429 gate and the observer; "" for the vehicle list
	method    string
	path      string // below the API root, e.g. /vehicles/{id}
	query     url.Values
	body      []byte // JSON; nil for GET
}

// do sends one API call and decodes a 2xx JSON body into out. It returns the
// SC-Request-Id of the final response. The whole call, retries and waits
// included, runs under the WithTimeout bound. Retries (SPEC §6):
//
//   - 401: invalidate the token, refresh, retry once (any method).
//   - 429: close the gate for the vehicle (RATE_LIMIT:VEHICLE) or for
//     everything (any other 429) until Retry-After (30 s if absent), then
//     retry, at most maxRateLimitRetries times (any method: Smartcar did not
//     process it). Every request first waits for the gate; a wait longer than
//     WithMaxRetryWait or past the deadline returns the 429 *Error at once.
//   - 500, 502 and transport errors: GET only, maxAttempts tries in all, with
//     full-jitter exponential backoff; a backoff past the deadline returns the
//     last error at once. A POST is never re-sent after these (see mayResend).
//   - anything else (409 VEHICLE_STATE, other 4xx, 501…): no retry.
//
// After the last try it returns the last *Error (or transport error).
func (c *Client) do(ctx context.Context, r request, out any) (string, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	u := c.base + r.path
	if len(r.query) > 0 {
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
			return "", err
		}
		tok, err := c.tokens.Token()
		if err != nil {
			return "", fmt.Errorf("get access token: %w", err)
		}
		start := time.Now()
		status, h, respBody, err := c.send(ctx, r.method, u, r.body, tok.AccessToken)
		if err != nil {
			c.observe(r, transportOutcome(err), 0, start)
			if ctx.Err() != nil || !mayResend(r.method) {
				return "", err
			}
			failures++
			if failures >= maxAttempts {
				return "", err
			}
			if werr := c.backoffWait(ctx, failures, err); werr != nil {
				return "", werr
			}
			continue
		}
		reqID := h.Get(RequestIDHeader)
		if status >= 200 && status <= 299 {
			if out != nil && len(bytes.TrimSpace(respBody)) > 0 {
				if err := json.Unmarshal(respBody, out); err != nil {
					c.observe(r, OutcomeInvalidResponse, status, start)
					return reqID, fmt.Errorf("decode response (status %d, request id %s): %w", status, reqID, err)
				}
			}
			c.observe(r, OutcomeOK, status, start)
			return reqID, nil
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
				return reqID, e
			}
			last429 = e
		case retryableStatus(status) && mayResend(r.method) && failures+1 < maxAttempts:
			failures++
			if werr := c.backoffWait(ctx, failures, e); werr != nil {
				return reqID, werr
			}
		default:
			return reqID, e
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

// send performs one HTTP exchange with the bearer token and returns the
// fully read body, so ctx's deadline covers the body too.
func (c *Client) send(ctx context.Context, method, u string, body []byte, bearer string) (status int, h http.Header, respBody []byte, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error names method and URL; our URLs carry no secrets.
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read response (status %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, data, nil
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
