package smartcar

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// observerFunc adapts a function to CallObserver.
type observerFunc func(Call)

func (f observerFunc) ObserveCall(c Call) { f(c) }

// callLog records observed calls and signals each one on a channel.
type callLog struct {
	mu    sync.Mutex
	calls []Call
	ch    chan Call
}

// newCallLog's channel holds more calls than any test makes, so observing
// never blocks the client.
func newCallLog() *callLog { return &callLog{ch: make(chan Call, 256)} }

func (l *callLog) ObserveCall(c Call) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
	l.ch <- c
}

func (l *callLog) all() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Call(nil), l.calls...)
}

// waitOutcome waits until a call with outcome has been observed.
func (l *callLog) waitOutcome(t *testing.T, outcome string) Call {
	t.Helper()
	ctx := ctxT(t)
	for {
		select {
		case c := <-l.ch:
			if c.Outcome == outcome {
				return c
			}
		case <-ctx.Done():
			t.Fatalf("no %s call observed", outcome)
		}
	}
}

// realTime makes the simulator stamp requests with the wall clock, which the
// client's Retry-After waits also run on.
func realTime(o *smartcarsim.Options) { o.Now = time.Now }

const simTeslaB = "tesla-b"

func addTeslaB(e *env) {
	e.sim.AddVehicle(smartcarsim.Vehicle{ID: simTeslaB, Make: "TESLA", Model: "Model Y", Year: 2023},
		[]string{PermReadVehicleInfo, PermReadCharge, PermControlCharge})
}

// chargeReads returns the logged tesla/charge reads of vehicle id.
func (e *env) chargeReads(id string) []smartcarsim.Request {
	return e.requestsTo("GET", "/vehicles/"+id+"/tesla/charge")
}

// result waits for a call running in a goroutine, failing the test if it
// does not return in time.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("call did not return")
		return nil
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, realTime)
	c, _ := e.client(t)
	e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 429, RetryAfter: time.Second})

	if _, err := c.Read(ctxT(t), Vehicle{ID: smartcarsim.TeslaID}); err != nil {
		t.Fatal(err)
	}
	reads := e.chargeReads(smartcarsim.TeslaID)
	if len(reads) != 2 || reads[0].Status != 429 || reads[1].Status != 200 {
		t.Fatalf("reads = %+v, want 429 then 200", reads)
	}
	if gap := reads[1].At.Sub(reads[0].At); gap < time.Second {
		t.Errorf("retry %s after the 429, want ≥ Retry-After 1s", gap)
	}
}

// rateLimitedRead starts a read of vehicle A (smartcarsim.TeslaID, beside tesla-b) that
// Smartcar answers with a RATE_LIMIT:code 429 asking for a 1 s wait, and
// returns once the client has seen that 429; first gets the read's result.
func rateLimitedRead(t *testing.T, code string) (e *env, c *Client, ctx context.Context, first <-chan error) {
	t.Helper()
	e = newEnv(t, realTime)
	addTeslaB(e)
	obs := newCallLog()
	c, _ = e.client(t, WithObserver(obs))
	ctx = ctxT(t)
	e.sim.InjectFault(smartcarsim.Fault{Path: "/" + smartcarsim.TeslaID + "/tesla/charge", Status: 429,
		Type: TypeRateLimit, Code: code, RetryAfter: time.Second})
	done := make(chan error, 1)
	go func() { _, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); done <- err }()
	obs.waitOutcome(t, TypeRateLimit)
	return e, c, ctx, done
}

// A RATE_LIMIT:VEHICLE 429 holds back every request to that vehicle, also
// ones that never saw a 429 themselves, and no request to another vehicle.
func TestRateLimitGateIsPerVehicle(t *testing.T) {
	t.Parallel()
	e, c, ctx, first := rateLimitedRead(t, "VEHICLE")
	second := make(chan error, 1)
	go func() { _, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); second <- err }()
	if _, err := c.Read(ctx, Vehicle{ID: simTeslaB}); err != nil {
		t.Fatalf("vehicle B: %v", err)
	}
	if err := result(t, first); err != nil {
		t.Fatalf("first call to A: %v", err)
	}
	if err := result(t, second); err != nil {
		t.Fatalf("second call to A: %v", err)
	}

	var limited smartcarsim.Request
	seenB := false
	for _, r := range e.requestsTo("GET", "/tesla/charge") {
		switch {
		case r.Status == 429:
			limited = r
		case strings.Contains(r.Path, simTeslaB):
			seenB = true
		default: // A after its 429: the retry and the second caller
			if !seenB {
				t.Errorf("request to A at %s went before B's: B was held back", r.At.Sub(limited.At))
			}
			if gap := r.At.Sub(limited.At); gap < time.Second {
				t.Errorf("request to A %s after the 429, want ≥ 1s", gap)
			}
		}
	}
	if n := len(e.chargeReads(smartcarsim.TeslaID)); n != 3 {
		t.Errorf("reads of A = %d, want 3 (429, retry, second caller)", n)
	}
}

