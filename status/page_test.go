package status

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// fakeConnector is a Connect flow whose state the test sets.
type fakeConnector struct {
	mu       sync.Mutex
	state    smartcar.ConnectState
	starts   int
	finishes []string // addresses Finish was given
	link     string
	startErr error
	finish   func(address string) error
	v2       bool
}

func (f *fakeConnector) Start() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	if f.startErr != nil {
		return "", f.startErr
	}
	f.state = smartcar.ConnectState{Phase: smartcar.ConnectWaiting, Started: time.Now(), Link: f.link, NeedsAddress: f.v2}
	return f.link, nil
}

func (f *fakeConnector) Finish(_ context.Context, address string) error {
	f.mu.Lock()
	f.finishes = append(f.finishes, address)
	finish := f.finish
	f.mu.Unlock()
	if finish == nil {
		return nil
	}
	return finish(address)
}

func (f *fakeConnector) State() smartcar.ConnectState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeConnector) set(s smartcar.ConnectState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = s
}

func (f *fakeConnector) counts() (starts, finishes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts, len(f.finishes)
}

const connectLink = "https://connect.example/oauth/authorize?client_id=app&state=nonce123"

func ptr[T any](v T) *T { return &v }

// twoCars is a bridge with a car it knows everything about and one it knows
// nothing about yet.
func twoCars() bridge.Status {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	return bridge.Status{Vehicles: []bridge.VehicleStatus{
		{
			ID: "car-1", Make: "TESLA", Model: "Model Y", Year: 2024, Available: true, KnownAt: at,
			Door: "open", HasDoor: true, ReadAt: at,
			Charge: &smartcar.ChargeState{PluggedIn: ptr(true), Latch: ptr(smartcar.LatchEngaged), Charging: ptr("CHARGING"),
				LimitPercent: ptr(80.0), EnergyAdded: ptr(12.46)},
			LastCommand: "OPEN", LastCommandResult: "success", LastCommandAt: at,
			Error: &bridge.ErrorStatus{Type: "RATE_LIMIT", Code: "VEHICLE", Description: "the car was asked too often",
				Resolution: "RETRY_LATER", At: at},
			LastDeliveryAt: at,
		},
		{ID: "car-2", Make: "FORD", Model: "Mustang Mach-E", Year: 2022},
	}}
}

func newPage(c Connector) *Page {
	return &Page{
		Bridge: twoCars,
		Usage: func() smartcar.UsageSnapshot {
			return smartcar.UsageSnapshot{Month: "2025-06", Vehicles: map[string]int{"car-1": 17}, Total: 40, Today: 3}
		},
		Login:        func() error { return nil },
		Connect:      c,
		APIVersion:   "v3",
		PollInterval: 6 * time.Hour,
		Version:      "1.2.3",
	}
}

// get serves one request to the page's handler and returns the answer.
func serve(t *testing.T, h http.Handler, r *http.Request) (*http.Response, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	resp := w.Result()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func getPage(t *testing.T, h http.Handler, path string, header ...string) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return serve(t, h, r)
}

func getState(t *testing.T, h http.Handler) pageView {
	t.Helper()
	resp, body := getPage(t, h, "/state")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /state: %d %s", resp.StatusCode, body)
	}
	var v pageView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET /state: %v\n%s", err, body)
	}
	return v
}

// postForm is a form POST as the page's own browser sends it, unless header
// says otherwise.
func postForm(path string, form url.Values, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Origin", "http://"+r.Host)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			r.Header.Del(header[i])
			continue
		}
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func wantAll(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %q", w)
		}
	}
}

// A car Smartcar grants neither the door command nor the charge read has no
// entity: the page names it and says why, with nothing to read or press.
func TestPageShowsACarWithoutEntities(t *testing.T) {
	p := newPage(&fakeConnector{link: connectLink})
	p.Bridge = func() bridge.Status {
		return bridge.Status{Vehicles: []bridge.VehicleStatus{{ID: "car-3", Make: "FORD", Model: "F-150", Year: 2023, Unbridged: true}}}
	}
	_, body := getPage(t, Handler(Routes{Metrics: NewMetrics(), Page: p}), "/")
	car := body[strings.Index(body, `id="car-car-3"`):]
	car = car[:strings.Index(car, "</article>")]
	wantAll(t, car, "2023 FORD F-150", "<code>car-3</code>", "not in Home Assistant", "neither the charge port command nor the charge read")
	for _, not := range []string{"offline", "online", "Plugged in", "Last command"} {
		if strings.Contains(car, not) {
			t.Errorf("the car without entities shows %q:\n%s", not, car)
		}
	}
}

