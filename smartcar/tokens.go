package smartcar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// DefaultEarlyRefresh is how long before expiry an access token is replaced,
// so a request never leaves with a token that dies in flight (Smartcar
// commands can take minutes).
const DefaultEarlyRefresh = 5 * time.Minute

// tokenEndpointTimeout bounds one call to the token endpoint when the caller
// supplied no HTTP client of its own: Token() holds the refresh lock, and a
// hung endpoint must not wedge every request behind it.
const tokenEndpointTimeout = 60 * time.Second

// DefaultRefreshMaxAge is how old a refresh token may grow before KeepAlive
// renews it although nothing needed an access token: Smartcar's refresh
// tokens die 60 days after issue, so renewing at 30 leaves a month to notice
// and fix a failure.
const DefaultRefreshMaxAge = 30 * 24 * time.Hour

// KeepAliveInterval is how often KeepAlive looks at the refresh token's age.
// A look spends no call unless a refresh is due, so looking hourly is free
// and keeps the renewal close to its date across a suspend or a clock jump.
const KeepAliveInterval = time.Hour

// OAuthConfig is Smartcar's OAuth client: Connect as the authorization
// endpoint, and client credentials in the Authorization header, as Smartcar
// documents.
func OAuthConfig(clientID, clientSecret, tokenURL, connectURL, redirectURI string, scopes []string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   connectURL,
			TokenURL:  tokenURL,
			AuthStyle: oauth2.AuthStyleInHeader,
		},
		RedirectURL: redirectURI,
		Scopes:      scopes,
	}
}

// Tokens is the process's single token chain: a cached access token, replaced
// a few minutes before it expires by a refresher that saves every new pair to
// the store before the access token is handed on. A mutex makes it one
// refresh at a time: with rotating refresh tokens, two concurrent refreshes
// would burn the token one of them still holds.
type Tokens struct {
	conf      *oauth2.Config
	store     *TokenStore
	ctx       context.Context // carries the token endpoint's HTTP client
	userAgent string          // of token endpoint requests; DefaultUserAgent if ""
	now       func() time.Time
	early     time.Duration

	observer       CallObserver     // nil: refreshes are not reported
	keepAliveTick  <-chan time.Time // nil: a KeepAliveInterval ticker
	keepAliveError func(error)      // nil: failures wait for the next Token call

	mu       sync.Mutex
	tok      *oauth2.Token // current pair; AccessToken "" forces a refresh
	obtained time.Time     // when tok.RefreshToken was issued; zero = unknown
	unsaved  bool          // tok holds a rotated pair the store has not accepted yet
	dead     error         // invalid_grant for tok.RefreshToken: don't ask again
}

// TokensOption configures Tokens.
type TokensOption func(*Tokens)

// WithNow sets the clock used for expiry decisions (tests).
func WithNow(now func() time.Time) TokensOption { return func(t *Tokens) { t.now = now } }

// WithTokenObserver reports every token endpoint request, like the Client's
// WithObserver does for API calls.
func WithTokenObserver(o CallObserver) TokensOption { return func(t *Tokens) { t.observer = o } }

// WithEarlyRefresh sets how long before expiry the access token is replaced.
func WithEarlyRefresh(d time.Duration) TokensOption { return func(t *Tokens) { t.early = d } }

// WithKeepAliveTick replaces KeepAlive's hourly ticker with c, so tests
// decide when it looks.
func WithKeepAliveTick(c <-chan time.Time) TokensOption {
	return func(t *Tokens) { t.keepAliveTick = c }
}

// WithKeepAliveErrors has KeepAlive report each failed keep-alive refresh to
// f (the daemon logs it): an idle daemon makes no other call that would
// surface it. f runs on KeepAlive's goroutine.
func WithKeepAliveErrors(f func(error)) TokensOption {
	return func(t *Tokens) { t.keepAliveError = f }
}

// WithTokenUserAgent sets the User-Agent of token endpoint requests.
func WithTokenUserAgent(ua string) TokensOption { return func(t *Tokens) { t.userAgent = ua } }

