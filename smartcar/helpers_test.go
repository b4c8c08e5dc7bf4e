package smartcar

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"golang.org/x/oauth2"
)

const (
	testClientID        = "test-client-id"
	testClientSecret    = "test-client-secret-Zq9"
	testAPIClientID     = "client_test"
	testAPIClientSecret = "test-api-secret-Xk4"
	testApplicationID   = "test-application"
)

// env is a Simulator behind a real HTTP server, a token store in a temp dir
// and the OAuth config pointing at it.
type env struct {
	sim      *smartcarsim.Simulator
	srv      *httptest.Server
	clock    *itest.Clock
	dir      string
	conf     *oauth2.Config
	store    *TokenStore
	apiURL   string
	tokenURL string
}

func newEnv(t testing.TB, tweak ...func(*smartcarsim.Options)) *env {
	t.Helper()
	clock := itest.NewClock()
	opts := smartcarsim.Options{ClientID: testClientID, ClientSecret: testClientSecret, Now: clock.Now,
		APIClientID: testAPIClientID, APIClientSecret: testAPIClientSecret, ApplicationID: testApplicationID}
	for _, f := range tweak {
		f(&opts)
	}
	sim := smartcarsim.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	e := &env{
		sim:      sim,
		srv:      srv,
		clock:    clock,
		dir:      dir,
		store:    NewTokenStore(dir),
		apiURL:   srv.URL + "/v2.0",
		tokenURL: srv.URL + "/oauth/token",
	}
	e.conf = OAuthConfig(testClientID, testClientSecret, e.tokenURL, srv.URL+"/oauth/authorize",
		"http://localhost:8000/callback", []string{PermReadVehicleInfo, PermReadCharge, PermControlCharge})
	return e
}

// tokens starts a token chain on the env's store, seeded with a fresh refresh
// token from the simulator.
func (e *env) tokens(t testing.TB, opts ...TokensOption) *Tokens {
	t.Helper()
	opts = append([]TokensOption{WithNow(e.clock.Now)}, opts...)
	tk, err := NewTokens(context.Background(), e.conf, e.store, e.sim.IssueRefreshToken(), opts...)
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	return tk
}

// client returns a client with a warm token chain on the env.
func (e *env) client(t *testing.T, opts ...Option) (*Client, *Tokens) {
	t.Helper()
	tk := e.tokens(t)
	opts = append([]Option{WithHTTPClient(e.srv.Client())}, opts...)
	return NewV2Client(e.apiURL, tk, opts...), tk
}

// appTokens is an API v3 token source on the env, on its clock.
func (e *env) appTokens(obs CallObserver) *AppTokens {
	return NewAppTokens(context.Background(), AppTokensConfig{ClientID: testAPIClientID, ClientSecret: testAPIClientSecret,
		TokenURL: e.srv.URL + "/oauth2/token", HTTPClient: e.srv.Client(), Now: e.clock.Now, Observer: obs})
}

// v3Client returns an API v3 client on the env.
func (e *env) v3Client(opts ...Option) (*Client, *AppTokens) {
	tk := e.appTokens(nil)
	opts = append([]Option{WithHTTPClient(e.srv.Client())}, opts...)
	return NewV3Client(e.srv.URL+"/v3", tk, opts...), tk
}

// requestsTo returns the logged requests whose path ends with suffix.
func (e *env) requestsTo(method, suffix string) []smartcarsim.Request {
	var out []smartcarsim.Request
	for _, r := range e.sim.Requests() {
		if (method == "" || r.Method == method) && strings.HasSuffix(r.Path, suffix) {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) tokenRequests() int { return len(e.requestsTo("POST", "/oauth/token")) }

// staticTokens hands out a fixed access token and counts Invalidate calls.
type staticTokens struct {
	mu          sync.Mutex
	access      string
	invalidated int
}

func (s *staticTokens) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &oauth2.Token{AccessToken: s.access, TokenType: "Bearer"}, nil
}

func (s *staticTokens) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidated++
}

func (s *staticTokens) invalidations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.invalidated
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

// v2 is c's API v2.0 generation, for tests of its single calls.
func v2(c *Client) *v2API { return c.api.(*v2API) }
