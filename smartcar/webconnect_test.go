package smartcar

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// approve plays the user's browser at Smartcar Connect and returns the
// address Connect sends it back to, without going there: for a user of the
// web page that address is often unreachable (localhost of another machine).
func approve(t *testing.T, link string) string {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(link)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("Connect answered %d, want a redirect", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// waitPhase waits until the flow reaches phase, or fails at the deadline.
func waitPhase(t *testing.T, w *WebConnect, phase ConnectPhase) ConnectState {
	t.Helper()
	return waitState(t, w, "reached "+string(phase), func(s ConnectState) bool { return s.Phase == phase })
}

func TestWebConnectV3ShowsTheNewCarOnceTheDaemonHasIt(t *testing.T) {
	e := newEnv(t)
	client, _ := e.v3Client()
	mine := smartcarsim.Vehicle{ID: "web-car", UserID: "web-user", Make: "TESLA", Model: "Model Y", Year: 2024}
	e.sim.QueueConnect(mine, []string{PermReadVehicleInfo, PermReadCharge, PermControlCharge})
	var handed atomic.Pointer[Connected]
	w := NewWebConnectV3(t.Context(), ConnectV3{
		ApplicationID: testApplicationID, ConnectURL: e.srv.URL + "/oauth/authorize", RedirectURI: "http://localhost:8000/callback",
		Mode: "test", Client: client, Interval: func(time.Duration) time.Duration { return 10 * time.Millisecond },
	}, nil, func(_ context.Context, c Connected) error {
		handed.Store(&c)
		return nil
	})
	if s := w.State(); s.Phase != ConnectIdle {
		t.Fatalf("before Start: %+v", s)
	}
	link, err := w.Start()
	if err != nil {
		t.Fatal(err)
	}
	if s := w.State(); s.Phase != ConnectWaiting || s.Link != link || s.NeedsAddress {
		t.Errorf("after Start: %+v", s)
	}
	// A double click is the same flow: the same link, no second listing.
	if again, _ := w.Start(); again != link {
		t.Error("a second Start at once began another flow")
	}
	approve(t, link)
	s := waitPhase(t, w, ConnectConnected)
	if len(s.New) != 1 || s.New[0].ID != "web-car" {
		t.Errorf("connected %+v", s.New)
	}
	c := handed.Load()
	if c == nil || len(c.Vehicles) != 3 {
		t.Fatalf("the daemon was handed %+v, want the whole listing", c)
	}
	if s.Link != "" {
		t.Error("the link of a finished flow is still shown")
	}
}

func TestWebConnectV3TimesOutInWords(t *testing.T) {
	e := newEnv(t)
	client, _ := e.v3Client()
	w := NewWebConnectV3(t.Context(), ConnectV3{
		ApplicationID: testApplicationID, ConnectURL: e.srv.URL + "/oauth/authorize", RedirectURI: "http://localhost:8000/callback",
		Client: client, Interval: func(time.Duration) time.Duration { return 10 * time.Millisecond }, For: 50 * time.Millisecond,
	}, nil, func(context.Context, Connected) error { t.Error("nothing was connected"); return nil })
	if _, err := w.Start(); err != nil {
		t.Fatal(err)
	}
	s := waitPhase(t, w, ConnectFailed)
	if !strings.Contains(s.Problem, "no new connection appeared within 50ms") || strings.Contains(s.Problem, "smartcar connect:") {
		t.Errorf("problem %q", s.Problem)
	}
}

func TestWebConnectV2TakesThePastedAddress(t *testing.T) {
	e := newEnv(t)
	var adopted atomic.Int64
	w := NewWebConnectV2(t.Context(), Connect{Config: e.conf, Mode: "test", Store: e.store},
		func(context.Context, Connected) error { adopted.Add(1); return nil })
	if err := w.Finish(t.Context(), "http://localhost:8000/callback?code=x&state=y"); err != ErrNoFlow {
		t.Errorf("Finish before Start: %v, want ErrNoFlow", err)
	}
	link, err := w.Start()
	if err != nil {
		t.Fatal(err)
	}
	if s := w.State(); !s.NeedsAddress {
		t.Errorf("a v2.0 flow does not ask for the address: %+v", s)
	}
	back := approve(t, link)
	u, _ := url.Parse(back)
	for _, tt := range []struct{ address, want string }{
		{"", "paste the address"},
		{"hello", "not the address Smartcar sent the browser to"},
		{"http://localhost:8000/callback?code=" + u.Query().Get("code") + "&state=forged", "belongs to another Connect"},
		{"http://localhost:8000/callback?state=" + u.Query().Get("state"), "carries no code"},
	} {
		err := w.Finish(t.Context(), tt.address)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Finish(%q) = %v, want %q", tt.address, err, tt.want)
		}
	}
	if s := w.State(); s.Phase != ConnectWaiting {
		t.Fatalf("a wrong address ended the flow: %+v", s)
	}
	if _, _, err := e.store.LoadObtained(); err == nil {
		t.Fatal("a login was saved before the right address came")
	}
	if err := w.Finish(t.Context(), "  "+back+"\n"); err != nil {
		t.Fatalf("Finish with the address the browser ended on: %v", err)
	}
	if s := w.State(); s.Phase != ConnectConnected || adopted.Load() != 1 {
		t.Errorf("after Finish: %+v, daemon told %d times", s, adopted.Load())
	}
	if tok, _, err := e.store.LoadObtained(); err != nil || tok.RefreshToken == "" {
		t.Errorf("the login was not saved: %v", err)
	}
	// The same address again (a double click, a reload) is the success it was.
	if err := w.Finish(t.Context(), back); err != nil {
		t.Errorf("the same address twice: %v, want the success it was", err)
	}
	if n := e.tokenRequests(); n != 1 {
		t.Errorf("%d code exchanges, want 1", n)
	}
	if err := w.Finish(t.Context(), strings.Replace(back, "state=", "state=x", 1)); err != ErrNoFlow {
		t.Errorf("another address once the flow ended: %v, want ErrNoFlow", err)
	}
}

// waitState waits until the flow's state satisfies ok, or fails at the deadline.
func waitState(t *testing.T, w *WebConnect, what string, ok func(ConnectState) bool) ConnectState {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := w.Changed()
		s := w.State()
		if ok(s) {
			return s
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("Connect never %s: %+v", what, s)
		}
	}
}

