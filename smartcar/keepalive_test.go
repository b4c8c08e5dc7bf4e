package smartcar

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"golang.org/x/oauth2"
)

// keepAliveRun drives Tokens.KeepAlive through an unbuffered tick channel. A
// tick is received only when the loop is back at its select, i.e. once the
// previous look is over; so each send proves the earlier looks finished, and
// starts one more. Tests assert on states where that extra look is a no-op or
// counted either way. No sleeping, no polling.
type keepAliveRun struct {
	tick   chan time.Time
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	errs []error
}

func startKeepAlive(t *testing.T, e *env, seed string, maxAge time.Duration) (*Tokens, *keepAliveRun) {
	t.Helper()
	k := &keepAliveRun{tick: make(chan time.Time), done: make(chan struct{})}
	tk, err := NewTokens(context.Background(), e.conf, e.store, seed, WithNow(e.clock.Now),
		WithKeepAliveTick(k.tick),
		WithKeepAliveErrors(func(err error) {
			k.mu.Lock()
			defer k.mu.Unlock()
			k.errs = append(k.errs, err)
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	go func() {
		defer close(k.done)
		tk.KeepAlive(ctx, maxAge)
	}()
	t.Cleanup(func() {
		cancel()
		<-k.done
	})
	return tk, k
}

// settled returns once every look started so far is over (and one more has
// begun).
func (k *keepAliveRun) settled(t *testing.T) {
	t.Helper()
	select {
	case k.tick <- time.Time{}:
	case <-k.done:
		t.Fatal("KeepAlive returned early")
	}
}

// look makes KeepAlive look at the current clock at least once.
func (k *keepAliveRun) look(t *testing.T) {
	t.Helper()
	k.settled(t) // the previous look is over; this tick starts a new one
	k.settled(t) // …and this one is received only after it finished
}

func (k *keepAliveRun) errors() []error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]error(nil), k.errs...)
}

