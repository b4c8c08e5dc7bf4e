package smartcar

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// BenchmarkClientTeslaCharge measures one door-state read against the
// simulator over loopback HTTP, the daemon's most frequent call.
func BenchmarkClientTeslaCharge(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"observed", []Option{WithObserver(NewUsage("", nil))}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sim := smartcarsim.New(smartcarsim.Options{ClientID: testClientID, ClientSecret: testClientSecret})
			srv := httptest.NewServer(sim)
			defer srv.Close()
			opts := append([]Option{WithHTTPClient(srv.Client())}, bc.opts...)
			c := NewV2Client(srv.URL+"/v2.0", &staticTokens{access: simAccessToken(b, srv)}, opts...)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// simAccessToken gets an access token straight from the simulator's token
// endpoint, without the Tokens machinery the benchmark is not about.
func simAccessToken(tb testing.TB, srv *httptest.Server) string {
	tb.Helper()
	sim := srv.Config.Handler.(*smartcarsim.Simulator)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {sim.IssueRefreshToken()}}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testClientSecret)
	resp, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		tb.Fatalf("token: status %d, %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// BenchmarkTokenCallsPerIdleDay counts the token endpoint requests of a day
// of an idle daemon (no command, only the polls), on a simulated clock
// through the real token sources: API v3's application token (an hour, renewed
// 5 min early) and v2.0's access token (2 h), at the default 6 h poll and at a
// 15 min one.
func BenchmarkTokenCallsPerIdleDay(b *testing.B) {
	for _, api := range []string{V3, V2} {
		for _, poll := range []time.Duration{6 * time.Hour, 15 * time.Minute} {
			b.Run(fmt.Sprintf("api=%s/poll=%s", api, poll), func(b *testing.B) {
				for b.Loop() {
					e := newEnv(b)
					var c *Client
					if api == V3 {
						c = NewV3Client(e.srv.URL+"/v3", e.appTokens(nil), WithHTTPClient(e.srv.Client()))
					} else {
						c = NewV2Client(e.apiURL, e.tokens(b), WithHTTPClient(e.srv.Client()))
					}
					v := Vehicle{ID: smartcarsim.TeslaID, UserID: smartcarsim.UserID}
					start := e.clock.Now()
					for e.clock.Now().Before(start.Add(24 * time.Hour)) {
						if _, err := c.Read(context.Background(), v); err != nil {
							b.Fatal(err)
						}
						e.clock.Advance(poll)
					}
					tokenCalls := len(e.requestsTo("POST", "/oauth2/token")) + len(e.requestsTo("POST", "/oauth/token"))
					b.ReportMetric(float64(tokenCalls), "token-calls/day")
					b.ReportMetric(float64(len(e.requestsTo("GET", "/signals"))+len(e.requestsTo("GET", "/tesla/charge"))), "reads/day")
				}
			})
		}
	}
}