// An API v2.0 login names no car by itself: the daemon's first listing with
// it does, and the page names those cars as it does for API v3.
func TestWebConnectV2NamesTheCarsOfTheNewLogin(t *testing.T) {
	e := newEnv(t)
	var w *WebConnect
	listed := make(chan []VehicleDetails, 1)
	w = NewWebConnectV2(t.Context(), Connect{Config: e.conf, Mode: "test", Store: e.store, Now: e.clock.Now},
		func(ctx context.Context, _ Connected) error {
			// As the daemon does: take the saved login, and list with it
			// in the background.
			tokens, err := NewTokens(ctx, e.conf, e.store, "", WithNow(e.clock.Now))
			if err != nil {
				return err
			}
			client := NewV2Client(e.apiURL, tokens, WithHTTPClient(e.srv.Client()))
			go func() {
				vs, err := client.Vehicles(ctx, nil)
				if err != nil {
					t.Errorf("the new login's listing: %v", err)
				}
				w.Listed(vs)
				listed <- vs
			}()
			return nil
		})
	link, err := w.Start()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(t.Context(), approve(t, link)); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	s := waitState(t, w, "named the cars of the new login", func(s ConnectState) bool { return len(s.New) > 0 })
	var names []string
	for _, v := range s.New {
		names = append(names, v.Make+" "+v.Model)
	}
	if s.Phase != ConnectConnected || strings.Join(names, ", ") != "TESLA Model 3, FORD Mustang Mach-E" {
		t.Errorf("connected %v (%s), want the Tesla and the Ford", names, s.Phase)
	}

	// Later listings (the daily one) are not this flow's news.
	<-listed
	w.Listed([]VehicleDetails{{Vehicle: Vehicle{ID: "another", Make: "KIA"}}})
	if s := w.State(); len(s.New) != 2 {
		t.Errorf("a later listing renamed the connected cars: %+v", s.New)
	}
}