// Any other 429 (RATE_LIMIT:SMARTCAR_API, the app's bucket) holds back
// every request.
func TestRateLimitGateAppWide(t *testing.T) {
	t.Parallel()
	e, c, ctx, first := rateLimitedRead(t, "SMARTCAR_API")
	if _, err := c.Read(ctx, Vehicle{ID: simTeslaB}); err != nil {
		t.Fatalf("vehicle B: %v", err)
	}
	if _, err := v2(c).ids(ctx, c); err != nil {
		t.Fatalf("vehicle list: %v", err)
	}
	if err := result(t, first); err != nil {
		t.Fatal(err)
	}
	limited := e.chargeReads(smartcarsim.TeslaID)[0]
	later := append(e.chargeReads(simTeslaB), e.requestsTo("GET", "/v2.0/vehicles")...)
	for _, r := range later {
		if gap := r.At.Sub(limited.At); gap < time.Second {
			t.Errorf("%s %s sent %s after an app-wide 429, want ≥ 1s", r.Method, r.Path, gap)
		}
	}
}

func TestServerErrorRetries(t *testing.T) {
	tesla := Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA"}
	tests := []struct {
		name     string
		fault    smartcarsim.Fault
		call     func(context.Context, *Client) error
		path     string
		wantReqs int
		wantErr  int // status of the *Error; 0 for success
	}{
		{"GET 500 then ok", smartcarsim.Fault{Status: 500}, readA, "/tesla/charge", 2, 0},
		{"GET 502 then ok", smartcarsim.Fault{Status: 502}, readA, "/tesla/charge", 2, 0},
		{"GET 500 three times", smartcarsim.Fault{Status: 500, Times: -1}, readA, "/tesla/charge", 3, 500},
		{"GET 502 three times", smartcarsim.Fault{Status: 502, Times: -1}, readA, "/tesla/charge", 3, 502},
		{"GET 409 not retried", smartcarsim.Fault{Status: 409}, readA, "/tesla/charge", 1, 409},
		{"GET 403 not retried", smartcarsim.Fault{Status: 403}, readA, "/tesla/charge", 1, 403},
		{"GET 503 then ok", smartcarsim.Fault{Status: 503, RawBody: "unavailable"}, readA, "/tesla/charge", 2, 0},
		{"GET 503 three times", smartcarsim.Fault{Status: 503, Times: -1, RawBody: "unavailable"}, readA, "/tesla/charge", 3, 503},
		{"GET 501 not retried", smartcarsim.Fault{Status: 501}, readA, "/tesla/charge", 1, 501},
		// A door command names the state it wants: sending it again is safe.
		{"POST 500 then ok", smartcarsim.Fault{Status: 500}, door(tesla), "_door", 2, 0},
		{"POST 502 then ok", smartcarsim.Fault{Status: 502}, door(tesla), "_door", 2, 0},
		{"POST 503 then ok", smartcarsim.Fault{Status: 503}, door(tesla), "_door", 2, 0},
		{"POST 500 three times", smartcarsim.Fault{Status: 500, Times: -1}, door(tesla), "_door", 3, 500},
		{"POST 409 not re-sent", smartcarsim.Fault{Status: 409}, door(tesla), "_door", 1, 409},
		{"POST 401 refreshed and re-sent", smartcarsim.Fault{Status: 401}, door(tesla), "_door", 2, 0},
		{"POST 429 re-sent", smartcarsim.Fault{Status: 429, RetryAfter: time.Second}, door(tesla), "_door", 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c, _ := e.client(t, WithBackoff(time.Millisecond))
			tt.fault.Path = tt.path
			e.sim.InjectFault(tt.fault)

			err := tt.call(ctxT(t), c)
			if tt.wantErr == 0 && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != 0 {
				var se *Error
				if !errors.As(err, &se) || se.StatusCode != tt.wantErr {
					t.Fatalf("err = %v, want *Error %d", err, tt.wantErr)
				}
			}
			if n := len(e.requestsTo("", tt.path)); n != tt.wantReqs {
				t.Errorf("requests = %d, want %d", n, tt.wantReqs)
			}
		})
	}
}