func TestPageShowsWhatTheDaemonKnows(t *testing.T) {
	h := Handler(Routes{Metrics: NewMetrics(), Page: newPage(&fakeConnector{link: connectLink})})
	resp, body := getPage(t, h, "/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	car1 := body[strings.Index(body, `id="car-car-1"`):strings.Index(body, `id="car-car-2"`)]
	wantAll(t, car1, "2024 TESLA Model Y", "<code>car-1</code>", "online", "Charge port door</dt><dd>open",
		"Plugged in</dt><dd>yes", "Charging</dt><dd>charging", "Cable latch</dt><dd>engaged", "Charge limit</dt><dd>80 %",
		"Energy added</dt><dd>12.5 kWh", "Last command</dt><dd>OPEN, <time", ": success",
		"RATE_LIMIT:VEHICLE", "the car was asked too often", "RETRY_LATER", "Last webhook delivery",
		`datetime="2025-06-01T12:00:00Z"`, "Calls this month</dt><dd>17", "about 120 reads a month")
	car2 := body[strings.Index(body, `id="car-car-2"`):]
	car2 = car2[:strings.Index(car2, "</article>")]
	wantAll(t, car2, "2022 FORD Mustang Mach-E", "offline", "no charge port command", "Plugged in</dt><dd>unknown",
		"Last read</dt><dd>never", "Last command</dt><dd>none yet", "Last error</dt><dd>none", "Calls this month</dt><dd>0")
	if strings.Contains(car2, "webhook") {
		t.Error("a car without webhook deliveries shows a last delivery")
	}
	wantAll(t, body, "Version 1.2.3", "Smartcar API v3", "API credentials", "in use", "(2025-06, UTC)</dt><dd>40",
		"Calls today (UTC)</dt><dd>3", "about 270 a month for 2 cars", `<button id="connect-button" type="submit">Connect a car</button>`,
		"<main>", "<header>", "<footer>", `lang="en"`)

	s := getState(t, h)
	if len(s.Vehicles) != 2 || s.Vehicles[0].ID != "car-1" || s.Vehicles[0].Door != "open" || *s.Vehicles[0].PluggedIn != true ||
		*s.Vehicles[0].ChargeLimitPercent != 80 || s.Vehicles[0].Error.Code != "VEHICLE" || s.Vehicles[0].CallsThisMonth != 17 ||
		s.Vehicles[1].PluggedIn != nil || s.Vehicles[1].Available {
		t.Errorf("state vehicles: %+v", s.Vehicles)
	}
	if s.Usage.Total != 40 || s.Usage.Today != 3 || s.Usage.ReadsPerCar != 120 || s.Usage.EstimatePerMonth != 270 || s.API != "v3" {
		t.Errorf("state usage: %+v", s.Usage)
	}
	for _, name := range pageParts() {
		if p := s.Parts[name]; p.HTML == "" || p.V == "" || !strings.Contains(body, `data-v="`+p.V+`"`) {
			t.Errorf("part %s: %q, or its digest is not the page's", name, p.V)
		}
	}
}

func TestPagePlanEstimate(t *testing.T) {
	tests := []struct {
		name  string
		poll  time.Duration
		cars  int
		reads int
		total int
		words []string
	}{
		{"default 6h, 2 cars", 6 * time.Hour, 2, 120, 270, []string{"Polling every 6h spends about 120 reads", "about 270 a month for 2 cars"}},
		{"90 minutes, 1 car", 90 * time.Minute, 1, 480, 510, []string{"every 1h30m", "about 510 a month for 1 car"}},
		{"hourly spends more than a plan", time.Hour, 1, 720, 750, []string{"more than that: set a longer poll interval"}},
		{"polling off", 0, 3, 0, 30, []string{"Polling is off", "about 30 calls a month"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := usage(smartcar.UsageSnapshot{}, tt.poll, tt.cars)
			if u.ReadsPerCar != tt.reads || u.EstimatePerMonth != tt.total {
				t.Errorf("reads %d total %d, want %d %d", u.ReadsPerCar, u.EstimatePerMonth, tt.reads, tt.total)
			}
			wantAll(t, u.Estimate, tt.words...)
			if tt.reads <= config.PlanCallsPerVehicle && strings.Contains(u.Estimate, "more than that") {
				t.Errorf("a warning for a poll interval within the plan: %s", u.Estimate)
			}
		})
	}
}

func TestPageLoginState(t *testing.T) {
	tests := []struct {
		name    string
		api     string
		login   error
		connect bool
		state   string
		text    string
	}{
		{"v3 credentials in use", "v3", nil, true, "ok", "in use"},
		{"v2 logged in", "v2", nil, true, "ok", "logged in"},
		{"v2 waiting, Connect offered", "v2", Waiting("no Smartcar login yet: run smartcar2mqtt auth"), true, "waiting", "waiting for a login: press Connect a car"},
		{"v2 waiting, wrapped", "v2", errors.Join(errors.New("token"), Waiting("no login")), true, "waiting", "press Connect a car"},
		{"waiting, no Connect", "v2", Waiting("no Smartcar login yet: run smartcar2mqtt auth"), false, "waiting", "waiting for a login: no Smartcar login yet: run smartcar2mqtt auth"},
		{"refused", "v3", errors.New("Smartcar refused the API credentials"), true, "error", "Smartcar refused the API credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPage(nil)
			if tt.connect {
				p.Connect = &fakeConnector{}
			}
			p.APIVersion, p.Login = tt.api, func() error { return tt.login }
			h := Handler(Routes{Metrics: NewMetrics(), Page: p})
			if s := getState(t, h); s.Login.State != tt.state || !strings.Contains(s.Login.Text, tt.text) {
				t.Errorf("login %+v, want %s %q", s.Login, tt.state, tt.text)
			}
			_, body := getPage(t, h, "/")
			wantAll(t, body, `<dd class="`+tt.state+`">`, tt.text)
		})
	}
}