// A double-clicked Finish: the first claims the flow and its code is
// exchanged once; the second, while the exchange runs, waits for it and
// answers its success, even when the browser gave up on the first request.
func TestWebConnectV2FinishTwiceExchangesOnce(t *testing.T) {
	e := newEnv(t)
	// Smartcar's token endpoint, held until the test lets the exchange through.
	arrived := make(chan struct{}, 4)
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
			arrived <- struct{}{}
			<-hold
		}
		e.sim.ServeHTTP(rw, r)
	}))
	t.Cleanup(front.Close)
	t.Cleanup(release) // before Close, which waits for held requests
	conf := OAuthConfig(testClientID, testClientSecret, front.URL+"/oauth/token", e.srv.URL+"/oauth/authorize",
		"http://localhost:8000/callback", []string{PermReadVehicleInfo, PermReadCharge, PermControlCharge})

	var adopted atomic.Int64
	w := NewWebConnectV2(t.Context(), Connect{Config: conf, Mode: "test", Store: e.store},
		func(context.Context, Connected) error { adopted.Add(1); return nil })
	joined := make(chan struct{}, 4)
	w.joined = func() { joined <- struct{}{} }
	link, err := w.Start()
	if err != nil {
		t.Fatal(err)
	}
	back := approve(t, link)

	firstCtx, abandon := context.WithCancel(t.Context())
	first, second := make(chan error, 1), make(chan error, 1)
	go func() { first <- w.Finish(firstCtx, back) }()
	deadline := time.After(10 * time.Second)
	select {
	case <-arrived:
	case <-deadline:
		t.Fatal("the first Finish never reached the token endpoint")
	}
	if s := w.State(); s.Phase != ConnectWaiting || s.NeedsAddress {
		t.Errorf("while the code is exchanged: %+v, want waiting without asking for the address", s)
	}
	go func() { second <- w.Finish(t.Context(), back) }()
	select {
	case <-joined:
	case <-arrived:
		t.Fatal("the second Finish exchanged the code again")
	case err := <-second:
		t.Fatalf("the second Finish answered before the exchange ended: %v", err)
	case <-deadline:
		t.Fatal("the second Finish neither waited nor exchanged")
	}
	// The browser drops the first request when the second is sent.
	abandon()
	select {
	case err := <-first:
		if err == nil {
			t.Error("an abandoned Finish answered success before the exchange ended")
		}
	case <-deadline:
		t.Fatal("an abandoned Finish did not return")
	}
	release()
	select {
	case err := <-second:
		if err != nil {
			t.Errorf("the second Finish: %v, want the success of the first", err)
		}
	case <-deadline:
		t.Fatal("the second Finish never answered")
	}
	if s := w.State(); s.Phase != ConnectConnected {
		t.Errorf("after the exchange: %+v", s)
	}
	if n, a := e.tokenRequests(), adopted.Load(); n != 1 || a != 1 {
		t.Errorf("%d code exchanges and the daemon told %d times, want 1 and 1", n, a)
	}
	if tok, _, err := e.store.LoadObtained(); err != nil || tok.RefreshToken == "" {
		t.Errorf("the login was not saved: %v", err)
	}
	// A third, after the success: the same answer, no exchange.
	if err := w.Finish(t.Context(), back); err != nil {
		t.Errorf("Finish after the success: %v", err)
	}
	if n := e.tokenRequests(); n != 1 {
		t.Errorf("%d code exchanges, want 1", n)
	}
}

func TestWebConnectV2DeniedEndsTheFlow(t *testing.T) {
	e := newEnv(t, func(o *smartcarsim.Options) { o.DenyConnect = true })
	w := NewWebConnectV2(t.Context(), Connect{Config: e.conf, Store: e.store},
		func(context.Context, Connected) error { t.Error("nothing was connected"); return nil })
	link, err := w.Start()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(t.Context(), approve(t, link)); err == nil {
		t.Fatal("a denied Connect finished")
	}
	if s := w.State(); s.Phase != ConnectFailed || !strings.Contains(s.Problem, "did not grant access") {
		t.Errorf("after a denial: %+v", s)
	}
}
