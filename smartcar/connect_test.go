package smartcar

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"golang.org/x/oauth2"
)

// transcript is Connect.Out for tests: it keeps everything written and hands
// each write to the test as it happens, so the test can wait for the URL
// instead of sleeping.
type transcript struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes chan string
}

func newTranscript() *transcript { return &transcript{writes: make(chan string, 64)} }

func (w *transcript) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.writes <- string(p):
	default: // the test only waits for the first writes
	}
	return len(p), nil
}

func (w *transcript) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// connectURL waits for Run to print the Connect URL (an indented line).
func (w *transcript) connectURL(t *testing.T, ctx context.Context) string {
	t.Helper()
	for {
		select {
		case s := <-w.writes:
			for _, line := range strings.Split(s, "\n") {
				if u, ok := strings.CutPrefix(line, "  "); ok && strings.HasPrefix(u, "http") {
					return u
				}
			}
		case <-ctx.Done():
			t.Fatalf("no Connect URL printed; output so far:\n%s", w.String())
		}
	}
}

// freeRedirectURI returns http://127.0.0.1:<a free port>/callback.
func freeRedirectURI(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/callback"
}

type connectRun struct {
	out  *transcript
	conf *oauth2.Config
	done chan struct{}
	tok  *oauth2.Token
	err  error
}

// startConnect runs Connect against the env's simulator in the background.
func (e *env) startConnect(t *testing.T, ctx context.Context) *connectRun {
	t.Helper()
	conf := *e.conf
	conf.RedirectURL = freeRedirectURI(t)
	conf.Scopes = nil // Connect's default
	r := &connectRun{out: newTranscript(), conf: &conf, done: make(chan struct{})}
	c := Connect{Config: &conf, Mode: "test", Store: e.store, Out: r.out, HTTPClient: e.srv.Client(), Now: e.clock.Now}
	go func() {
		defer close(r.done)
		r.tok, r.err = c.Run(ctx)
	}()
	return r
}

func (r *connectRun) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-r.done:
	case <-ctx.Done():
		t.Fatalf("Run did not return; output:\n%s", r.out.String())
	}
}