// A car's name comes from Smartcar and the simulator, never from us: the page
// escapes it, in the HTML and in the parts the script swaps in.
func TestPageEscapesVehicleNames(t *testing.T) {
	p := newPage(&fakeConnector{})
	p.Bridge = func() bridge.Status {
		return bridge.Status{Vehicles: []bridge.VehicleStatus{{ID: `id"><b>x`, Make: `"><img src=x onerror=alert(1)>`, Model: "<script>alert(1)</script>", Year: 2024,
			Error: &bridge.ErrorStatus{Type: "<i>T", Code: "C", Description: "<script>d</script>"}}}}
	}
	h := Handler(Routes{Metrics: NewMetrics(), Page: p})
	_, body := getPage(t, h, "/")
	st := getState(t, h)
	for name, text := range map[string]string{"page": body, "vehicles part": string(st.Parts["vehicles"].HTML)} {
		for _, bad := range []string{"<script>alert", "<img src=x", "<script>d", "<i>T", `"><b>`} {
			if strings.Contains(text, bad) {
				t.Errorf("%s carries %q unescaped", name, bad)
			}
		}
		wantAll(t, text, "&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x")
	}
	if st.Vehicles[0].Model != "<script>alert(1)</script>" {
		t.Errorf("the JSON changed the name: %q", st.Vehicles[0].Model)
	}
}

var linkAttr = regexp.MustCompile(`\b(href|action|src)="([^"]*)"`)

// Under Home Assistant's Ingress every link, form and fetch of the page must
// stay below the prefix: the page's own URLs are relative and <base> holds the
// prefix; a header that is not a plain path is ignored.
func TestPageUnderIngressPrefix(t *testing.T) {
	tests := []struct {
		name   string
		header string
		base   string // the <base href> wanted; "" for none
		back   string // Location after a finished Connect
	}{
		{"Home Assistant Ingress", "/api/hassio_ingress/abc123_-XYZ", "/api/hassio_ingress/abc123_-XYZ/", "/api/hassio_ingress/abc123_-XYZ/"},
		{"trailing slash", "/api/hassio_ingress/abc/", "/api/hassio_ingress/abc/", "/api/hassio_ingress/abc/"},
		{"no header", "", "", "../"},
		{"root only", "/", "", "../"},
		{"another host", "//evil.example/x", "", "../"},
		{"absolute URL", "https://evil.example/x", "", "../"},
		{"markup", `/x"><script>alert(1)</script>`, "", "../"},
		{"query", "/x?y=1", "", "../"},
		{"fragment", "/x#y", "", "../"},
		{"space", "/x y", "", "../"},
		{"backslash", `/\evil.example`, "", "../"},
		{"dot segments", "/api/../..", "", "../"},
		{"bad escape", "/x%zz", "", "../"},
		{"control", "/x\r\nSet-Cookie: a=b", "", "../"},
		{"escaped dot segment", "/a/%2e%2e", "", "../"},
		{"escaped dot segment, upper case", "/api/hassio_ingress/%2E%2E/", "", "../"},
		{"half-escaped dot segment", "/a/.%2e/b", "", "../"},
		{"escaped slash", "/a%2f..", "", "../"},
		{"any escape", "/api/hassio_ingress/a%41", "", "../"},
		{"dot segment", "/a/./b", "", "../"},
		{"trailing dot segment", "/api/hassio_ingress/..", "", "../"},
		{"sub-delimiters", "/a;b=c", "", "../"},
		{"tilde", "/~user", "", "../"},
		{"dots in a name", "/api/hassio_ingress/a..b.c", "/api/hassio_ingress/a..b.c/", "/api/hassio_ingress/a..b.c/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeConnector{link: connectLink, v2: true}
			h := Handler(Routes{Metrics: NewMetrics(), Page: newPage(c)})
			c.Start() // a v2 flow waiting: the finish form is on the page
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header["X-Ingress-Path"] = []string{tt.header}
			_, body := serve(t, h, r)
			if base := regexp.MustCompile(`<base href="([^"]*)">`).FindStringSubmatch(body); tt.base == "" && base != nil {
				t.Errorf("<base href=%q> from header %q", base[1], tt.header)
			} else if tt.base != "" && (base == nil || base[1] != tt.base) {
				t.Errorf("<base> %v, want %q", base, tt.base)
			}
			if strings.Contains(body, "evil") || strings.Contains(body, "alert(1)") || strings.Contains(body, "Set-Cookie") {
				t.Errorf("the hostile header reached the page")
			}
			seen := map[string]bool{}
			for _, m := range linkAttr.FindAllStringSubmatch(body, -1) {
				attr, u := m[1], m[2]
				if attr == "href" && (u == tt.base || u == "data:," || strings.HasPrefix(u, "https://connect.example/")) {
					continue // the base itself, the no-favicon icon, Smartcar's Connect
				}
				seen[u] = true
				if strings.HasPrefix(u, "/") || strings.Contains(u, ":") {
					t.Errorf("%s=%q is not relative to the page", attr, u)
				}
			}
			for _, want := range []string{"connect", "connect/finish", "healthz", "metrics"} {
				if !seen[want] {
					t.Errorf("no relative link or action %q in the page (saw %v)", want, seen)
				}
			}
			if !strings.Contains(body, `fetch("state"`) {
				t.Error("the script does not fetch the relative state")
			}

			fin := postForm("/connect/finish", url.Values{"address": {"http://localhost:8000/callback?code=c&state=s"}})
			fin.Header["X-Ingress-Path"] = []string{tt.header}
			resp, _ := serve(t, h, fin)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tt.back {
				t.Errorf("after Finish: %d to %q, want 303 to %q", resp.StatusCode, resp.Header.Get("Location"), tt.back)
			}
			if strings.ContainsAny(resp.Header.Get("Location"), "\r\n") || resp.Header.Get("Set-Cookie") != "" {
				t.Error("the header injected into the answer's headers")
			}
		})
	}
}

