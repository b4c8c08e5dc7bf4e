package smartcar

import (
	"context"
	"net/http"
	"net/url"
	"strings"
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
	deadline := time.After(10 * time.Second)
	for {
		changed := w.Changed()
		s := w.State()
		if s.Phase == phase {
			return s
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("Connect is %q (%s), want %q", s.Phase, s.Problem, phase)
		}
	}
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
	if err := w.Finish(t.Context(), back); err != ErrNoFlow {
		t.Errorf("the same address twice: %v, want ErrNoFlow", err)
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
