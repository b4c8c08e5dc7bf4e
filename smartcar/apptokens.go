package smartcar

import (
	"context"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// refusedRetry is how long AppTokens keeps answering with a refusal before it
// asks the token endpoint again: the credentials come from the configuration,
// so only a restart changes them, but a refusal by mistake on Smartcar's side
// should not last for ever either.
const refusedRetry = 15 * time.Minute

// AppTokensConfig says how to get API v3's application token.
type AppTokensConfig struct {
	ClientID, ClientSecret string
	TokenURL               string
	HTTPClient             *http.Client     // nil: one with a 60 s timeout
	UserAgent              string           // DefaultUserAgent if ""
	Observer               CallObserver     // told of every token request; nil: nobody
	Now                    func() time.Time // time.Now if nil
	Early                  time.Duration    // renew this long before expiry; DefaultEarlyRefresh if 0
}

// AppTokens is API v3's application-wide access token from the
// client-credentials grant. It lives in memory only (there is no refresh
// token to keep: the credentials get a new one whenever needed), is renewed
// a few minutes before it expires, and after Invalidate (a 401). Safe for
// concurrent use; one request to the token endpoint at a time.
type AppTokens struct {
	conf     clientcredentials.Config
	ctx      context.Context // carries the token endpoint's HTTP client
	observer CallObserver
	now      func() time.Time
	early    time.Duration

	mu        sync.Mutex
	tok       *oauth2.Token
	refused   error // the credentials were refused …
	refusedAt time.Time
}

// NewAppTokens returns the token source; it calls nothing until asked.
func NewAppTokens(ctx context.Context, c AppTokensConfig) *AppTokens {
	t := &AppTokens{
		conf: clientcredentials.Config{
			ClientID:     c.ClientID,
			ClientSecret: c.ClientSecret,
			TokenURL:     c.TokenURL,
			// Smartcar's v3 token endpoint takes the credentials in the form.
			AuthStyle: oauth2.AuthStyleInParams,
		},
		ctx:      tokenContext(ctx, c.HTTPClient, c.UserAgent),
		observer: c.Observer,
		now:      c.Now,
		early:    c.Early,
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.early <= 0 {
		t.early = DefaultEarlyRefresh
	}
	return t
}

// Token returns the cached token while it has more than the early-renewal
// window to live, else a new one from the token endpoint. A refusal of the
// credentials is an *Error of type OAUTH (IsLoginRefused), answered from
// memory for a while without asking again.
func (t *AppTokens) Token() (*oauth2.Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.refused != nil && now.Sub(t.refusedAt) < refusedRetry {
		return nil, t.refused
	}
	if t.tok != nil && now.Before(t.tok.Expiry.Add(-t.early)) {
		c := *t.tok
		return &c, nil
	}
	start := time.Now()
	// Config.Token, not Config.TokenSource: the latter caches on its own
	// schedule and would hide the early renewal and Invalidate.
	nt, err := t.conf.Token(t.ctx)
	if err != nil {
		err = oauthError(err, t.conf.ClientSecret)
	}
	if t.observer != nil {
		t.observer.ObserveCall(TokenCall(time.Since(start), err))
	}
	if err != nil {
		if IsLoginRefused(err) {
			t.refused, t.refusedAt = err, now
		}
		return nil, err
	}
	t.refused = nil
	if secs, ok := nt.Extra("expires_in").(float64); ok && nt.ExpiresIn == 0 {
		// clientcredentials keeps only an expiry on the wall clock; take the
		// lifetime itself, so that the expiry is on ours.
		nt.ExpiresIn = int64(secs)
	}
	t.tok = issuedToken(nt, now)
	if t.tok.Expiry.IsZero() {
		// No lifetime given: Smartcar documents an hour.
		t.tok.Expiry = now.Add(time.Hour)
	}
	c := *t.tok
	return &c, nil
}

// Invalidate drops the cached token: Smartcar answered 401 with it.
func (t *AppTokens) Invalidate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tok = nil
	t.refused = nil // a 401 is worth one new look at the credentials
}

// Healthy reports the refusal of the credentials, if that is the last thing
// the token endpoint said. It calls nothing.
func (t *AppTokens) Healthy() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refused
}