func TestPageRefusesCrossSiteForms(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		code   int
	}{
		{"the page itself", nil, http.StatusSeeOther},
		{"same origin over plain HTTP (no Sec-Fetch-Site)", []string{"Sec-Fetch-Site", ""}, http.StatusSeeOther},
		{"no browser headers at all", []string{"Sec-Fetch-Site", "", "Origin", ""}, http.StatusSeeOther},
		{"another site", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, http.StatusForbidden},
		{"another origin on the same site", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://other.example.com"}, http.StatusForbidden},
		{"another site over plain HTTP", []string{"Sec-Fetch-Site", "", "Origin", "http://evil.example"}, http.StatusForbidden},
		{"opaque origin", []string{"Sec-Fetch-Site", "", "Origin", "null"}, http.StatusForbidden},
	}
	for _, tt := range tests {
		for _, path := range []string{"/connect", "/connect/finish"} {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				c := &fakeConnector{link: connectLink, v2: true}
				h := Handler(Routes{Metrics: NewMetrics(), Page: newPage(c)})
				resp, body := serve(t, h, postForm(path, url.Values{"address": {"http://localhost/?code=c&state=s"}}, tt.header...))
				if resp.StatusCode != tt.code {
					t.Fatalf("POST %s: %d, want %d: %s", path, resp.StatusCode, tt.code, body)
				}
				starts, finishes := c.counts()
				if tt.code == http.StatusForbidden {
					if starts+finishes != 0 {
						t.Errorf("a refused request reached Connect: %d starts, %d finishes", starts, finishes)
					}
					if resp.Header.Get("Content-Security-Policy") == "" || !strings.Contains(body, "another site") {
						t.Errorf("the refusal: %q, headers %v", body, resp.Header)
					}
				} else if starts+finishes != 1 {
					t.Errorf("%d starts, %d finishes, want one call", starts, finishes)
				}
			})
		}
	}
}