// browse plays the browser: GET u, following redirects.
func browse(t *testing.T, ctx context.Context, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestConnectEndToEnd(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	run := e.startConnect(t, ctx)

	u := run.out.connectURL(t, ctx)
	status, page := browse(t, ctx, u)
	if status != http.StatusOK || !strings.Contains(page, "Vehicle connected") {
		t.Fatalf("browser got %d:\n%s", status, page)
	}
	run.wait(t, ctx)
	if run.err != nil {
		t.Fatalf("Run: %v\n%s", run.err, run.out.String())
	}

	// The Connect URL carried what Smartcar documents.
	auth := e.requestsTo("GET", "/oauth/authorize")
	if len(auth) != 1 {
		t.Fatalf("authorize requests: %d", len(auth))
	}
	q, _ := url.ParseQuery(auth[0].Query)
	for k, want := range map[string]string{
		"response_type": "code", "client_id": testClientID, "redirect_uri": run.conf.RedirectURL,
		"scope": "read_vehicle_info read_charge control_charge", "mode": "test", "approval_prompt": "auto",
	} {
		if q.Get(k) != want {
			t.Errorf("Connect URL %s = %q, want %q", k, q.Get(k), want)
		}
	}
	if len(q.Get("state")) < 32 {
		t.Errorf("state %q is too short to be unguessable", q.Get("state"))
	}

	// The pair is on disk, obtained now, and Smartcar accepts it.
	st, obtained, err := e.store.LoadObtained()
	if err != nil || st.RefreshToken != run.tok.RefreshToken || st.AccessToken != run.tok.AccessToken {
		t.Fatalf("store = %+v, %v; Run returned %+v", st, err, run.tok)
	}
	if !obtained.Equal(e.clock.Now()) || !st.Expiry.Equal(e.clock.Now().Add(2*time.Hour)) {
		t.Errorf("obtained_at %v, expiry %v", obtained, st.Expiry)
	}
	tk, err := NewTokens(ctx, e.conf, e.store, "", WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	tk.Invalidate()
	if tok, err := tk.Token(); err != nil || tok.RefreshToken == run.tok.RefreshToken {
		t.Fatalf("refresh with the new pair: %v", err)
	}

	// The terminal shows the URL and the outcome, never a code or token.
	out := run.out.String()
	code, _ := url.ParseQuery(e.requestsTo("POST", "/oauth/token")[0].Body)
	for _, secret := range []string{code.Get("code"), run.tok.AccessToken, run.tok.RefreshToken, testClientSecret} {
		if strings.Contains(out, secret) {
			t.Errorf("output contains a secret:\n%s", out)
		}
	}
	if !strings.Contains(out, "tokens saved to "+e.store.Path()) {
		t.Errorf("output:\n%s", out)
	}

	// The callback server is gone.
	if _, err := http.Get(run.conf.RedirectURL); err == nil {
		t.Error("callback server still answers after Run returned")
	}
}

func TestConnectForgedStateIsRejectedAndTheFlowGoesOn(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	run := e.startConnect(t, ctx)
	u := run.out.connectURL(t, ctx)

	for _, forged := range []string{
		"?code=forged-code&state=not-the-state",
		"?code=forged-code",
		"?error=access_denied&error_description=forged&state=not-the-state",
	} {
		status, page := browse(t, ctx, run.conf.RedirectURL+forged)
		if status != http.StatusBadRequest || !strings.Contains(page, "state does not match") {
			t.Errorf("%s: %d\n%s", forged, status, page)
		}
	}
	select {
	case <-run.done:
		t.Fatalf("a forged callback ended the flow: %v", run.err)
	default:
	}

	if status, _ := browse(t, ctx, u); status != http.StatusOK {
		t.Fatalf("real callback: %d", status)
	}
	run.wait(t, ctx)
	if run.err != nil {
		t.Fatal(run.err)
	}
	if n := e.tokenRequests(); n != 1 {
		t.Errorf("token endpoint called %d times, want once (the forged code never exchanged)", n)
	}
	if !strings.Contains(run.out.String(), "wrong state") {
		t.Errorf("forged callbacks not mentioned:\n%s", run.out.String())
	}
}

// failedConnect runs a Connect flow the browser completes but that must
// fail: the browser gets wantStatus and a page containing wantPage, Run
// returns an error, and nothing is saved.
func (e *env) failedConnect(t *testing.T, wantStatus int, wantPage string) *connectRun {
	t.Helper()
	ctx := ctxT(t)
	run := e.startConnect(t, ctx)
	status, page := browse(t, ctx, run.out.connectURL(t, ctx))
	if status != wantStatus || !strings.Contains(page, wantPage) {
		t.Errorf("browser got %d, want %d with %q:\n%s", status, wantStatus, wantPage, page)
	}
	run.wait(t, ctx)
	if run.err == nil || run.tok != nil {
		t.Fatalf("Run = %+v, %v; want an error", run.tok, run.err)
	}
	if _, err := e.store.Load(); !errors.Is(err, ErrNoToken) {
		t.Errorf("store after a failed flow: %v, want ErrNoToken", err)
	}
	return run
}

func TestConnectAccessDenied(t *testing.T) {
	e := newEnv(t, func(o *smartcarsim.Options) { o.DenyConnect = true })
	run := e.failedConnect(t, http.StatusOK, "User denied access to application.")
	var se *Error
	if !errors.As(run.err, &se) || se.Type != TypeConnect || se.Code != CodeAccessDenied {
		t.Fatalf("err = %v, want a CONNECT access_denied *Error", run.err)
	}
	if !strings.Contains(run.err.Error(), "User denied access") {
		t.Errorf("error does not say why: %v", run.err)
	}
	if out := run.out.String(); !strings.Contains(out, "access_denied: User denied access to application.") {
		t.Errorf("output does not show the error:\n%s", out)
	}
	if n := e.tokenRequests(); n != 0 {
		t.Errorf("token endpoint called %d times", n)
	}
}

func TestConnectExchangeFailure(t *testing.T) {
	e := newEnv(t)
	e.sim.InjectFault(smartcarsim.Fault{Path: "/oauth/token", Status: 400, Type: TypeOAuth, Code: "invalid_grant"})
	run := e.failedConnect(t, http.StatusBadGateway, "invalid_grant")
	var se *Error
	if !errors.As(run.err, &se) || se.Type != TypeOAuth || se.Code != "invalid_grant" {
		t.Fatalf("err = %v, want an OAUTH *Error", run.err)
	}
	code, _ := url.ParseQuery(e.requestsTo("POST", "/oauth/token")[0].Body)
	if c := code.Get("code"); c == "" || strings.Contains(run.err.Error(), c) || strings.Contains(run.out.String(), c) {
		t.Errorf("the code leaked into the error or output: %v", run.err)
	}
}

func TestConnectCancelStopsTheServer(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	run := e.startConnect(t, ctx)
	run.out.connectURL(t, ctxT(t))
	if resp, err := http.Get(run.conf.RedirectURL + "?state=x"); err != nil {
		t.Fatalf("callback not served while waiting: %v", err)
	} else {
		resp.Body.Close()
	}

	cancel()
	run.wait(t, ctxT(t))
	if !errors.Is(run.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", run.err)
	}
	// The port is free again: the server is really gone.
	u, _ := url.Parse(run.conf.RedirectURL)
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatalf("port still held after Run returned: %v", err)
	}
	ln.Close()
}

func TestConnectConfiguration(t *testing.T) {
	e := newEnv(t)
	base := Connect{Config: e.conf, Store: e.store}

	for _, uri := range []string{"https://localhost:8000/callback", "ftp://localhost/cb", "localhost:8000", "http:///callback", "http://[::1"} {
		if _, _, _, err := callbackTarget(uri); err == nil {
			t.Errorf("redirect URI %q accepted", uri)
		}
	}
	path, addr, note, err := callbackTarget("http://localhost/cb")
	if err != nil || path != "/cb" || addr != "localhost:80" || !strings.Contains(note, "port 80") {
		t.Errorf("no port: %q %q %q %v", path, addr, note, err)
	}
	path, addr, note, err = callbackTarget("http://[::1]:8000")
	if err != nil || path != "/" || addr != "[::1]:8000" || note != "" {
		t.Errorf("IPv6, no path: %q %q %q %v", path, addr, note, err)
	}

	c := base
	c.Mode = "sandbox"
	if _, err := c.Run(ctxT(t)); err == nil || !strings.Contains(err.Error(), "sandbox") {
		t.Errorf("bad mode: %v", err)
	}
	c = base
	c.Store = nil
	if _, err := c.Run(ctxT(t)); err == nil {
		t.Error("no store accepted")
	}

	// Live mode and approval_prompt=force; explicit scopes win.
	c = base
	c.ForcePrompt = true
	u, err := c.AuthURL("s")
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	q := pu.Query()
	if q.Get("mode") != "live" || q.Get("approval_prompt") != "force" || q.Get("scope") != strings.Join(e.conf.Scopes, " ") || q.Get("state") != "s" {
		t.Errorf("AuthURL = %s", u)
	}
	if pu.Scheme+"://"+pu.Host+pu.Path != e.srv.URL+"/oauth/authorize" {
		t.Errorf("AuthURL endpoint = %s", u)
	}
}

func TestSimulatorAuthorizeValidates(t *testing.T) {
	e := newEnv(t)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	good := url.Values{
		"response_type": {"code"}, "client_id": {testClientID}, "redirect_uri": {"http://127.0.0.1:9/cb"},
		"scope": {DefaultScope}, "state": {"st"}, "mode": {"test"},
	}
	for name, change := range map[string]func(url.Values){
		"client_id":     func(v url.Values) { v.Set("client_id", "other") },
		"response_type": func(v url.Values) { v.Set("response_type", "token") },
		"no type":       func(v url.Values) { v.Del("response_type") },
		"redirect":      func(v url.Values) { v.Set("redirect_uri", "javascript:alert(1)") },
		"relative":      func(v url.Values) { v.Set("redirect_uri", "/cb") },
		"mode":          func(v url.Values) { v.Set("mode", "sandbox") },
		"prompt":        func(v url.Values) { v.Set("approval_prompt", "always") },
	} {
		q := url.Values{}
		for k, v := range good {
			q[k] = v
		}
		change(q)
		resp, err := noFollow.Get(e.srv.URL + "/oauth/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400 and no redirect", name, resp.StatusCode)
		}
	}
	resp, err := noFollow.Get(e.srv.URL + "/oauth/authorize?" + good.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st" {
		t.Errorf("valid request: %d → %s", resp.StatusCode, loc)
	}
}