// NewTokens starts the chain. The stored pair wins; a seed refresh token
// (SMARTCAR_REFRESH_TOKEN) is used only when the store is empty, and is saved
// at once so the store owns it from then on. Neither is no error: the chain
// waits for a login, answering ErrNoToken until the auth flow (another
// process) writes the store, which it picks up by itself. ctx is used for every token endpoint call and may carry an
// *http.Client under oauth2.HTTPClient.
func NewTokens(ctx context.Context, conf *oauth2.Config, store *TokenStore, seedRefreshToken string, opts ...TokensOption) (*Tokens, error) {
	t := &Tokens{
		conf:  conf,
		store: store,
		now:   time.Now,
		early: DefaultEarlyRefresh,
	}
	for _, o := range opts {
		o(t)
	}
	hc, _ := ctx.Value(oauth2.HTTPClient).(*http.Client)
	t.ctx = tokenContext(ctx, hc, t.userAgent)

	stored, obtained, err := store.LoadObtained()
	switch {
	case err == nil:
		t.tok, t.obtained = stored, obtained
	case errors.Is(err, ErrNoToken) && seedRefreshToken != "":
		// The seed's age is unknown (a user pasted it): zero makes
		// KeepAlive renew it at once rather than trust it for 30 days.
		t.tok = &oauth2.Token{RefreshToken: seedRefreshToken}
		if err := store.SaveObtained(t.tok, time.Time{}); err != nil {
			return nil, fmt.Errorf("seed token store: %w", err)
		}
	case errors.Is(err, ErrNoToken):
		// No login yet: settle looks in the store again on every use.
	default:
		return nil, err
	}
	return t, nil
}

// Token returns a valid access token, refreshing (and persisting the new
// pair) first if the cached one is missing or within the early-refresh window
// of expiry. A stored, still-valid access token costs no call: restarts are
// free. Token endpoint errors are *Error with Type "OAUTH" (e.g. Code
// "invalid_grant" when the user must re-authorize).
func (t *Tokens) Token() (*oauth2.Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	if err := t.settle(); err != nil {
		return nil, err
	}
	if t.fresh() {
		return t.copyToken(), nil
	}
	if err := t.refresh(); err != nil {
		return nil, err
	}
	return t.copyToken(), nil
}

// Healthy reports whether the chain can still produce access tokens: it holds
// a refresh token that Smartcar has not refused (or a newer one the auth flow
// wrote since). It calls no endpoint, so a health check may ask often.
func (t *Tokens) Healthy() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.settle(); err != nil {
		return err
	}
	if t.tok == nil || t.tok.RefreshToken == "" {
		return ErrNoToken
	}
	return nil
}

// settle makes the cached pair usable: it adopts a pair the auth flow wrote
// after an invalid_grant, and retries saving a rotated pair whose save
// failed. Callers hold mu.
func (t *Tokens) settle() error {
	if t.tok == nil {
		st, obtained, err := t.store.LoadObtained()
		if err != nil {
			return err
		}
		t.tok, t.obtained = st, obtained
	}
	if t.dead != nil {
		// The refresh token was refused for good. Asking again would only
		// spend calls; a new pair can only come from the auth flow (another
		// process), which writes the store, so look there.
		st, obtained, err := t.store.LoadObtained()
		if err != nil || st.RefreshToken == t.tok.RefreshToken {
			return t.dead
		}
		t.tok, t.obtained, t.dead = st, obtained, nil
	}
	if t.unsaved {
		// A rotated pair is only usable once it is on disk; otherwise a
		// restart would wake up holding a dead refresh token.
		if err := t.store.SaveObtained(t.tok, t.obtained); err != nil {
			return fmt.Errorf("persist refreshed token: %w", err)
		}
		t.unsaved = false
	}
	return nil
}

