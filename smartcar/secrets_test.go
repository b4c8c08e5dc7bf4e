package smartcar

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"golang.org/x/oauth2"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/atomicfile"
)

// TestErrorsNeverCarrySecrets provokes every failure we know of and checks
// that no token or client secret ends up in an error string, which is what
// reaches the logs and the MQTT attributes.
func TestErrorsNeverCarrySecrets(t *testing.T) {
	e := newEnv(t)
	c, tk := e.client(t)
	ctx := ctxT(t)
	tesla := Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA"}
	if _, err := v2(c).ids(ctx, c); err != nil {
		t.Fatal(err)
	}
	tok, _ := tk.Token()
	var errs []error
	collect := func(err error) {
		t.Helper()
		if err == nil {
			t.Fatal("expected an error")
		}
		errs = append(errs, err)
	}

	for _, f := range []smartcarsim.Fault{
		{Status: 401, Times: 2}, {Status: 403}, {Status: 409},
		{Status: 500, Times: 3}, {Status: 501}, {Status: 502, Times: 3},
	} {
		f.Path = "/charge/charge_port_door"
		e.sim.InjectFault(f)
		collect(c.ChargePortDoor(ctx, tesla, Open))
	}
	// A 429 is retried after Retry-After; a client that will not wait
	// hands it back. Its own client, so its gate leaves c alone.
	e.sim.InjectFault(smartcarsim.Fault{Path: "/charge/charge_port_door", Status: 429, RetryAfter: time.Second})
	collect(NewV2Client(e.apiURL, tk, WithHTTPClient(e.srv.Client()), WithMaxRetryWait(0)).ChargePortDoor(ctx, tesla, Open))
	// A proxy page that echoes the request's Authorization header.
	cur, err := tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	e.sim.InjectFault(smartcarsim.Fault{Path: "/charge/charge_port_door", Status: 502, Times: 3,
		RawBody: "bad gateway; you sent Authorization: Bearer " + cur.AccessToken})
	err = c.ChargePortDoor(ctx, tesla, Open)
	collect(err)
	if !strings.Contains(err.Error(), "Bearer [REDACTED]") {
		t.Errorf("echoed token not redacted: %v", err)
	}

	// Token endpoint failures: a body echoing the refresh token, an
	// invalid_grant, and a wrong client secret.
	rt := e.sim.IssueRefreshToken()
	e.sim.InjectFault(smartcarsim.Fault{Path: "/oauth/token", Status: 500, RawBody: "grant_type=refresh_token&refresh_token=" + rt})
	tk2, err := NewTokens(context.Background(), e.conf, NewTokenStore(t.TempDir()), rt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tk2.Token()
	collect(err)
	e.sim.InjectFault(smartcarsim.Fault{Path: "/oauth/token", Status: 400, Type: TypeOAuth, Code: CodeInvalidGrant})
	_, err = tk2.Token()
	collect(err)
	bad := *e.conf
	bad.ClientSecret = testClientSecret + "-wrong"
	tk3, err := NewTokens(context.Background(), &bad, NewTokenStore(t.TempDir()), e.sim.IssueRefreshToken())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tk3.Token()
	collect(err)
	c3 := NewV2Client(e.apiURL, tk3)
	_, err = c3.Read(ctx, Vehicle{ID: smartcarsim.TeslaID})
	collect(err)

	// Transport failure.
	e.srv.Close()
	_, err = NewV2Client(e.apiURL, &staticTokens{access: tok.AccessToken}, WithBackoff(0)).Read(ctx, Vehicle{ID: smartcarsim.TeslaID})
	collect(err)

	secrets := []string{testClientSecret, bad.ClientSecret, rt, tok.AccessToken, tok.RefreshToken, cur.AccessToken, cur.RefreshToken}
	for _, r := range e.sim.Requests() {
		secrets = append(secrets, regexp.MustCompile(`sim-(at|rt)-[0-9a-f]+`).FindAllString(r.Body+" "+r.Authorization, -1)...)
	}
	tokenish := regexp.MustCompile(`sim-(at|rt)-[0-9a-f]{8,}`)
	for _, err := range errs {
		msg := err.Error()
		if tokenish.MatchString(msg) {
			t.Errorf("token-like string in error: %q", msg)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(msg, s) {
				t.Errorf("secret %q… in error: %q", s[:6], msg)
			}
		}
	}
	if len(errs) < 13 {
		t.Errorf("only %d errors collected", len(errs))
	}
}

// TestTokenStringsNotInStoreErrors: even a corrupt token file's content stays
// out of the load error.
func TestTokenStringsNotInStoreErrors(t *testing.T) {
	dir := t.TempDir()
	s := NewTokenStore(dir)
	if err := s.Save(&oauth2.Token{RefreshToken: "sim-rt-0123456789abcdef"}); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(s.Path(), []byte(`{"refresh_token":"sim-rt-0123456789abcdef"`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load()
	if err == nil || strings.Contains(err.Error(), "sim-rt-0123456789abcdef") {
		t.Errorf("load error = %v", err)
	}
}