func TestPageConnectFlow(t *testing.T) {
	c := &fakeConnector{link: connectLink}
	h := Handler(Routes{Metrics: NewMetrics(), Page: newPage(c)})
	_, body := getPage(t, h, "/")
	wantAll(t, body, `<form method="post" action="connect" target="_blank">`, ">Connect a car</button>")
	if s := getState(t, h); s.Connect.Phase != "" || !s.Connect.Offered {
		t.Errorf("before: %+v", s.Connect)
	}

	resp, _ := serve(t, h, postForm("/connect", nil))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != connectLink {
		t.Fatalf("POST /connect: %d to %q, want 303 to Connect", resp.StatusCode, resp.Header.Get("Location"))
	}
	s := getState(t, h)
	if s.Connect.Phase != "waiting" || s.Connect.Link != connectLink || s.Connect.StartedID == "" || s.Connect.NeedsAddress {
		t.Errorf("waiting: %+v", s.Connect)
	}
	_, body = getPage(t, h, "/") // someone loading the page meanwhile
	wantAll(t, body, "Waiting for Smartcar…", `data-phase="waiting"`, `<meta http-equiv="refresh" content="5">`, ">Start again</button>")
	if strings.Contains(body, `action="connect/finish"`) {
		t.Error("API v3 asks for the address")
	}

	c.set(smartcar.ConnectState{Phase: smartcar.ConnectConnected, Started: time.Now(),
		New: []smartcar.VehicleDetails{{Vehicle: smartcar.Vehicle{ID: "new", Make: "TESLA", Model: "Model Y", Year: 2024}}}})
	s = getState(t, h)
	if s.Connect.Phase != "connected" || len(s.Connect.New) != 1 || s.Connect.New[0].Name != "2024 TESLA Model Y" {
		t.Errorf("connected: %+v", s.Connect)
	}
	wantAll(t, string(s.Parts["connect"].HTML), "Connected: 2024 TESLA Model Y", "once the daemon has listed it", ">Connect another car</button>")
	// Once the bridge serves the new car, the page says where it is.
	c.set(smartcar.ConnectState{Phase: smartcar.ConnectConnected, Started: time.Now(),
		New: []smartcar.VehicleDetails{{Vehicle: smartcar.Vehicle{ID: "car-1", Make: "TESLA", Model: "Model Y", Year: 2024}}}})
	if s = getState(t, h); !s.Connect.Listed || !strings.Contains(string(s.Parts["connect"].HTML), "It is under Vehicles above.") {
		t.Errorf("connected and listed: %+v\n%s", s.Connect, s.Parts["connect"].HTML)
	}

	c.set(smartcar.ConnectState{Phase: smartcar.ConnectFailed, Problem: "no new connection appeared within 15m0s; connect again"})
	_, body = getPage(t, h, "/")
	wantAll(t, body, "Connect failed: no new connection appeared within 15m0s", ">Try again</button>")

	c.startErr = errors.New("smartcar connect: no randomness")
	resp, body = serve(t, h, postForm("/connect", nil))
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Location") != "" {
		t.Errorf("a failed Start: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	wantAll(t, body, `role="alert">Smartcar Connect could not start: no randomness`)
}

func TestPageWithoutConnect(t *testing.T) {
	p := newPage(nil)
	p.ConnectMissing = "Connect needs the Application ID: set SMARTCAR_APPLICATION_ID"
	h := Handler(Routes{Metrics: NewMetrics(), Page: p})
	_, body := getPage(t, h, "/")
	wantAll(t, body, "Connect a car is not available here: Connect needs the Application ID")
	if strings.Contains(body, `action="connect"`) {
		t.Error("a Connect button without a Connect")
	}
	if s := getState(t, h); s.Connect.Offered || s.Connect.Missing != p.ConnectMissing {
		t.Errorf("state: %+v", s.Connect)
	}
	resp, body := serve(t, h, postForm("/connect", nil))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "Application ID") {
		t.Errorf("POST /connect without Connect: %d", resp.StatusCode)
	}
}

func TestPageRoutesAndHeaders(t *testing.T) {
	h := Handler(Routes{Metrics: NewMetrics(), Page: newPage(&fakeConnector{link: connectLink})})
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/", 200}, {"HEAD", "/", 200}, {"GET", "/state", 200},
		{"GET", "/index.html", 404}, {"GET", "/page.js", 404}, {"GET", "/connect/", 404}, {"GET", "/state/x", 404},
		{"GET", "/connect", 405}, {"POST", "/", 405}, {"GET", "/healthz", 200}, {"GET", "/metrics", 200},
	} {
		resp, _ := serve(t, h, httptest.NewRequest(tt.method, tt.path, nil))
		if resp.StatusCode != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.code)
		}
	}

	resp, body := getPage(t, h, "/")
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'self'", "base-uri 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "*") || strings.Contains(csp, "http") {
		t.Errorf("CSP %q admits more than the page", csp)
	}
	// The inline script and style are admitted by their hashes, exactly.
	for _, tag := range []string{"script", "style"} {
		m := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(body, -1)
		if len(m) != 1 {
			t.Fatalf("%d inline <%s> elements, want 1", len(m), tag)
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		if want := tag + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+=|style="|javascript:`).MatchString(body) {
		t.Error("inline handlers or style attributes, which the CSP refuses")
	}
	if regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).MatchString(strings.ReplaceAll(body, connectLink, "")) {
		t.Error("the page loads something from another origin")
	}
	for _, r := range []*http.Request{httptest.NewRequest("GET", "/", nil), httptest.NewRequest("GET", "/state", nil), postForm("/connect", nil),
		postForm("/connect", nil, "Sec-Fetch-Site", "cross-site")} {
		resp, _ := serve(t, h, r)
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store", "Content-Security-Policy": csp} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s %s: %s %q, want %q", r.Method, r.URL.Path, k, got, v)
			}
		}
	}
	if resp, _ := getPage(t, h, "/state"); resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("state Content-Type %q", resp.Header.Get("Content-Type"))
	}
}