func readA(ctx context.Context, c *Client) error {
	_, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID})
	return err
}

func door(v Vehicle) func(context.Context, *Client) error {
	return func(ctx context.Context, c *Client) error { return c.ChargePortDoor(ctx, v, Open) }
}

// A command whose answer never came may have reached the car: it is sent
// exactly once, and the timeout bounds the whole call.
func TestTimedOutPostSentOnce(t *testing.T) {
	e := newEnv(t, func(o *smartcarsim.Options) { o.Latency = time.Hour; o.CompleteOnCancel = true })
	c, _ := e.client(t, WithTimeout(50*time.Millisecond), WithBackoff(0))

	err := c.ChargePortDoor(ctxT(t), Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA"}, Open)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if n := len(e.requestsTo("POST", "_door")); n != 1 {
		t.Errorf("POSTs = %d, want exactly 1", n)
	}
}

// Transport errors: a GET is tried maxAttempts times, a POST once.
func TestTransportErrorRetries(t *testing.T) {
	e := newEnv(t)
	obs := newCallLog()
	c := NewV2Client(e.apiURL, &staticTokens{access: e.accessToken(t)}, WithObserver(obs), WithBackoff(time.Millisecond))
	e.srv.Close()

	_, err := c.Read(ctxT(t), Vehicle{ID: smartcarsim.TeslaID})
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("GET err = %v (%T), want *url.Error", err, err)
	}
	if n := len(obs.all()); n != maxAttempts {
		t.Errorf("GET attempts = %d, want %d", n, maxAttempts)
	}
	for _, call := range obs.all() {
		if call.Outcome != OutcomeNetwork || call.Endpoint != EndpointTeslaCharge || call.VehicleID != smartcarsim.TeslaID {
			t.Errorf("observed %+v", call)
		}
	}

	before := len(obs.all())
	if err := c.ChargePortDoor(ctxT(t), Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA"}, Open); err == nil {
		t.Fatal("POST to a closed server succeeded")
	}
	if n := len(obs.all()) - before; n != 1 {
		t.Errorf("POST attempts = %d, want 1", n)
	}
}

func TestRetryWaitsEndOnCancel(t *testing.T) {
	t.Run("Retry-After", func(t *testing.T) {
		e := newEnv(t)
		obs := newCallLog()
		c, _ := e.client(t, WithObserver(obs))
		e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 429, RetryAfter: time.Minute})
		// No deadline: only the cancel can end the wait.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { _, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); done <- err }()
		obs.waitOutcome(t, TypeRateLimit)
		cancel()
		if err := result(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want canceled", err)
		}
		if n := len(e.chargeReads(smartcarsim.TeslaID)); n != 1 {
			t.Errorf("reads = %d, want 1", n)
		}
	})
	t.Run("backoff", func(t *testing.T) {
		e := newEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Cancel as the 500 is seen: the backoff that follows must not
		// retry.
		obs := observerFunc(func(c Call) {
			if c.Outcome == TypeServer {
				cancel()
			}
		})
		c, _ := e.client(t, WithObserver(obs), WithBackoff(time.Hour))
		e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 500, Times: -1})
		done := make(chan error, 1)
		go func() { _, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); done <- err }()
		if err := result(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want canceled", err)
		}
		if n := len(e.chargeReads(smartcarsim.TeslaID)); n != 1 {
			t.Errorf("reads = %d, want 1", n)
		}
	})
}