// KeepAlive renews the refresh token whenever it is older than maxAge
// (DefaultRefreshMaxAge for Smartcar), so a daemon that makes no call for
// weeks (polling off, no commands) still holds a live one. It looks at once,
// then every KeepAliveInterval (or on each WithKeepAliveTick value), and
// returns when ctx is done. Each look costs no call unless a refresh is due;
// a token of unknown age is renewed at the first look. A failed refresh is
// retried at the next look and reported to WithKeepAliveErrors; an
// invalid_grant is reported once, and a pair written later by the auth flow
// is picked up at a later look.
func (t *Tokens) KeepAlive(ctx context.Context, maxAge time.Duration) {
	tick := t.keepAliveTick
	if tick == nil {
		tk := time.NewTicker(KeepAliveInterval)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		if err := t.keepAlive(maxAge); err != nil && t.keepAliveError != nil {
			t.keepAliveError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// keepAlive is one look: refresh once if the refresh token is older than
// maxAge.
func (t *Tokens) keepAlive(maxAge time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	wasDead := t.dead != nil
	if err := t.settle(); err != nil {
		if wasDead && err == t.dead || errors.Is(err, ErrNoToken) {
			// Still dead: reported when it happened, not hourly. No login
			// yet: the daemon says so once, and nothing is there to renew.
			return nil
		}
		return fmt.Errorf("keep refresh token alive: %w", err)
	}
	if !t.obtained.IsZero() && t.now().Sub(t.obtained) < maxAge {
		return nil
	}
	if err := t.refresh(); err != nil {
		return fmt.Errorf("keep refresh token alive: %w", err)
	}
	return nil
}

// Adopt takes the pair in the store as the current login: Connect has just
// saved a new one in this process, which must win over the pair held here
// (a later refresh of the old pair would otherwise overwrite it).
func (t *Tokens) Adopt() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, obtained, err := t.store.LoadObtained()
	if err != nil {
		return err
	}
	t.tok, t.obtained, t.dead, t.unsaved = st, obtained, nil, false
	return nil
}

// Invalidate drops the cached access token, so the next Token call refreshes.
// The client calls it when Smartcar answers 401.
func (t *Tokens) Invalidate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != nil {
		t.tok.AccessToken = ""
		t.tok.Expiry = time.Time{}
	}
}

// fresh reports whether the cached access token may be used. Callers hold mu.
func (t *Tokens) fresh() bool {
	if t.tok == nil || t.tok.AccessToken == "" {
		return false
	}
	if t.tok.Expiry.IsZero() {
		return true // the server gave no lifetime; trust it until a 401
	}
	return t.now().Before(t.tok.Expiry.Add(-t.early))
}

// refresh runs the refresh_token grant with the current refresh token and
// saves the new pair before anyone may use it. Callers hold mu.
func (t *Tokens) refresh() error {
	rt := t.tok.RefreshToken
	// A fresh TokenSource each time: oauth2's own cache would otherwise
	// decide when to refresh and hide our early refresh and Invalidate.
	start := time.Now()
	nt, err := t.conf.TokenSource(t.ctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		err = oauthError(err, rt, t.conf.ClientSecret)
	}
	if t.observer != nil {
		t.observer.ObserveCall(TokenCall(time.Since(start), err))
	}
	if err != nil {
		err = fmt.Errorf("refresh access token: %w", err)
		if IsInvalidGrant(err) {
			t.dead = err
		}
		return err
	}
	if nt.RefreshToken == "" || nt.RefreshToken == rt {
		nt.RefreshToken = rt // the server did not rotate it: its age stands
	} else {
		t.obtained = t.now()
	}
	t.tok = issuedToken(nt, t.now())
	if err := t.store.SaveObtained(t.tok, t.obtained); err != nil {
		// Keep the pair in memory: the old refresh token is already spent,
		// so this one is the only way back. Token retries the save.
		t.unsaved = true
		return fmt.Errorf("persist refreshed token: %w", err)
	}
	return nil
}

func (t *Tokens) copyToken() *oauth2.Token {
	c := *t.tok
	return &c
}

// issuedToken is the pair the token endpoint returned, as we keep it: the
// expiry anchored to now (our clock, not oauth2's, so tests can drive it)
// when the server gave expires_in, and none of oauth2's extra fields.
func issuedToken(nt *oauth2.Token, now time.Time) *oauth2.Token {
	tok := &oauth2.Token{
		AccessToken:  nt.AccessToken,
		TokenType:    nt.TokenType,
		RefreshToken: nt.RefreshToken,
		Expiry:       nt.Expiry,
	}
	if nt.ExpiresIn > 0 {
		tok.Expiry = now.Add(time.Duration(nt.ExpiresIn) * time.Second)
	}
	return tok
}

// tokenContext is ctx carrying the HTTP client oauth2 uses for token endpoint
// requests: a copy of hc (nil: one with tokenEndpointTimeout) that sends ua
// (DefaultUserAgent if "") as User-Agent.
func tokenContext(ctx context.Context, hc *http.Client, ua string) context.Context {
	if hc == nil {
		hc = &http.Client{Timeout: tokenEndpointTimeout}
	}
	if ua == "" {
		ua = DefaultUserAgent
	}
	c := *hc
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = userAgentTransport{base: base, ua: ua}
	return context.WithValue(ctx, oauth2.HTTPClient, &c)
}

type userAgentTransport struct {
	base http.RoundTripper
	ua   string
}

func (u userAgentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not modify the request
	r.Header.Set("User-Agent", u.ua)
	return u.base.RoundTrip(r)
}
