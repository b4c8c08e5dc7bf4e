package smartcarsim

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// The v2.0 side, which must behave exactly as the simulator always has.

// v2ErrorWire is a v2.0 error body as a client reads it.
type v2ErrorWire struct {
	Type        string  `json:"type"`
	Code        *string `json:"code"`
	Description string  `json:"description"`
	DocURL      string  `json:"docURL"`
	StatusCode  int     `json:"statusCode"`
	RequestID   string  `json:"requestId"`
	Resolution  struct {
		Type *string `json:"type"`
	} `json:"resolution"`
}

// v2ListWire is GET /v2.0/vehicles as a client reads it.
type v2ListWire struct {
	Vehicles []string `json:"vehicles"`
	Paging   struct {
		Count  int `json:"count"`
		Offset int `json:"offset"`
	} `json:"paging"`
}

// v2ChargeWire is the part of tesla/charge these tests read.
type v2ChargeWire struct {
	ChargePortOpen *bool `json:"chargePortOpen"`
	IsPluggedIn    *bool `json:"isPluggedIn"`
}

// v2get is an authenticated GET under /v2.0.
func (e *env) v2get(t *testing.T, tok, path string) response {
	t.Helper()
	return e.do(t, "GET", "/v2.0"+path, "Authorization", bearerHeader(tok))
}

// v2door sends a charge port door command for the Tesla.
func (e *env) v2door(ctx context.Context, tok, action string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/v2.0/vehicles/"+TeslaID+"/tesla/charge/charge_port_door",
		strings.NewReader(`{"action":"`+action+`"}`))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", bearerHeader(tok))
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestSimulatorRotatesAndRefusesUsedRefreshTokens(t *testing.T) {
	e := newEnv(t)
	rt := e.sim.IssueRefreshToken()
	ctx := ctxT(t)

	tok, err := e.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == rt || tok.RefreshToken == "" || tok.AccessToken == "" || tok.ExpiresIn != 7200 {
		t.Errorf("token = %+v", tok)
	}
	_, err = e.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != 400 || re.ErrorCode != "invalid_grant" {
		t.Fatalf("used refresh token: %v", err)
	}
	if _, err := e.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Errorf("rotated refresh token refused: %v", err)
	}
}

func TestSimulatorRefreshGrace(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RefreshGrace = time.Minute })
	rt := e.sim.IssueRefreshToken()
	spend := func() error {
		_, err := e.conf.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: rt}).Token()
		return err
	}
	if err := spend(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(59 * time.Second)
	if err := spend(); err != nil {
		t.Errorf("reuse within the grace refused: %v", err)
	}
	e.clock.Advance(time.Second)
	if err := spend(); err == nil {
		t.Error("reuse after the grace accepted")
	}
}

func TestSimulatorV2AccessTokenExpires(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AccessTTL = time.Minute })
	tok := e.accessToken(t)
	if r := e.v2get(t, tok, "/vehicles"); r.status != 200 {
		t.Fatalf("fresh token: %d %s", r.status, r.body)
	}
	e.clock.Advance(time.Minute)
	r := e.v2get(t, tok, "/vehicles")
	if b := decode[v2ErrorWire](t, r.body); r.status != 401 || b.Type != "AUTHENTICATION" || b.Code != nil {
		t.Errorf("expired token: %d %s", r.status, r.body)
	}
}