// A Retry-After that does not fit the timeout comes back at once as the 429,
// and later calls to the vehicle get it without spending a request.
func TestRetryAfterBeyondTimeout(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t, WithTimeout(5*time.Second))
	e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 429, RetryAfter: 30 * time.Second})

	_, err := c.Read(ctxT(t), Vehicle{ID: smartcarsim.TeslaID})
	se := assertSmartcarError(t, err, 429, TypeRateLimit, "VEHICLE")
	if se.RetryAfter != 30*time.Second {
		t.Errorf("RetryAfter = %s", se.RetryAfter)
	}
	if n := len(e.chargeReads(smartcarsim.TeslaID)); n != 1 {
		t.Fatalf("reads = %d, want 1", n)
	}

	_, err = c.Read(ctxT(t), Vehicle{ID: smartcarsim.TeslaID})
	se = assertSmartcarError(t, err, 429, TypeRateLimit, "VEHICLE")
	if se.RetryAfter <= 0 || se.RetryAfter > 30*time.Second {
		t.Errorf("gated RetryAfter = %s, want the time left", se.RetryAfter)
	}
	if n := len(e.chargeReads(smartcarsim.TeslaID)); n != 1 {
		t.Errorf("reads = %d, want still 1: the gate answers", n)
	}
	// Another vehicle is not held back.
	if _, err := v2(c).vehicle(ctxT(t), c, smartcarsim.OtherID); err != nil {
		t.Errorf("other vehicle: %v", err)
	}
}

func TestRetryAfterBeyondMaxWait(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t) // no timeout: only the 2-minute cap bounds the wait
	e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 429, RetryAfter: 3 * time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); done <- err }()
	assertSmartcarError(t, result(t, done), 429, TypeRateLimit, "VEHICLE")
}

func TestRateLimitRetriesBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, _ := e.client(t)
	e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 429, RetryAfter: time.Second, Times: -1})
	_, err := c.Read(ctxT(t), Vehicle{ID: smartcarsim.TeslaID})
	assertSmartcarError(t, err, 429, TypeRateLimit, "VEHICLE")
	if n, want := len(e.chargeReads(smartcarsim.TeslaID)), 1+maxRateLimitRetries; n != want {
		t.Errorf("reads = %d, want %d", n, want)
	}
}

// A 429 without Retry-After (or Smartcar's body) waits the default 30 s,
// which a 10 s deadline cannot hold.
func TestRateLimitWithoutRetryAfter(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 429, Times: -1, RawBody: "slow down"})
	_, err := c.Read(ctxT(t), Vehicle{ID: smartcarsim.TeslaID}) // ctxT: 10 s deadline
	var se *Error
	if !errors.As(err, &se) || se.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("err = %v, want the 429", err)
	}
	if n := len(e.chargeReads(smartcarsim.TeslaID)); n != 1 {
		t.Errorf("reads = %d, want 1", n)
	}
	// A 429 without Smartcar's body is not known to be per-vehicle, so it
	// holds back everything.
	if _, err := v2(c).vehicle(ctxT(t), c, smartcarsim.OtherID); !errors.As(err, &se) || se.StatusCode != 429 {
		t.Errorf("other vehicle after an unscoped 429: %v", err)
	}
}

func TestGate(t *testing.T) {
	var g gate
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cause := &Error{StatusCode: 429, Type: TypeRateLimit}

	if h := g.hold("a", t0); !h.until.IsZero() {
		t.Fatalf("fresh gate holds until %s", h.until)
	}
	g.close("a", t0.Add(10*time.Second), cause)
	g.close("a", t0.Add(5*time.Second), cause) // earlier: must not shorten
	if h := g.hold("a", t0); !h.until.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("a held until %s", h.until)
	}
	if h := g.hold("b", t0); !h.until.IsZero() {
		t.Errorf("b held by a's limit")
	}
	g.close("", t0.Add(20*time.Second), cause)
	if h := g.hold("a", t0); !h.until.Equal(t0.Add(20 * time.Second)) {
		t.Errorf("app-wide hold not applied to a: %s", h.until)
	}
	if h := g.hold("b", t0.Add(21*time.Second)); !h.until.IsZero() {
		t.Errorf("expired hold still applies")
	}
	g.hold("a", t0.Add(21*time.Second))
	if _, ok := g.vehicles["a"]; ok {
		t.Error("expired vehicle entry kept")
	}
}

func TestBackoffWait(t *testing.T) {
	for n := 1; n <= 10; n++ {
		ceil := min(time.Second<<(n-1), maxBackoff)
		for range 100 {
			if d := backoffWait(time.Second, n); d < 0 || d >= ceil {
				t.Fatalf("retry %d waits %s, want [0, %s)", n, d, ceil)
			}
		}
	}
	if d := backoffWait(0, 3); d != 0 {
		t.Errorf("zero base waits %s", d)
	}
}