func TestKeepAliveRenewsAnOldRefreshToken(t *testing.T) {
	e := newEnv(t)
	const maxAge = 30 * 24 * time.Hour
	tk, k := startKeepAlive(t, e, e.sim.IssueRefreshToken(), maxAge)

	// The seed's age is unknown: the first look renews it.
	k.settled(t)
	if n := e.tokenRequests(); n != 1 {
		t.Fatalf("token calls after the first look = %d, want 1", n)
	}
	_, obtained, err := e.store.LoadObtained()
	if err != nil || !obtained.Equal(e.clock.Now()) {
		t.Fatalf("obtained_at = %v, %v; want %v", obtained, err, e.clock.Now())
	}

	// Young enough: looking costs nothing, even though the access token
	// expired long ago (that is Token's business, not KeepAlive's).
	e.clock.Advance(maxAge - time.Minute)
	k.look(t)
	k.look(t)
	if n := e.tokenRequests(); n != 1 {
		t.Fatalf("token calls while young = %d, want 1", n)
	}

	// Old: one refresh, saved with its new age, and only one.
	e.clock.Advance(2 * time.Minute)
	k.look(t)
	k.look(t)
	if n := e.tokenRequests(); n != 2 {
		t.Fatalf("token calls once old = %d, want 2", n)
	}
	st, obtained, err := e.store.LoadObtained()
	if err != nil || !obtained.Equal(e.clock.Now()) {
		t.Fatalf("obtained_at after keep-alive = %v, %v", obtained, err)
	}
	if sent := e.refreshTokensSent(t); sent[1] == st.RefreshToken {
		t.Error("the stored refresh token is the one just spent")
	}

	// Ordinary use renews the age too: no keep-alive refresh is due later.
	e.clock.Advance(maxAge - time.Hour)
	tk.Invalidate()
	if _, err := tk.Token(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	k.look(t)
	if n := e.tokenRequests(); n != 3 {
		t.Errorf("token calls = %d, want 3 (no keep-alive after a use)", n)
	}
	if errs := k.errors(); len(errs) != 0 {
		t.Errorf("errors reported: %v", errs)
	}

	k.cancel()
	<-k.done // returns once ctx is done
}

func TestKeepAliveInvalidGrantOnceThenAdoptsAuth(t *testing.T) {
	e := newEnv(t)
	tk, k := startKeepAlive(t, e, "sim-rt-never-issued", 30*24*time.Hour)
	k.settled(t)
	k.look(t)
	k.look(t)
	errs := k.errors()
	if len(errs) != 1 || !IsInvalidGrant(errs[0]) {
		t.Fatalf("errors = %v, want one invalid_grant", errs)
	}
	if n := e.tokenRequests(); n != 1 {
		t.Fatalf("dead token redeemed %d times", n)
	}

	// `auth` (another process) writes a new pair: the next look adopts it,
	// and Token works with it.
	fresh := e.sim.IssueRefreshToken()
	if err := e.store.SaveObtained(&oauth2.Token{RefreshToken: fresh}, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	k.look(t)
	if len(k.errors()) != 1 || e.tokenRequests() != 1 {
		t.Errorf("errors %v, token calls %d after adopting", k.errors(), e.tokenRequests())
	}
	if _, err := tk.Token(); err != nil {
		t.Fatalf("Token after auth: %v", err)
	}
	if sent := e.refreshTokensSent(t); sent[len(sent)-1] != fresh {
		t.Errorf("redeemed %v, want the pair auth wrote", sent)
	}
}

func TestKeepAliveReportsTransientFailuresAndRetries(t *testing.T) {
	e := newEnv(t)
	e.sim.InjectFault(smartcarsim.Fault{Path: "/oauth/token", Status: 503, RawBody: "down for maintenance"})
	_, k := startKeepAlive(t, e, e.sim.IssueRefreshToken(), 30*24*time.Hour)
	k.settled(t)
	if errs := k.errors(); len(errs) != 1 || IsInvalidGrant(errs[0]) || !strings.Contains(errs[0].Error(), "keep refresh token alive") {
		t.Fatalf("errors = %v", errs)
	}
	k.look(t)
	if n, errs := e.tokenRequests(), k.errors(); n != 2 || len(errs) != 1 {
		t.Errorf("after retry: %d calls, errors %v", n, errs)
	}
}

func TestTokensRecordWhenTheRefreshTokenWasObtained(t *testing.T) {
	e := newEnv(t)
	tk := e.tokens(t)
	if _, obtained, _ := e.store.LoadObtained(); !obtained.IsZero() {
		t.Errorf("a seed claims an age: %v", obtained)
	}
	if _, err := tk.Token(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(e.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"obtained_at": "2025-06-01T12:00:00Z"`) {
		t.Errorf("token file:\n%s", data)
	}
	// A restart keeps the age.
	tk2, err := NewTokens(context.Background(), e.conf, e.store, "", WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if !tk2.obtained.Equal(e.clock.Now()) {
		t.Errorf("restart lost obtained_at: %v", tk2.obtained)
	}
}

func TestTokenStoreIgnoresAndCleansTempFiles(t *testing.T) {
	dir := t.TempDir()
	s := NewTokenStore(dir)
	if err := s.Save(&oauth2.Token{RefreshToken: "rt-1"}); err != nil {
		t.Fatal(err)
	}
	// What a writer killed before its rename leaves: a torn temp file.
	stale := filepath.Join(dir, ".token.json.111.tmp")
	recent := filepath.Join(dir, ".token.json.222.tmp")
	for _, p := range []string{stale, recent} {
		if err := os.WriteFile(p, []byte(`{"refresh_token": "rt-t`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(); err != nil || got.RefreshToken != "rt-1" {
		t.Fatalf("Load with temp files around = %v, %v", got, err)
	}
	if err := s.Save(&oauth2.Token{RefreshToken: "rt-2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file kept: %v", err)
	}
	// A recent one may be another process's write in progress.
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("recent temp file removed: %v", err)
	}
	if got, err := s.Load(); err != nil || got.RefreshToken != "rt-2" {
		t.Fatalf("Load = %v, %v", got, err)
	}
}

func TestSimulatorRefreshGrace(t *testing.T) {
	redeem := func(e *env, rt string) (string, error) {
		tok, err := e.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt}).Token()
		if err != nil {
			return "", oauthError(err)
		}
		return tok.RefreshToken, nil
	}

	e := newEnv(t, func(o *smartcarsim.Options) { o.RefreshGrace = time.Minute })
	rt := e.sim.IssueRefreshToken()
	if _, err := redeem(e, rt); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(59 * time.Second)
	// Within the grace: the old token still works, and the grace runs from
	// the first use, not the latest.
	next, err := redeem(e, rt)
	if err != nil {
		t.Fatalf("reuse within the grace: %v", err)
	}
	e.clock.Advance(time.Second)
	if _, err := redeem(e, rt); !IsInvalidGrant(err) {
		t.Fatalf("reuse after the grace: %v, want invalid_grant", err)
	}
	if _, err := redeem(e, next); err != nil {
		t.Errorf("the pair issued on reuse: %v", err)
	}

	// Default: no reuse at all.
	strict := newEnv(t)
	rt = strict.sim.IssueRefreshToken()
	if _, err := redeem(strict, rt); err != nil {
		t.Fatal(err)
	}
	if _, err := redeem(strict, rt); !IsInvalidGrant(err) {
		t.Errorf("strict reuse: %v, want invalid_grant", err)
	}
}
