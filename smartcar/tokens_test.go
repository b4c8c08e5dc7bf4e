package smartcar

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// refreshTokensSent lists the refresh tokens the token endpoint was asked to
// redeem, in order.
func (e *env) refreshTokensSent(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range e.requestsTo("POST", "/oauth/token") {
		form, err := url.ParseQuery(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, form.Get("refresh_token"))
	}
	return out
}

func TestTokensRotationIsPersistedBeforeUse(t *testing.T) {
	e := newEnv(t)
	seed := e.sim.IssueRefreshToken()
	tk, err := NewTokens(context.Background(), e.conf, e.store, seed, WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := e.store.Load(); err != nil || st.RefreshToken != seed {
		t.Fatalf("seed not stored at start: %v, %v", st, err)
	}

	tok, err := tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	// By the time the access token is handed out, the rotated pair is on disk.
	st, err := e.store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.AccessToken != tok.AccessToken || st.RefreshToken == seed || st.RefreshToken == "" {
		t.Fatalf("store after refresh = %+v; handed out %q", st, tok.AccessToken)
	}
	if !st.Expiry.Equal(e.clock.Now().Add(2 * time.Hour)) {
		t.Errorf("expiry = %v, want now+2h", st.Expiry)
	}
	if sent := e.refreshTokensSent(t); len(sent) != 1 || sent[0] != seed {
		t.Errorf("refresh tokens sent = %v, want [seed]", sent)
	}
}

func TestTokensSaveFailureWithholdsTokenAndRetries(t *testing.T) {
	e := newEnv(t)
	tk := e.tokens(t)

	// Make the rename onto token.json fail: a non-empty directory sits there.
	path := filepath.Join(e.dir, TokenFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "blocker"), 0o700); err != nil {
		t.Fatal(err)
	}
	tok, err := tk.Token()
	if err == nil || tok != nil {
		t.Fatalf("Token() = %v, %v; want an error and no token while the store is broken", tok, err)
	}
	refreshes := e.tokenRequests()

	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	tok, err = tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	if n := e.tokenRequests(); n != refreshes {
		t.Errorf("refreshed again (%d → %d): the rotated pair was lost", refreshes, n)
	}
	st, err := e.store.Load()
	if err != nil || st.AccessToken != tok.AccessToken {
		t.Fatalf("store = %+v, %v; want the pair in use", st, err)
	}
}