func TestSimulatorConnectFlow(t *testing.T) {
	e := newEnv(t)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(e.conf.AuthCodeURL("st4te"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize status = %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != e.conf.RedirectURL {
		t.Errorf("redirected to %s", got)
	}
	if loc.Query().Get("state") != "st4te" || loc.Query().Has("user_id") {
		t.Errorf("redirect query = %v, want state and no user_id", loc.Query())
	}
	code := loc.Query().Get("code")
	tok, err := e.conf.Exchange(ctxT(t), code)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Errorf("exchange = %+v", tok)
	}
	if _, err := e.conf.Exchange(ctxT(t), code); err == nil {
		t.Error("authorization code accepted twice")
	}
}

func TestSimulatorRequestIDs(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/v2.0/vehicles", "/v2.0/nope", "/oauth/authorize", "/v3/connections", "/v3/nope", "/oauth2/token"} {
		r := e.do(t, "GET", path)
		// Case-insensitive: "sc-request-id" and "SC-Request-Id" are one header.
		hdr := r.header.Get("SC-Request-Id")
		if hdr == "" || r.header.Get("sc-request-id") != hdr {
			t.Errorf("%s: no sc-request-id header", path)
		}
		if strings.HasPrefix(path, "/v2.0/") {
			b := decode[v2ErrorWire](t, r.body)
			if b.RequestID != hdr || b.StatusCode != r.status {
				t.Errorf("%s: body %s vs header %s", path, r.body, hdr)
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range e.sim.Requests() {
		if seen[r.RequestID] {
			t.Errorf("request id %s given twice", r.RequestID)
		}
		seen[r.RequestID] = true
	}
}

func TestSimulatorV2ErrorBody(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken(t)
	e.sim.InjectFault(Fault{Path: "/tesla/charge", Status: 429, RetryAfter: 1500 * time.Millisecond})
	r := e.v2get(t, tok, "/vehicles/"+TeslaID+"/tesla/charge")
	b := decode[v2ErrorWire](t, r.body)
	if r.status != 429 || b.Type != "RATE_LIMIT" || b.Code == nil || *b.Code != "VEHICLE" || b.StatusCode != 429 ||
		b.Resolution.Type == nil || *b.Resolution.Type != "RETRY_LATER" || b.Description == "" ||
		b.DocURL != "https://smartcar.com/docs/errors/api-errors/rate-limit-errors#vehicle" {
		t.Errorf("429 body: %s", r.body)
	}
	if got := r.header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2 (rounded up)", got)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
}

func TestSimulatorFaultTimes(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken(t)
	charge := func() int { return e.v2get(t, tok, "/vehicles/"+TeslaID+"/tesla/charge").status }

	e.sim.InjectFault(Fault{Method: "GET", Path: "/tesla/charge", Status: 409, Times: 2})
	for i := range 2 {
		if got := charge(); got != 409 {
			t.Fatalf("call %d: %d, fault not applied", i, got)
		}
	}
	if got := charge(); got != 200 {
		t.Fatalf("fault outlived Times: %d", got)
	}

	e.sim.InjectFault(Fault{Path: "/tesla/charge", Status: 409, Code: "UNREACHABLE", Type: "VEHICLE_STATE", Times: -1})
	for range 3 {
		if got := charge(); got != 409 {
			t.Fatal("persistent fault not applied")
		}
	}
	e.sim.ClearFaults()
	if got := charge(); got != 200 {
		t.Fatalf("after ClearFaults: %d", got)
	}
	// Method filter: a POST fault leaves GETs alone.
	e.sim.InjectFault(Fault{Method: "POST", Status: 500})
	if got := charge(); got != 200 {
		t.Fatalf("GET hit a POST fault: %d", got)
	}
}

// TestSimulatorFaultBodies pins that a fault's body follows its path.
func TestSimulatorFaultBodies(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		fault Fault
		path  string
		want  string // a fragment of the body
		ctype string
	}{
		{"v2 path", Fault{Status: 409}, "/v2.0/vehicles", `"statusCode":409`, "application/json"},
		{"v3 path", Fault{Status: 409}, "/v3/connections", `{"errors":[{"status":"409","type":"VEHICLE_STATE","code":"ASLEEP"`, "application/json"},
		{"v2 token endpoint", Fault{Status: 500}, "/oauth/token", `{"error":"server_error"`, "application/json"},
		{"v3 token endpoint", Fault{Status: 401}, "/oauth2/token", `{"error":"invalid_client"`, "application/json"},
		{"OAUTH anywhere", Fault{Status: 400, Type: "OAUTH"}, "/v2.0/vehicles", `{"error":"invalid_grant"`, "application/json"},
		{"raw body", Fault{Status: 503, RawBody: "down"}, "/v3/connections", "down", "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.sim.InjectFault(tt.fault)
			r := e.do(t, "POST", tt.path)
			if r.status != tt.fault.Status || !strings.Contains(string(r.body), tt.want) || r.header.Get("Content-Type") != tt.ctype {
				t.Errorf("%d %s (%s), want %d with %s (%s)", r.status, r.body, r.header.Get("Content-Type"), tt.fault.Status, tt.want, tt.ctype)
			}
		})
	}
}

func TestSimulatorLatency(t *testing.T) {
	t.Run("door moves after the latency", func(t *testing.T) {
		e := newEnv(t)
		release := e.gate()
		tok := e.accessToken(t)
		done := make(chan error, 1)
		go func() {
			code, err := e.v2door(ctxT(t), tok, "OPEN")
			if err == nil && code != 200 {
				err = errors.New(http.StatusText(code))
			}
			done <- err
		}()
		r, err := e.sim.WaitRequest(ctxT(t), func(r Request) bool { return r.Method == "POST" && strings.HasSuffix(r.Path, "_door") })
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 0 || e.sim.ChargePortOpen(TeslaID) {
			t.Errorf("before the latency ended: status %d, door open %v", r.Status, e.sim.ChargePortOpen(TeslaID))
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !e.sim.ChargePortOpen(TeslaID) {
			t.Error("door closed after a successful OPEN")
		}
		if r.Authorization != bearerHeader(tok) {
			t.Errorf("Authorization not logged: %q", r.Authorization)
		}
	})

	t.Run("complete on cancel", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Latency = time.Hour; o.CompleteOnCancel = true })
		tok := e.accessToken(t)
		ctx, cancel := context.WithCancel(ctxT(t))
		go func() {
			e.sim.WaitRequest(ctx, func(r Request) bool { return r.Method == "POST" && strings.HasSuffix(r.Path, "_door") })
			cancel()
		}()
		if _, err := e.v2door(ctx, tok, "OPEN"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.sim.WaitRequest(ctxT(t), func(r Request) bool { return r.Status == 499 }); err != nil {
			t.Fatal(err)
		}
		if !e.sim.ChargePortOpen(TeslaID) {
			t.Error("door did not move although the car completed the command")
		}
	})
}

