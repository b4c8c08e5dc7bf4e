package smartcar

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

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