func TestPrintVehiclesTable(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	e.sim.AddVehicle(smartcarsim.Vehicle{ID: "tesla-no-control", Make: "TESLA", Model: "Model Y", Year: 2023}, []string{PermReadVehicleInfo, PermReadCharge})
	vs, err := FleetCache{Path: filepath.Join(e.dir, FleetFile)}.Vehicles(ctxT(t), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 {
		t.Fatalf("vehicles = %+v", vs)
	}
	var b strings.Builder
	if err := PrintVehicles(&b, vs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := [][]string{
		{"MAKE", "MODEL", "YEAR", "ID", "CHARGE PORT DOOR"},
		{"TESLA", "Model 3", "2021", smartcarsim.TeslaID, "yes"},
		{"FORD", "Mustang Mach-E", "2022", smartcarsim.OtherID, "no: Smartcar API v2.0 offers the charge port door command for Tesla only"},
		{"TESLA", "Model Y", "2023", "tesla-no-control", "no: permission control_charge not granted (allow it in Smartcar Connect: Connect a car on the web page, or smartcar2mqtt auth)"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", b.String())
	}
	for i, cols := range want {
		rest := lines[i]
		for _, col := range cols {
			idx := strings.Index(rest, col)
			if idx < 0 {
				t.Errorf("line %d %q lacks %q in order", i, lines[i], col)
				break
			}
			rest = rest[idx+len(col):]
		}
	}

	b.Reset()
	if err := PrintVehicles(&b, nil); err != nil || !strings.Contains(b.String(), "No vehicles") {
		t.Errorf("empty table: %q", b.String())
	}
}
