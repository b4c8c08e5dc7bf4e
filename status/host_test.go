package status

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHostGuardAnswers(t *testing.T) {
	g := HostGuard{Allowed: []string{"nas.example.com", ".home.example.org"}}
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{"192.168.1.10", true},
		{"[::1]:8080", true},
		{"[fd00::1]", true},
		{"localhost:8080", true},
		{"app.localhost", true},
		{"homeassistant.local:8080", true},
		{"HomeAssistant.Local.", true},
		{"nas.lan", true},
		{"server.home.arpa", true},
		{"box.internal", true},
		{"homeserver:8080", true},
		{"nas.example.com:8080", true},
		{"NAS.Example.com.", true},
		{"pi.home.example.org", true},
		{"home.example.org", true},

		// What a rebinding site's page asks for: its own public name.
		{"evil.example:8080", false},
		{"127.0.0.1.nip.io", false},
		{"nas.example.com.evil.example", false},
		{"xnas.example.com", false},
		{"evilhome.example.org", false},
		{"local.evil.example", false},
		{"", false},
	} {
		if got := g.Answers(tt.host); got != tt.ok {
			t.Errorf("Answers(%q) = %v, want %v", tt.host, got, tt.ok)
		}
	}
}

// Through the handler, as a browser on a rebinding site sends it: the page,
// its state and its forms are refused at a foreign name; the webhook,
// /healthz and /metrics are not the page's to refuse; and without a guard
// (the Ingress port) any name is served.
func TestHandlerGuardsThePageByHost(t *testing.T) {
	c := &fakeConnector{link: connectLink}
	routes := Routes{Metrics: NewMetrics(), Page: newPage(c), Webhook: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	})}
	ingress := Handler(routes)
	routes.Hosts = &HostGuard{}
	guarded := Handler(routes)
	for _, tt := range []struct {
		method, path string
		guarded      bool // refused at a foreign name
	}{
		{http.MethodGet, "/", true},
		{http.MethodGet, "/state", true},
		{http.MethodPost, "/connect", true},
		{http.MethodPost, "/connect/finish", true},
		{http.MethodGet, "/nothing-here", true},
		{http.MethodPost, "/webhooks/smartcar", false},
		{http.MethodGet, "/healthz", false},
		{http.MethodGet, "/metrics", false},
	} {
		for _, host := range []string{"evil.example:8080", "192.168.1.10:8080"} {
			r := httptest.NewRequest(tt.method, "http://"+host+tt.path, strings.NewReader(""))
			r.Header.Set("Origin", "http://"+host) // the page's own origin, as the browser sees it
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, body := serve(t, guarded, r)
			refused := resp.StatusCode == http.StatusForbidden && strings.Contains(body, "HTTP_ALLOWED_HOSTS")
			if want := tt.guarded && host == "evil.example:8080"; refused != want {
				t.Errorf("%s %s at %s: %d %q, refused %v, want %v", tt.method, tt.path, host, resp.StatusCode, body, refused, want)
			}
			resp, body = serve(t, ingress, r)
			if resp.StatusCode == http.StatusForbidden {
				t.Errorf("%s %s at %s without a guard: %d %q", tt.method, tt.path, host, resp.StatusCode, body)
			}
		}
	}
	if starts, _ := c.counts(); starts != 3 {
		t.Errorf("Connect started %d times, want 3 (at the address, and at both names without a guard)", starts)
	}
}