func TestTokensRestart(t *testing.T) {
	e := newEnv(t)
	seed := e.sim.IssueRefreshToken()
	first, err := NewTokens(context.Background(), e.conf, e.store, seed, WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	tok1, err := first.Token()
	if err != nil {
		t.Fatal(err)
	}

	// Warm restart: the stored access token is still valid; no call.
	second, err := NewTokens(context.Background(), e.conf, e.store, seed, WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	before := e.tokenRequests()
	tok2, err := second.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken != tok1.AccessToken || e.tokenRequests() != before {
		t.Errorf("warm restart refreshed: %d token calls", e.tokenRequests()-before)
	}

	// Cold restart after expiry: the stored (rotated) refresh token works,
	// although the simulator refuses every used one, including the seed.
	e.clock.Advance(3 * time.Hour)
	third, err := NewTokens(context.Background(), e.conf, e.store, seed, WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	tok3, err := third.Token()
	if err != nil {
		t.Fatalf("restart with stored refresh token: %v", err)
	}
	if tok3.AccessToken == tok1.AccessToken {
		t.Error("expired access token reused")
	}
	for _, rt := range e.refreshTokensSent(t)[1:] {
		if rt == seed {
			t.Error("seed redeemed again after the store held a newer token")
		}
	}
}

func TestTokensSeedIgnoredWhenStoreHasToken(t *testing.T) {
	e := newEnv(t)
	stored := e.sim.IssueRefreshToken()
	if err := e.store.Save(&oauth2.Token{RefreshToken: stored}); err != nil {
		t.Fatal(err)
	}
	tk, err := NewTokens(context.Background(), e.conf, e.store, "sim-rt-stale-seed", WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Token(); err != nil {
		t.Fatal(err)
	}
	if sent := e.refreshTokensSent(t); len(sent) != 1 || sent[0] != stored {
		t.Errorf("redeemed %v, want the stored token", sent)
	}
}

// With no login yet the chain waits for one: ErrNoToken, at no call, until
// the auth flow writes the store, which it then uses without a restart.
func TestTokensWaitForALogin(t *testing.T) {
	e := newEnv(t)
	tk, err := NewTokens(context.Background(), e.conf, e.store, "", WithNow(e.clock.Now))
	if err != nil {
		t.Fatalf("NewTokens without a login: %v", err)
	}
	if _, err := tk.Token(); !errors.Is(err, ErrNoToken) {
		t.Fatalf("Token before a login: %v, want ErrNoToken", err)
	}
	if err := tk.Healthy(); !errors.Is(err, ErrNoToken) {
		t.Fatalf("Healthy before a login: %v, want ErrNoToken", err)
	}
	if err := tk.keepAlive(DefaultRefreshMaxAge); err != nil {
		t.Errorf("keep-alive before a login reports %v; there is nothing to renew", err)
	}
	if n := len(e.refreshTokensSent(t)); n != 0 {
		t.Fatalf("%d token calls before a login", n)
	}

	rt := e.sim.IssueRefreshToken()
	if err := e.store.Save(&oauth2.Token{RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
	tok, err := tk.Token()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("after the auth flow wrote a login: %v, %+v", err, tok)
	}
	if err := tk.Healthy(); err != nil {
		t.Errorf("healthy after a login: %v", err)
	}
	if sent := e.refreshTokensSent(t); len(sent) != 1 || sent[0] != rt {
		t.Errorf("redeemed %v, want the new login's token once", sent)
	}
}

func TestTokensInvalidGrant(t *testing.T) {
	e := newEnv(t)
	tk, err := NewTokens(context.Background(), e.conf, e.store, "sim-rt-never-issued", WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tk.Token()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if se.Type != TypeOAuth || se.Code != CodeInvalidGrant || se.StatusCode != 400 || se.Description == "" {
		t.Errorf("error = %+v", se)
	}
	if !IsInvalidGrant(err) {
		t.Error("IsInvalidGrant = false")
	}

	// A dead grant is not asked about again, and health says so…
	calls := e.tokenRequests()
	if _, err := tk.Token(); !IsInvalidGrant(err) {
		t.Errorf("second call: %v", err)
	}
	if err := tk.Healthy(); !IsInvalidGrant(err) {
		t.Errorf("Healthy() = %v, want the invalid_grant", err)
	}
	if e.tokenRequests() != calls {
		t.Error("dead refresh token redeemed again")
	}
	// …until the auth flow writes a new one to the store.
	if err := e.store.Save(&oauth2.Token{RefreshToken: e.sim.IssueRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	if err := tk.Healthy(); err != nil {
		t.Errorf("Healthy() after re-auth: %v", err)
	}
	if _, err := tk.Token(); err != nil {
		t.Errorf("after re-auth: %v", err)
	}
}

func TestTokensRefreshEarly(t *testing.T) {
	e := newEnv(t)
	tk := e.tokens(t) // early refresh: DefaultEarlyRefresh (5m)
	tok1, err := tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2*time.Hour - DefaultEarlyRefresh - time.Second)
	if tok, _ := tk.Token(); tok.AccessToken != tok1.AccessToken {
		t.Fatal("refreshed before the early-refresh window")
	}
	e.clock.Advance(2 * time.Second)
	tok2, err := tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken == tok1.AccessToken {
		t.Fatal("not refreshed inside the early-refresh window")
	}
	if n := e.tokenRequests(); n != 2 {
		t.Errorf("token calls = %d, want 2", n)
	}
}

func TestTokensInvalidateForcesOneRefresh(t *testing.T) {
	e := newEnv(t)
	tk := e.tokens(t)
	tok1, err := tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	tk.Invalidate()
	tok2, err := tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken == tok1.AccessToken || e.tokenRequests() != 2 {
		t.Errorf("Invalidate did not force exactly one refresh (%d calls)", e.tokenRequests())
	}
}

func TestTokensOneRefreshAtATime(t *testing.T) {
	e := newEnv(t)
	tk := e.tokens(t)
	const n = 16
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tok, err := tk.Token()
			errs[i] = err
			if tok != nil {
				got[i] = tok.AccessToken
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("caller %d got a different token", i)
		}
	}
	if c := e.tokenRequests(); c != 1 {
		t.Errorf("token calls = %d, want 1", c)
	}
}

func TestTokenEndpointUserAgentAndBasicAuth(t *testing.T) {
	e := newEnv(t)
	tk := e.tokens(t, WithTokenUserAgent("smartcar2mqtt/9.9"))
	if _, err := tk.Token(); err != nil {
		t.Fatal(err)
	}
	r := e.requestsTo("POST", "/oauth/token")[0]
	if r.UserAgent != "smartcar2mqtt/9.9" {
		t.Errorf("token endpoint User-Agent = %q", r.UserAgent)
	}
	if form, _ := url.ParseQuery(r.Body); form.Get("client_secret") != "" {
		t.Error("client secret sent in the body; want HTTP Basic")
	}

	// Wrong client secret: the simulator refuses the client.
	bad := *e.conf
	bad.ClientSecret = "wrong"
	tk2, err := NewTokens(context.Background(), &bad, NewTokenStore(t.TempDir()), e.sim.IssueRefreshToken())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tk2.Token()
	var se *Error
	if !errors.As(err, &se) || se.Type != TypeOAuth || se.Code != "invalid_client" || se.StatusCode != 401 {
		t.Errorf("wrong secret: %v", err)
	}
}

// A login Connect saved in this process wins over the pair the chain holds:
// the old pair's next rotation must not overwrite it.
func TestTokensAdoptTheLoginConnectSaved(t *testing.T) {
	e := newEnv(t)
	tk := e.tokens(t)
	if _, err := tk.Token(); err != nil {
		t.Fatal(err)
	}
	fresh := &oauth2.Token{RefreshToken: e.sim.IssueRefreshToken()}
	if err := e.store.SaveObtained(fresh, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := tk.Adopt(); err != nil {
		t.Fatal(err)
	}
	tk.Invalidate()
	if _, err := tk.Token(); err != nil {
		t.Fatal(err)
	}
	// The refresh that followed sent the adopted refresh token.
	refreshes := e.requestsTo("POST", "/oauth/token")
	last := refreshes[len(refreshes)-1]
	if form, _ := url.ParseQuery(last.Body); form.Get("refresh_token") != fresh.RefreshToken {
		t.Error("the refresh after Adopt did not use the adopted pair")
	}
}
