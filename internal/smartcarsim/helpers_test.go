package smartcarsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"

	"golang.org/x/oauth2"
)

// Credentials the tests' simulators are configured with.
const (
	testClientID        = "test-client-id"
	testClientSecret    = "test-client-secret-Zq9"
	testAPIClientID     = "test-api-client-id"
	testAPIClientSecret = "test-api-client-secret-Xv4"
	testApplicationID   = "test-application-id"
	testRedirectURL     = "http://localhost:8000/callback"
)

// env is a Simulator behind a real HTTP server and a v2 OAuth config
// pointing at it.
type env struct {
	sim   *Simulator
	srv   *httptest.Server
	clock *itest.Clock
	conf  *oauth2.Config // v2: Basic auth at /oauth/token, Connect at /oauth/authorize
}

func newEnv(t *testing.T, tweak ...func(*Options)) *env {
	t.Helper()
	clock := itest.NewClock()
	opts := Options{
		ClientID: testClientID, ClientSecret: testClientSecret,
		APIClientID: testAPIClientID, APIClientSecret: testAPIClientSecret,
		ApplicationID: testApplicationID,
		Now:           clock.Now,
	}
	for _, f := range tweak {
		f(&opts)
	}
	sim := New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &env{
		sim:   sim,
		srv:   srv,
		clock: clock,
		conf: &oauth2.Config{
			ClientID:     testClientID,
			ClientSecret: testClientSecret,
			Endpoint: oauth2.Endpoint{
				AuthURL:   srv.URL + "/oauth/authorize",
				TokenURL:  srv.URL + "/oauth/token",
				AuthStyle: oauth2.AuthStyleInHeader,
			},
			RedirectURL: testRedirectURL,
			Scopes:      []string{"read_vehicle_info", "read_charge", "control_charge"},
		},
	}
}

// gate replaces the simulator's command latency with a wait the test ends
// by closing the returned channel.
func (e *env) gate() chan<- struct{} {
	release := make(chan struct{})
	e.sim.mu.Lock()
	defer e.sim.mu.Unlock()
	e.sim.wait = func(ctx context.Context) bool {
		select {
		case <-release:
			return true
		case <-ctx.Done():
			return false
		}
	}
	return release
}

// accessToken spends a fresh v2 refresh token for an access token.
func (e *env) accessToken(t *testing.T) string {
	t.Helper()
	tok, err := e.conf.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: e.sim.IssueRefreshToken()}).Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// appTokenBody is the client_credentials grant's answer, as a client reads it.
type appTokenBody struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// appToken gets a v3 application token with the form credentials.
func (e *env) appToken(t *testing.T) string {
	t.Helper()
	r := e.postForm(t, "/oauth2/token", url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {testAPIClientID},
		"client_secret": {testAPIClientSecret},
	}, "", "")
	if r.status != http.StatusOK {
		t.Fatalf("app token: %d %s", r.status, r.body)
	}
	return decode[appTokenBody](t, r.body).AccessToken
}

// response is one answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with header name/value pairs and reads the answer.
func (e *env) do(t *testing.T, method, path string, header ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return e.send(t, req)
}

func (e *env) send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// postForm posts a form, with HTTP Basic credentials unless user is "".
func (e *env) postForm(t *testing.T, path string, form url.Values, user, pass string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), "POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return e.send(t, req)
}

// requestsTo returns the logged requests whose path ends with suffix.
func (e *env) requestsTo(method, suffix string) []Request {
	var out []Request
	for _, r := range e.sim.Requests() {
		if (method == "" || r.Method == method) && strings.HasSuffix(r.Path, suffix) {
			out = append(out, r)
		}
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

func bearerHeader(tok string) string { return "Bearer " + tok }