func TestSimulatorConcurrentUse(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken(t)
	app := e.appToken(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			a := "OPEN"
			if i%2 == 1 {
				a = "CLOSE"
			}
			if code, err := e.v2door(ctxT(t), tok, a); err != nil || code != 200 {
				t.Error(code, err)
			}
			if r := e.v2get(t, tok, "/vehicles/"+TeslaID+"/tesla/charge"); r.status != 200 {
				t.Error(r.status)
			}
			if r := e.do(t, "GET", "/v3/vehicles/"+TeslaID+"/signals", "Authorization", bearerHeader(app), "sc-user-id", UserID); r.status != 200 {
				t.Error(r.status)
			}
			e.sim.SetPluggedIn(OtherID, i%2 == 0)
			e.sim.SetSignalError(OtherID, "charge-energyadded", "UPSTREAM", "NO_RESPONSE")
			e.sim.AddVehicle(Vehicle{ID: "extra", Make: "TESLA"}, nil)
			_ = e.sim.Requests()
		})
	}
	wg.Wait()
}

func TestSimulatorPlugKnob(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken(t)
	charge := func() v2ChargeWire {
		t.Helper()
		r := e.v2get(t, tok, "/vehicles/"+TeslaID+"/tesla/charge")
		if r.status != 200 {
			t.Fatalf("tesla/charge: %d %s", r.status, r.body)
		}
		return decode[v2ChargeWire](t, r.body)
	}
	for _, tt := range []struct {
		path string
		code int
	}{
		{"/simulator/vehicles/" + TeslaID + "/plug", 200},
		{"/simulator/vehicles/nope/plug", 404},
	} {
		if r := e.do(t, "POST", tt.path); r.status != tt.code {
			t.Errorf("POST %s: %d, want %d", tt.path, r.status, tt.code)
		}
	}
	if !e.sim.ChargePortOpen(TeslaID) {
		t.Error("plugging in did not open the door, as it does on the car")
	}
	if ch := charge(); ch.IsPluggedIn == nil || !*ch.IsPluggedIn {
		t.Errorf("tesla/charge after plugging in = %+v; want plugged in", ch)
	}

	if r := e.do(t, "POST", "/simulator/vehicles/"+TeslaID+"/unplug"); r.status != http.StatusOK {
		t.Errorf("POST unplug: %d, want 200", r.status)
	}
	ch := charge()
	if ch.IsPluggedIn == nil || *ch.IsPluggedIn {
		t.Errorf("tesla/charge after unplugging: isPluggedIn = %v, want false", ch.IsPluggedIn)
	}
	if ch.ChargePortOpen == nil || !*ch.ChargePortOpen {
		t.Errorf("tesla/charge after unplugging: chargePortOpen = %v, want the door still open", ch.ChargePortOpen)
	}
}

func TestSimulatorRemoveVehicle(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken(t)
	e.sim.RemoveVehicle(OtherID)
	list := decode[v2ListWire](t, e.v2get(t, tok, "/vehicles").body)
	if len(list.Vehicles) != 1 || list.Vehicles[0] != TeslaID || list.Paging.Count != 1 {
		t.Errorf("vehicles after removing the Ford: %+v", list)
	}
	if r := e.v2get(t, tok, "/vehicles/"+OtherID); r.status != 404 {
		t.Errorf("removed vehicle: %d", r.status)
	}
}

func TestSimulatorRetireV2(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken(t)
	app := e.appToken(t)
	e.sim.RetireV2(true)

	for _, path := range []string{"/v2.0/vehicles", "/v2.0/vehicles/" + TeslaID + "/tesla/charge", "/v2.0/anything"} {
		r := e.do(t, "GET", path, "Authorization", bearerHeader(tok))
		b := decode[v2ErrorWire](t, r.body)
		if r.status != http.StatusGone || b.Type != "RESOURCE_NOT_FOUND" || b.Code == nil || *b.Code != "VERSION" ||
			b.StatusCode != 410 || !strings.Contains(b.Description, "retired") {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	// Only the API: the token endpoints, Connect and v3 still answer.
	if _, err := e.conf.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: e.sim.IssueRefreshToken()}).Token(); err != nil {
		t.Errorf("v2 token endpoint after retirement: %v", err)
	}
	if r := e.do(t, "GET", "/v3/connections", "Authorization", bearerHeader(app)); r.status != 200 {
		t.Errorf("v3 after v2's retirement: %d", r.status)
	}
	e.sim.RetireV2(false)
	if r := e.v2get(t, tok, "/vehicles"); r.status != 200 {
		t.Errorf("v2 back: %d", r.status)
	}
}
