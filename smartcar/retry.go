package smartcar

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Retry policy. Every Smartcar call costs quota, so retries are few
// and only where a second try can succeed.
const (
	// maxAttempts bounds tries of a call failing with 500/502/503 or (GET
	// only) a transport error: the first plus two retries.
	maxAttempts = 3

	// maxRateLimitRetries bounds how often one call re-sends after a 429, so
	// a call ends even without a timeout.
	maxRateLimitRetries = 3

	// DefaultBackoff is the full-jitter base: retry n waits a random time in
	// [0, base·2^(n-1)).
	DefaultBackoff = time.Second

	// maxBackoff caps one backoff wait whatever the base.
	maxBackoff = 30 * time.Second

	// DefaultMaxRetryWait is the longest one call waits for a Retry-After
	// before giving the 429 back to its caller instead.
	DefaultMaxRetryWait = 2 * time.Minute

	// defaultRateLimitWait applies to a 429 without a usable Retry-After:
	// Smartcar's app bucket refills one request every 30 s, and
	// RATE_LIMIT:SMARTCAR_API documents no header.
	defaultRateLimitWait = 30 * time.Second

	// maxGateHold caps how long a 429 closes the gate, so a bogus
	// Retry-After cannot silence a vehicle until the next restart.
	maxGateHold = time.Hour

	// codeRateLimitVehicle is RATE_LIMIT:VEHICLE, the per-vehicle throttle.
	// Any other 429 (RATE_LIMIT:SMARTCAR_API, the app bucket, or a 429
	// without Smartcar's body) is treated as app-wide: waiting too broadly
	// costs latency, waiting too narrowly costs quota and more 429s.
	codeRateLimitVehicle = "VEHICLE"
)

// gate remembers until when Smartcar asked us not to call, per vehicle and
// app-wide, so one 429 holds back every request it applies to, not just the
// one that received it.
type gate struct {
	mu       sync.Mutex
	app      gateHold
	vehicles map[string]gateHold
}

// gateHold is a not-before time and the 429 that set it, handed back to
// callers that cannot wait that long.
type gateHold struct {
	until time.Time
	cause *Error
}

// close holds back requests to vehicleID (or all requests when vehicleID is
// empty) until until. A hold is only ever extended, never shortened: an
// earlier Retry-After answered before a later one must not reopen the gate.
func (g *gate) close(vehicleID string, until time.Time, cause *Error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := gateHold{until: until, cause: cause}
	if vehicleID == "" {
		if until.After(g.app.until) {
			g.app = h
		}
		return
	}
	if g.vehicles == nil {
		g.vehicles = map[string]gateHold{}
	}
	if until.After(g.vehicles[vehicleID].until) {
		g.vehicles[vehicleID] = h
	}
}

// hold returns the later of the app-wide and vehicleID's not-before times,
// with its cause; a zero hold if the gate is open at now. Expired vehicle
// entries are dropped so the map stays as small as the fleet.
func (g *gate) hold(vehicleID string, now time.Time) gateHold {
	g.mu.Lock()
	defer g.mu.Unlock()
	var h gateHold
	if g.app.until.After(now) {
		h = g.app
	}
	if vehicleID == "" {
		return h
	}
	v, ok := g.vehicles[vehicleID]
	if !ok {
		return h
	}
	if !v.until.After(now) {
		delete(g.vehicles, vehicleID)
		return h
	}
	if v.until.After(h.until) {
		h = v
	}
	return h
}

// rateLimitScope is the gate key a 429 closes: the vehicle for
// RATE_LIMIT:VEHICLE, "" (everything) otherwise.
func rateLimitScope(e *Error, vehicleID string) string {
	if e.Code == codeRateLimitVehicle {
		return vehicleID
	}
	return ""
}

// rateLimitWait is how long a 429 asks us to wait, bounded by maxGateHold.
func rateLimitWait(e *Error) time.Duration {
	d := e.RetryAfter
	if d <= 0 {
		d = defaultRateLimitWait
	}
	return min(d, maxGateHold)
}

// retryableStatus reports whether a request answered with status is worth
// another try: 500 SERVER, 502 UPSTREAM and 503. 409 VEHICLE_STATE and other
// 4xx would fail the same way again and only cost quota.
func retryableStatus(status int) bool {
	return status == http.StatusInternalServerError || status == http.StatusBadGateway || status == http.StatusServiceUnavailable
}

// backoffWait is the full-jitter wait before retry n (n ≥ 1) with base.
func backoffWait(base time.Duration, n int) time.Duration {
	if base <= 0 {
		return 0
	}
	ceil := base
	for i := 1; i < n && ceil < maxBackoff; i++ {
		ceil *= 2
	}
	ceil = min(ceil, maxBackoff)
	return rand.N(ceil)
}

// fits reports whether waiting d from now still leaves ctx time to send the
// request: a wait that would end at or past the deadline is pointless.
func fits(ctx context.Context, now time.Time, d, limit time.Duration) bool {
	if d > limit {
		return false
	}
	dl, ok := ctx.Deadline()
	return !ok || now.Add(d).Before(dl)
}

// sleep waits d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TransportOutcome names a failure without an answer from Smartcar:
// OutcomeTimeout, OutcomeCanceled or OutcomeNetwork. The one place that tells
// them apart, for the call counts and for what a user reads.
func TransportOutcome(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return OutcomeCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return OutcomeTimeout
	}
	return OutcomeNetwork
}