// API v2.0 with the real WebConnect against the simulator: the address the
// browser ended on finishes the flow; an address of another flow, or no
// address at all, is refused on the page and the flow keeps waiting.
func TestPageFinishV2(t *testing.T) {
	sim := smartcarsim.New(smartcarsim.Options{ClientID: "legacy-uuid", ClientSecret: "legacy-secret-Hh2"})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	dir := t.TempDir()
	var connected sync.WaitGroup
	connected.Add(1)
	wc := smartcar.NewWebConnectV2(t.Context(), smartcar.Connect{
		Config: smartcar.OAuthConfig("legacy-uuid", "legacy-secret-Hh2", srv.URL+"/oauth/token", srv.URL+"/oauth/authorize", "http://localhost:8000/callback", nil),
		Store:  smartcar.NewTokenStore(dir),
	}, func(context.Context, smartcar.Connected) error { connected.Done(); return nil })
	p := newPage(wc)
	p.APIVersion = "v2"
	p.Login = func() error { return Waiting("no Smartcar login yet") }
	h := Handler(Routes{Metrics: NewMetrics(), Page: p})

	resp, body := serve(t, h, postForm("/connect/finish", url.Values{"address": {"http://localhost:8000/callback?code=x&state=y"}}))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "press Connect a car first") {
		t.Errorf("Finish with no flow: %d", resp.StatusCode)
	}

	resp, _ = serve(t, h, postForm("/connect", nil))
	link := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(link, srv.URL+"/oauth/authorize?") {
		t.Fatalf("POST /connect: %d to %q", resp.StatusCode, link)
	}
	_, body = getPage(t, h, "/")
	wantAll(t, body, `<form method="post" action="connect/finish">`, `<label for="address">The address your browser ended on</label>`, `id="address" name="address"`)

	// The browser at Smartcar's Connect, approving: it is sent to the redirect URI.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	approved, err := noFollow.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	approved.Body.Close()
	ended := approved.Header.Get("Location")
	endedURL, _ := url.Parse(ended)
	code := endedURL.Query().Get("code")
	if code == "" {
		t.Fatalf("Connect sent the browser to %q", ended)
	}
	foreign := strings.Replace(ended, "state="+endedURL.Query().Get("state"), "state=someone-elses", 1)

	for _, tt := range []struct{ name, address, want string }{
		{"another flow's address", foreign, "belongs to another Connect"},
		{"empty", "  ", "paste the address the browser ended on"},
		{"not an address", "hello", "not the address Smartcar sent the browser to"},
	} {
		resp, body := serve(t, h, postForm("/connect/finish", url.Values{"address": {tt.address}}))
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d to %q", tt.name, resp.StatusCode, resp.Header.Get("Location"))
		}
		wantAll(t, body, `role="alert">Connect did not finish: `, tt.want)
		if strings.Contains(body, code) {
			t.Errorf("%s: the page shows the authorization code", tt.name)
		}
		if st := wc.State(); st.Phase != smartcar.ConnectWaiting || !st.NeedsAddress {
			t.Errorf("%s: the flow stopped waiting: %+v", tt.name, st)
		}
	}

	resp, _ = serve(t, h, postForm("/connect/finish", url.Values{"address": {ended}}, "X-Ingress-Path", "/api/hassio_ingress/tok"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/api/hassio_ingress/tok/" {
		t.Fatalf("Finish with the right address: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	connected.Wait()
	if s := getState(t, h); s.Connect.Phase != "connected" {
		t.Errorf("after Finish: %+v", s.Connect)
	}

	// The login is in the token store now: none of it, nor the client
	// secret, is on the page or in its state.
	_, page := getPage(t, h, "/")
	_, state := getPage(t, h, "/state")
	secrets := []string{"legacy-secret-Hh2", code}
	stored, err := os.ReadFile(filepath.Join(dir, smartcar.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	if err := json.Unmarshal(stored, &tok); err != nil {
		t.Fatal(err)
	}
	for k, v := range tok {
		if s, ok := v.(string); ok && len(s) >= 8 && strings.Contains(strings.ToLower(k), "token") {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) < 4 {
		t.Fatalf("the token store holds no tokens to look for: %s", stored)
	}
	for _, s := range secrets {
		if strings.Contains(page, s) || strings.Contains(state, s) {
			t.Errorf("the page or its state shows a secret (%d chars)", len(s))
		}
	}
}

// On the add-on's Ingress port only the Supervisor's Ingress proxy is served.
func TestOnlyFrom(t *testing.T) {
	h := OnlyFrom(Handler(Routes{Metrics: NewMetrics(), Page: newPage(&fakeConnector{})}), "172.30.32.2")
	for _, tt := range []struct {
		remote string
		code   int
	}{
		{"172.30.32.2:41234", http.StatusOK},
		{"[::ffff:172.30.32.2]:41234", http.StatusOK},
		{"172.30.32.1:41234", http.StatusForbidden},
		{"172.30.32.20:41234", http.StatusForbidden},
		{"127.0.0.1:41234", http.StatusForbidden},
		{"[::1]:41234", http.StatusForbidden},
		{"172.30.32.2", http.StatusForbidden}, // no port: not a peer address
		{"", http.StatusForbidden},
	} {
		for _, path := range []string{"/", "/state", "/healthz"} {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			r.RemoteAddr = tt.remote
			resp, body := serve(t, h, r)
			if resp.StatusCode != tt.code {
				t.Errorf("%s from %q: %d, want %d", path, tt.remote, resp.StatusCode, tt.code)
			}
			if tt.code == http.StatusForbidden && strings.Contains(body, "car-1") {
				t.Errorf("%s from %q: a refusal that shows the page", path, tt.remote)
			}
		}
	}
	r := postForm("/connect", nil)
	r.RemoteAddr = "10.0.0.5:5000"
	if resp, _ := serve(t, h, r); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /connect from another address: %d", resp.StatusCode)
	}
}

// links are where the page's links, forms and state poll lead from a page
// the browser shows at pageURL.
func links(t *testing.T, pageURL, body string) []string {
	t.Helper()
	at, err := url.Parse(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`<base href="([^"]*)">`).FindStringSubmatch(body); m != nil {
		base, err := url.Parse(html.UnescapeString(m[1]))
		if err != nil {
			t.Fatalf("<base href=%q>: %v", m[1], err)
		}
		at = at.ResolveReference(base)
		body = strings.Replace(body, m[0], "", 1)
	}
	var to []string
	for _, m := range linkAttr.FindAllStringSubmatch(body, -1) {
		if strings.HasPrefix(m[2], "data:") || strings.HasPrefix(m[2], "https://connect.example/") {
			continue
		}
		u, err := url.Parse(html.UnescapeString(m[2]))
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		to = append(to, at.ResolveReference(u).String())
	}
	if strings.Contains(body, `fetch("state"`) {
		to = append(to, at.ResolveReference(&url.URL{Path: "state"}).String())
	}
	slices.Sort(to)
	return slices.Compact(to)
}

// A form's answer is a whole page at the form's address (e.g. a refused
// Finish at /connect/finish): its links, forms and state poll still lead to
// the page's own, directly and behind a reverse proxy at a sub-path.
func TestPageAnswerToAFormLinksToThePage(t *testing.T) {
	for _, tt := range []struct {
		name, path string
		code       int
	}{
		{"a refused Finish", "/connect/finish", http.StatusBadRequest},
		{"a failed Start", "/connect", http.StatusInternalServerError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeConnector{link: connectLink, v2: true, finish: func(string) error { return errors.New("not the address Smartcar sent the browser to") }}
			c.Start()
			c.startErr = errors.New("smartcar connect: no randomness")
			p := newPage(c)
			p.APIVersion = "v2"
			h := Handler(Routes{Metrics: NewMetrics(), Page: p})
			resp, body := serve(t, h, postForm(tt.path, url.Values{"address": {"hello"}}))
			if resp.StatusCode != tt.code || !strings.Contains(body, `role="alert"`) {
				t.Fatalf("POST %s: %d, want %d with a notice", tt.path, resp.StatusCode, tt.code)
			}
			for _, dir := range []string{"http://daemon.test/", "http://proxy.test/cars/smartcar/"} {
				want := []string{dir + "connect", dir + "connect/finish", dir + "healthz", dir + "metrics", dir + "state"}
				if got := links(t, dir+strings.TrimPrefix(tt.path, "/"), body); !slices.Equal(got, want) {
					t.Errorf("from %s%s the page leads to\n%v, want\n%v", dir, tt.path[1:], got, want)
				}
			}
		})
	}
}

// Without JavaScript the page refreshes itself while Connect waits, but not
// while it shows the field to paste the address in: that would wipe it.
func TestPageRefreshesWithoutScriptOnlyWhenNothingIsTyped(t *testing.T) {
	for _, tt := range []struct {
		api     string
		refresh bool
	}{{"v3", true}, {"v2", false}} {
		t.Run(tt.api, func(t *testing.T) {
			c := &fakeConnector{link: connectLink, v2: tt.api == "v2", finish: func(string) error { return errors.New("not the address") }}
			p := newPage(c)
			p.APIVersion = tt.api
			h := Handler(Routes{Metrics: NewMetrics(), Page: p})
			if _, body := getPage(t, h, "/"); strings.Contains(body, "http-equiv") {
				t.Error("a refresh before Connect")
			}
			c.Start()
			_, page := getPage(t, h, "/")
			_, refused := serve(t, h, postForm("/connect/finish", url.Values{"address": {"hello"}}))
			for name, body := range map[string]string{"the page": page, "a refused Finish": refused} {
				if tt.api == "v3" && name != "the page" {
					continue
				}
				if got := strings.Contains(body, `<meta http-equiv="refresh" content="5">`); got != tt.refresh {
					t.Errorf("%s while waiting: refresh %v, want %v", name, got, tt.refresh)
				}
				if got := strings.Contains(body, `action="connect/finish"`); got == tt.refresh {
					t.Errorf("%s: the address field shown %v", name, got)
				}
			}
		})
	}
}

// Only the Connect status sentence is announced as it changes, not the whole
// section with its form; every control the script may swap has an id, so
// focus can go back to it.
func TestPageConnectIsAnnouncedBySentence(t *testing.T) {
	c := &fakeConnector{link: connectLink, v2: true}
	p := newPage(c)
	p.APIVersion = "v2"
	h := Handler(Routes{Metrics: NewMetrics(), Page: p})
	live := regexp.MustCompile(`<[a-z]+[^>]*aria-live[^>]*>`)
	states := []smartcar.ConnectState{{}, {Phase: smartcar.ConnectWaiting, Started: time.Now(), Link: connectLink, NeedsAddress: true},
		{Phase: smartcar.ConnectConnected, Started: time.Now()}, {Phase: smartcar.ConnectFailed, Problem: "refused"}}
	for _, st := range states {
		c.set(st)
		_, body := getPage(t, h, "/")
		section := body[strings.Index(body, `<section id="connect"`):]
		section = section[:strings.Index(section, "</section>")]
		if tags := live.FindAllString(section, -1); len(tags) != 1 || !strings.HasPrefix(tags[0], `<p class="connect-status`) {
			t.Errorf("phase %q: live regions %q, want the status sentence's alone", st.Phase, tags)
		}
		for _, tag := range regexp.MustCompile(`<(button|input|a)\b[^>]*>`).FindAllString(section, -1) {
			if !strings.Contains(tag, ` id="`) {
				t.Errorf("phase %q: %s has no id", st.Phase, tag)
			}
		}
	}
	// The live region on the whole page, for the script's own words, stays.
	_, body := getPage(t, h, "/")
	wantAll(t, body, `<p id="live-status" class="muted" role="status" aria-live="polite"></p>`)
}

// In API v2 a new Connect replaces the one login, and with it its cars: the
// page says so instead of offering to connect "another" car.
func TestPageConnectAgainInV2(t *testing.T) {
	note := "A new connection replaces the current Smartcar login"
	for _, tt := range []struct {
		name, api string
		login     error
		st        smartcar.ConnectState
		button    string
		note      bool
	}{
		{"v3 connected", "v3", nil, smartcar.ConnectState{Phase: smartcar.ConnectConnected}, "Connect another car", false},
		{"v2 connected", "v2", nil, smartcar.ConnectState{Phase: smartcar.ConnectConnected}, "Connect again", true},
		{"v2 logged in already", "v2", nil, smartcar.ConnectState{}, "Connect a car", true},
		{"v2 no login yet", "v2", Waiting("no login"), smartcar.ConnectState{}, "Connect a car", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeConnector{}
			c.set(tt.st)
			p := newPage(c)
			p.APIVersion, p.Login = tt.api, func() error { return tt.login }
			part := string(getState(t, Handler(Routes{Metrics: NewMetrics(), Page: p})).Parts["connect"].HTML)
			wantAll(t, part, ">"+tt.button+"</button>")
			if strings.Contains(part, note) != tt.note {
				t.Errorf("the note that Connect replaces the login: %v, want %v\n%s", !tt.note, tt.note, part)
			}
			if tt.api == "v2" && strings.Contains(part, "another car") {
				t.Error("v2 offers another car")
			}
		})
	}
}

// The state counts the Connect presses the daemon answered, failed or not:
// the script keeps its "Waiting for Smartcar…" until its press is answered.
func TestPageCountsAnsweredStarts(t *testing.T) {
	c := &fakeConnector{link: connectLink}
	h := Handler(Routes{Metrics: NewMetrics(), Page: newPage(c)})
	if n := getState(t, h).Connect.Starts; n != 0 {
		t.Fatalf("before any press: %d", n)
	}
	serve(t, h, postForm("/connect", nil))
	c.startErr = errors.New("smartcar connect: no randomness")
	if resp, _ := serve(t, h, postForm("/connect", nil)); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("a failed Start: %d", resp.StatusCode)
	}
	if n := getState(t, h).Connect.Starts; n != 2 {
		t.Errorf("after two presses: %d", n)
	}
	if _, body := getPage(t, h, "/"); !strings.Contains(body, `data-starts="2"`) {
		t.Error("the page does not carry the count")
	}
}
