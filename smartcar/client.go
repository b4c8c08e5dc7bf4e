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

// Client calls the Smartcar API v2.0. It is safe for concurrent use.
type Client struct {
	base      string // API root, e.g. https://api.smartcar.com/v2.0, no trailing slash
	tokens    TokenSource
	hc        *http.Client
	userAgent string
	timeout   time.Duration
	pageSize  int
	now       func() time.Time
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client; its Timeout, if any, still applies on
// top of WithTimeout.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent sent on every request.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithTimeout bounds one HTTP request (SMARTCAR_TIMEOUT). Commands can take
// minutes, so this is a per-request bound applied with a context, not a
// client-wide one.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

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
		_, err := c.do(ctx, http.MethodGet, "/vehicles", pageQuery(limit, offset), nil, &resp)
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
	if _, err := c.do(ctx, http.MethodGet, vehiclePath(id), nil, nil, &v); err != nil {
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
		_, err := c.do(ctx, http.MethodGet, vehiclePath(id)+"/permissions", pageQuery(limit, offset), nil, &resp)
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
	reqID, err := c.do(ctx, http.MethodGet, vehiclePath(id)+"/tesla/charge", nil, nil, &ch)
	if err != nil {
		return Charge{}, fmt.Errorf("read charge state of %s: %w", id, err)
	}
	ch.RequestID = reqID
	return ch, nil
}

// ChargePortDoor opens or closes the charge port door
// (POST /vehicles/{id}/{make}/charge/charge_port_door, permission
// control_charge). Smartcar offers it for Tesla only; other makes get an
// *Error from Smartcar.
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
	reqID, err := c.do(ctx, http.MethodPost, path, nil, body, &resp)
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

// do sends one API call and decodes a 2xx JSON body into out. It asks the
// token source for a bearer token per attempt; on 401 it invalidates the token
// and retries exactly once. It returns the SC-Request-Id of the final response.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out any) (string, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	for attempt := 0; ; attempt++ {
		status, h, respBody, bearer, err := c.send(ctx, method, u, body)
		if err != nil {
			return "", err
		}
		reqID := h.Get(RequestIDHeader)
		if status == http.StatusUnauthorized && attempt == 0 {
			// The access token may have been revoked or expired early:
			// refresh once, try once more.
			c.tokens.Invalidate()
			continue
		}
		if status < 200 || status > 299 {
			e := newHTTPError(status, h, respBody, c.now())
			e.redact(bearer) // a proxy's error page may echo our headers
			return reqID, e
		}
		if out != nil && len(bytes.TrimSpace(respBody)) > 0 {
			if err := json.Unmarshal(respBody, out); err != nil {
				return reqID, fmt.Errorf("decode response (status %d, request id %s): %w", status, reqID, err)
			}
		}
		return reqID, nil
	}
}

// send performs one HTTP exchange under the per-request timeout and returns
// the fully read body, so the timeout covers the body too, and the access
// token it used, so errors can be scrubbed of it.
func (c *Client) send(ctx context.Context, method, u string, body []byte) (status int, h http.Header, respBody []byte, bearer string, err error) {
	tok, err := c.tokens.Token()
	if err != nil {
		return 0, nil, nil, "", fmt.Errorf("get access token: %w", err)
	}
	bearer = tok.AccessToken
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, bearer, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error names method and URL; our URLs carry no secrets.
		return 0, nil, nil, bearer, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, bearer, fmt.Errorf("read response (status %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, data, bearer, nil
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
