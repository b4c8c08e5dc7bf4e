package smartcar

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

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
	if !errors.As(err, &re) || re.Response.StatusCode != 400 || re.ErrorCode != CodeInvalidGrant {
		t.Fatalf("used refresh token: %v", err)
	}
	if _, err := e.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Errorf("rotated refresh token refused: %v", err)
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
	if loc.Query().Get("state") != "st4te" {
		t.Errorf("state = %q", loc.Query().Get("state"))
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
	for _, path := range []string{"/v2.0/vehicles", "/v2.0/nope", "/oauth/authorize"} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		hdr := resp.Header.Get(RequestIDHeader)
		if hdr == "" {
			t.Errorf("%s: no %s header", path, RequestIDHeader)
		}
		if resp.StatusCode == 401 || resp.StatusCode == 404 {
			var b struct {
				RequestID  string `json:"requestId"`
				StatusCode int    `json:"statusCode"`
			}
			if err := json.Unmarshal(body, &b); err != nil || b.RequestID != hdr || b.StatusCode != resp.StatusCode {
				t.Errorf("%s: body %s vs header %s", path, body, hdr)
			}
		}
	}
}

func TestSimulatorFaultTimes(t *testing.T) {
	e := newEnv(t)
	st := &staticTokens{access: e.accessToken(t)}
	c := NewClient(e.apiURL, st)
	ctx := ctxT(t)

	// 409, not 5xx: the client retries 5xx, which would hide the count.
	e.sim.InjectFault(Fault{Method: "GET", Path: "/tesla/charge", Status: 409, Times: 2})
	for i := range 2 {
		if _, err := c.TeslaCharge(ctx, SimTeslaID); err == nil {
			t.Fatalf("call %d: fault not applied", i)
		}
	}
	if _, err := c.TeslaCharge(ctx, SimTeslaID); err != nil {
		t.Fatalf("fault outlived Times: %v", err)
	}

	e.sim.InjectFault(Fault{Path: "/tesla/charge", Status: 409, Code: "UNREACHABLE", Type: TypeVehicleState, Times: -1})
	for range 3 {
		if _, err := c.TeslaCharge(ctx, SimTeslaID); err == nil {
			t.Fatal("persistent fault not applied")
		}
	}
	e.sim.ClearFaults()
	if _, err := c.TeslaCharge(ctx, SimTeslaID); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
	// Method filter: a POST fault leaves GETs alone.
	e.sim.InjectFault(Fault{Method: "POST", Status: 500})
	if _, err := c.TeslaCharge(ctx, SimTeslaID); err != nil {
		t.Fatalf("GET hit a POST fault: %v", err)
	}
}

func TestSimulatorLatency(t *testing.T) {
	tesla := Vehicle{ID: SimTeslaID, Make: "TESLA"}

	t.Run("door moves after the latency", func(t *testing.T) {
		e := newEnv(t, func(o *SimOptions) { o.Latency = 20 * time.Millisecond })
		c := NewClient(e.apiURL, &staticTokens{access: e.accessToken(t)})
		done := make(chan error, 1)
		go func() { done <- c.ChargePortDoor(ctxT(t), tesla, Open) }()
		r, err := e.sim.WaitRequest(ctxT(t), func(r SimRequest) bool { return r.Method == "POST" && strings.HasSuffix(r.Path, "_door") })
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !e.sim.ChargePortOpen(SimTeslaID) {
			t.Error("door closed after a successful OPEN")
		}
		if r.Authorization == "" || !strings.HasPrefix(r.Authorization, "Bearer ") {
			t.Errorf("Authorization not logged: %q", r.Authorization)
		}
	})

	t.Run("complete on cancel", func(t *testing.T) {
		e := newEnv(t, func(o *SimOptions) { o.Latency = time.Hour; o.CompleteOnCancel = true })
		c := NewClient(e.apiURL, &staticTokens{access: e.accessToken(t)})
		ctx, cancel := context.WithCancel(ctxT(t))
		go func() {
			e.sim.WaitRequest(ctx, func(r SimRequest) bool { return r.Method == "POST" && strings.HasSuffix(r.Path, "_door") })
			cancel()
		}()
		if err := c.ChargePortDoor(ctx, tesla, Open); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.sim.WaitRequest(ctxT(t), func(r SimRequest) bool { return r.Status == 499 }); err != nil {
			t.Fatal(err)
		}
		if !e.sim.ChargePortOpen(SimTeslaID) {
			t.Error("door did not move although the car completed the command")
		}
	})
}

func TestSimulatorConcurrentUse(t *testing.T) {
	e := newEnv(t)
	c := NewClient(e.apiURL, &staticTokens{access: e.accessToken(t)})
	ctx := ctxT(t)
	tesla := Vehicle{ID: SimTeslaID, Make: "TESLA"}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			a := Open
			if i%2 == 1 {
				a = Close
			}
			if err := c.ChargePortDoor(ctx, tesla, a); err != nil {
				t.Error(err)
			}
			if _, err := c.TeslaCharge(ctx, SimTeslaID); err != nil {
				t.Error(err)
			}
			e.sim.SetPluggedIn(SimOtherID, i%2 == 0)
			_ = e.sim.Requests()
		})
	}
	wg.Wait()
}

func TestSimulatorPlugKnob(t *testing.T) {
	e := newEnv(t)
	sim, srv := e.sim, e.srv
	c, _ := e.client(t)
	ctx := ctxT(t)
	for _, tt := range []struct {
		path string
		code int
	}{
		{"/simulator/vehicles/" + SimTeslaID + "/plug", 200},
		{"/simulator/vehicles/nope/plug", 404},
	} {
		resp, err := http.Post(srv.URL+tt.path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("POST %s: %d, want %d", tt.path, resp.StatusCode, tt.code)
		}
	}
	if !sim.ChargePortOpen(SimTeslaID) {
		t.Error("plugging in did not open the door, as it does on the car")
	}
	if ch, err := c.TeslaCharge(ctx, SimTeslaID); err != nil || ch.IsPluggedIn == nil || !*ch.IsPluggedIn {
		t.Errorf("tesla/charge after plugging in = %+v, %v; want plugged in", ch, err)
	}

	resp, err := http.Post(srv.URL+"/simulator/vehicles/"+SimTeslaID+"/unplug", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST unplug: %d, want 200", resp.StatusCode)
	}
	ch, err := c.TeslaCharge(ctx, SimTeslaID)
	if err != nil {
		t.Fatal(err)
	}
	if ch.IsPluggedIn == nil || *ch.IsPluggedIn {
		t.Errorf("tesla/charge after unplugging: isPluggedIn = %v, want false", ch.IsPluggedIn)
	}
	if ch.ChargePortOpen == nil || !*ch.ChargePortOpen {
		t.Errorf("tesla/charge after unplugging: chargePortOpen = %v, want the door still open", ch.ChargePortOpen)
	}
}
