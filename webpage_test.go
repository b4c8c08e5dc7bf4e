package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/broker"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
	"github.com/smartcar2mqtt/smartcar2mqtt/status"
)

// haIngress stands in for Home Assistant: its frontend at / shows the
// add-on's page in an iframe, and /api/hassio_ingress/<token>/… goes to the
// daemon with the prefix taken off and X-Ingress-Path added. The browser's
// Host passes through, as Home Assistant's and the Supervisor's proxies pass
// it. It records every request the browser made to it.
type haIngress struct {
	srv    *httptest.Server
	prefix string

	mu       sync.Mutex
	requests []string // "METHOD /path status"
}

func newHAIngress(t *testing.T, daemonAddr string) *haIngress {
	t.Helper()
	p := &haIngress{prefix: "/api/hassio_ingress/" + "Zq3-x_9TkWb1"}
	daemon := &url.URL{Scheme: "http", Host: daemonAddr}
	forward := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(daemon)
		pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, p.prefix)
		pr.Out.URL.RawPath = ""
		pr.Out.Host = pr.In.Host
		pr.SetXForwarded()
		pr.Out.Header.Set("X-Ingress-Path", p.prefix)
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Home Assistant</title><link rel="icon" href="data:,">`+
			`<style>body{margin:0}iframe{border:0;width:100%%;height:2000px}</style></head>`+
			`<body><iframe src="%s/" title="smartcar2mqtt"></iframe></body></html>`, p.prefix)
	})
	mux.Handle(p.prefix+"/", forward)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sw, r)
		p.mu.Lock()
		p.requests = append(p.requests, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, sw.status))
		p.mu.Unlock()
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// statusWriter notes the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// seen are the requests the proxy answered, as "METHOD /path status".
func (p *haIngress) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.requests)
}

// haHost is the name the browser reaches the proxy by: not localhost, so
// that, as for Home Assistant on http://homeassistant.local:8123, the origin
// is not a secure context and the browser sends no Sec-Fetch-Site: the forms'
// cross-site check must work from Origin alone. A home network's name, which
// the page answers to without HTTP_ALLOWED_HOSTS.
const haHost = "homeassistant.local"

// browser starts headless Chromium for one test.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(itest.Chromium(t)),
		chromedp.Flag("host-resolver-rules", "MAP "+haHost+" 127.0.0.1"),
		chromedp.WindowSize(1000, 1400),
	)
	if itest.ChromiumNeedsNoSandbox() {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancel)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	return bctx
}

// TestWebPageInABrowser is the add-on user's path, in a real browser through a
// stand-in for Home Assistant's Ingress: the page loads with nothing from
// elsewhere, Connect a car opens Smartcar's Connect (the simulator's) in a new
// tab, the simulator grants a connection, and the page, never reloaded,
// shows the new car.
func TestWebPageInABrowser(t *testing.T) {
	itest.Chromium(t) // skip before starting anything when there is none
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	sim := smartcarsim.New(smartcarsim.Options{APIClientID: "client_e2e", APIClientSecret: "api-secret-Kk8", ApplicationID: "app-e2e"})
	sim.QueueConnect(smartcarsim.Vehicle{ID: "car-from-the-page", UserID: "page-user", Make: "TESLA", Model: "Model Y", Year: 2025},
		[]string{smartcar.PermReadVehicleInfo, smartcar.PermReadCharge, smartcar.PermControlCharge})
	// The simulator approves at once, faster than any person: the page's
	// Connect must already know which cars were there before.
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	// Where Connect sends the browser: the registered redirect URI, which
	// for the page need not be served by anyone; here it says so.
	landed := make(chan url.Values, 1)
	landing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case landed <- r.URL.Query():
		default:
		}
		io.WriteString(w, "Connected: you can close this tab.")
	}))
	t.Cleanup(landing.Close)

	httpAddr := freeAddr(t)
	d := startMain(t, v3Env(srv, t.TempDir(), "HTTP_LISTEN="+httpAddr, "BROKER_LISTEN=127.0.0.1:0",
		"BROKER_USERNAME=ha", "BROKER_PASSWORD=broker-pass-Vv4", "SMARTCAR_REDIRECT_URI="+landing.URL+"/callback"), "run")
	d.stderr.WaitLine(t, `model="Model 3"`, 30*time.Second)        // the simulator's two cars, announced
	d.stderr.WaitLine(t, `model="Mustang Mach-E"`, 30*time.Second) // before the page is opened

	proxy := newHAIngress(t, httpAddr)
	origin := strings.Replace(proxy.srv.URL, "127.0.0.1", haHost, 1)
	bctx := browser(t, t.Context()) // outlives ctx, to show the page when a wait fails
	var netMu sync.Mutex
	var fetched []string // every URL the Home Assistant tab asked for, the iframe's included
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			netMu.Lock()
			fetched = append(fetched, e.Request.URL)
			netMu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(origin+"/")); err != nil {
		t.Fatalf("open Home Assistant's page: %v", err)
	}
	// The page, in Home Assistant's iframe (same origin: frame-ancestors 'self').
	inPage := func(js string) string {
		return `(() => { const d = document.querySelector("iframe").contentDocument; return ` + js + `; })()`
	}
	waitFor := func(what, js string, within time.Duration) {
		t.Helper()
		// A timer, not requestAnimationFrame, which a tab in the background never runs.
		poll := chromedp.Poll[bool](inPage(js), chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(within))
		if _, err := chromedp.Run(bctx, poll); err != nil {
			body, _ := chromedp.Run(bctx, chromedp.Evaluate[string](inPage(`d && d.body ? d.body.innerText : "(no page)"`)))
			t.Fatalf("%s: %v\nthe page says:\n%s\ndaemon log:\n%s", what, err, body, d.stderr.Text())
		}
	}
	waitFor("the page with the two cars", `!!d && d.querySelectorAll("article.car").length === 2 && !!d.querySelector('#connect button')`, 20*time.Second)
	// A mark in the page's window: gone if it is ever reloaded.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](inPage(`(document.querySelector("iframe").contentWindow.notReloaded = true)`))); err != nil {
		t.Fatal(err)
	}
	netMu.Lock()
	firstLoad := slices.Clone(fetched)
	netMu.Unlock()

	frames, err := chromedp.Run(bctx, chromedp.Nodes(chromedp.CSS("iframe")))
	if err != nil || len(frames) != 1 {
		t.Fatalf("the iframe: %v (%d)", err, len(frames))
	}
	newTab := chromedp.WaitNewTarget(bctx, func(info *target.Info) bool { return info.Type == "page" })
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#connect button"), chromedp.FromNode(frames[0]))); err != nil {
		t.Fatalf("click Connect a car: %v", err)
	}
	waitFor(`"Waiting for Smartcar…" after the click`, `d.getElementById("connect").textContent.includes("Waiting for Smartcar…")`, 10*time.Second)

	select {
	case id, ok := <-newTab:
		if !ok || id == "" {
			t.Fatal("Connect did not open a new tab")
		}
	case <-ctx.Done():
		t.Fatal("Connect did not open a new tab within the deadline")
	}
	// Back to Home Assistant's tab, as the user would after approving.
	if _, err := chromedp.Call(bctx, page.BringToFront, cdp.Empty{}); err != nil {
		t.Logf("bring the page's tab to the front: %v", err)
	}
	reached, cancelReached := context.WithTimeout(ctx, 30*time.Second)
	authorize, err := sim.WaitRequest(reached, func(q smartcarsim.Request) bool { return q.Path == "/oauth/authorize" })
	cancelReached()
	if err != nil {
		t.Fatalf("the new tab never reached the simulator's Connect: %v\nthrough the proxy: %v", err, proxy.seen())
	}
	if q, _ := url.ParseQuery(authorize.Query); q.Get("client_id") != "app-e2e" || q.Get("redirect_uri") != landing.URL+"/callback" {
		t.Errorf("Connect was opened with %s", authorize.Query)
	}
	select {
	case q := <-landed:
		if q.Get("user_id") != "page-user" || q.Get("state") == "" {
			t.Errorf("Connect sent the browser back with %v", q)
		}
	case <-ctx.Done():
		t.Fatal("the simulator's Connect never sent the new tab back to the redirect URI")
	}

	waitFor("the new car on the page, without a reload", `!!d.querySelector('article.car[data-id="car-from-the-page"]') && `+
		`d.querySelector('article.car[data-id="car-from-the-page"] h3').textContent === "2025 TESLA Model Y" && `+
		`d.getElementById("connect").textContent.includes("Connected: 2025 TESLA Model Y. It is under Vehicles above.")`, 60*time.Second)
	if reloaded, err := chromedp.Run(bctx, chromedp.Evaluate[bool](inPage(`document.querySelector("iframe").contentWindow.notReloaded !== true`))); err != nil || reloaded {
		t.Errorf("the page was reloaded (%v)", err)
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // quality 100: a PNG
	if err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		path := filepath.Join(t.ArtifactDir(), "webpage.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Error(err)
		}
		t.Logf("screenshot of the page with the new car: %s (kept with go test -artifacts)", path)
	}

	// Nothing came from anywhere but Home Assistant's origin, and everything
	// the page asked for was under its Ingress path.
	if len(firstLoad) < 2 {
		t.Errorf("the browser reported %d requests for the first load", len(firstLoad))
	}
	netMu.Lock()
	all := slices.Clone(fetched)
	netMu.Unlock()
	for _, u := range all {
		if strings.HasPrefix(u, "data:") {
			continue
		}
		if u != origin+"/" && !strings.HasPrefix(u, origin+proxy.prefix+"/") {
			t.Errorf("the page asked for %s, outside %s%s/", u, origin, proxy.prefix)
		}
	}
	var states, posts int
	for _, r := range proxy.seen() {
		var method, path string
		var code int
		fmt.Sscanf(r, "%s %s %d", &method, &path, &code)
		switch {
		case path == "/":
		case !strings.HasPrefix(path, proxy.prefix+"/"):
			t.Errorf("a request without the Ingress prefix reached the proxy: %s", r)
		case path == proxy.prefix+"/state":
			states++
		case method == http.MethodPost && path == proxy.prefix+"/connect" && code == http.StatusSeeOther:
			posts++
		}
	}
	if states == 0 || posts != 1 {
		t.Errorf("through the proxy: %d state polls, %d Connect posts (want some, and 1): %v", states, posts, proxy.seen())
	}
	d.stop(t)
}

// TestWebPageShowsNoSecret runs daemons configured with every kind of secret,
// and reads the page and its state as the browser would, with and without
// the Ingress prefix, and after starting Connect: none of the secrets, nor a
// token the daemon got, is ever in them.
func TestWebPageShowsNoSecret(t *testing.T) {
	t.Run("v3, embedded broker", func(t *testing.T) {
		sim, srv := v3Sim(t)
		httpAddr := freeAddr(t)
		d := startMain(t, v3Env(srv, t.TempDir(), "HTTP_LISTEN="+httpAddr, "BROKER_LISTEN=127.0.0.1:0", "LOG_LEVEL=debug",
			"BROKER_USERNAME=ha", "BROKER_PASSWORD=broker-pass-Vv4", "SMARTCAR_WEBHOOK_SECRET=webhook-secret-Ww3"), "run")
		d.stderr.WaitLine(t, `why="after a read"`, 30*time.Second)
		pages := readPages(t, httpAddr)
		secrets := append([]string{"api-secret-Kk8", "broker-pass-Vv4", "webhook-secret-Ww3"}, bearerTokens(sim)...)
		noSecrets(t, pages, secrets, 4)
		d.stop(t)
	})
	t.Run("v2, external broker with a password", func(t *testing.T) {
		sim, srv := v3Sim(t)
		mqtt, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Username: "mqtt-user", Password: "mqtt-pass-Pp5",
			DataDir: t.TempDir(), BaseTopic: "guarded-elsewhere", Log: logrus.NewEntry(logrus.New())})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mqtt.Close() })
		seed := sim.IssueRefreshToken()
		httpAddr, dataDir := freeAddr(t), t.TempDir()
		d := startMain(t, []string{"DATA_DIR=" + dataDir, "HTTP_LISTEN=" + httpAddr, "LOG_LEVEL=debug",
			"SMARTCAR_CLIENT_ID=legacy-uuid", "SMARTCAR_CLIENT_SECRET=legacy-secret-Hh2", "SMARTCAR_REFRESH_TOKEN=" + seed,
			"SMARTCAR_API_URL=" + srv.URL + "/v2.0", "SMARTCAR_TOKEN_URL=" + srv.URL + "/oauth/token",
			"SMARTCAR_CONNECT_URL=" + srv.URL + "/oauth/authorize",
			"MQTT_URL=tcp://" + mqtt.Addr().String(), "MQTT_USERNAME=mqtt-user", "MQTT_PASSWORD=mqtt-pass-Pp5"}, "run")
		d.stderr.WaitLine(t, `why="after a read"`, 30*time.Second)
		pages := readPages(t, httpAddr)
		secrets := append([]string{"legacy-secret-Hh2", "mqtt-pass-Pp5", seed}, bearerTokens(sim)...)
		stored, err := smartcar.NewTokenStore(dataDir).Load()
		if err != nil || stored.RefreshToken == "" {
			t.Fatalf("the token store: %v", err)
		}
		secrets = append(secrets, stored.RefreshToken, stored.AccessToken)
		noSecrets(t, pages, secrets, 5)
		d.stop(t)
	})
}

// readPages reads the page and its state directly and under an Ingress
// prefix, starts Connect, and reads them again while it waits.
func readPages(t *testing.T, addr string) map[string]string {
	t.Helper()
	pages := map[string]string{}
	get := func(name, path string, header ...string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
		}
		pages[name] = fmt.Sprint(resp.Header) + "\n" + string(body)
	}
	get("/", "/")
	get("/state", "/state")
	get("/ under Ingress", "/", "X-Ingress-Path", "/api/hassio_ingress/tok")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.PostForm("http://"+addr+"/connect", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /connect: %d", resp.StatusCode)
	}
	pages["POST /connect"] = fmt.Sprint(resp.Header)
	get("/ while Connect waits", "/")
	get("/state while Connect waits", "/state")
	if !strings.Contains(pages["/state while Connect waits"], `"phase":"waiting"`) {
		t.Errorf("Connect is not waiting: %s", pages["/state while Connect waits"])
	}
	return pages
}

// bearerTokens are the access tokens the daemon sent to the simulator.
func bearerTokens(sim *smartcarsim.Simulator) []string {
	var tokens []string
	for _, r := range sim.Requests() {
		if tok, ok := strings.CutPrefix(r.Authorization, "Bearer "); ok && !slices.Contains(tokens, tok) {
			tokens = append(tokens, tok)
		}
	}
	return tokens
}

func noSecrets(t *testing.T, pages map[string]string, secrets []string, atLeast int) {
	t.Helper()
	if len(secrets) < atLeast {
		t.Fatalf("only %d secrets to look for, want %d or more: the daemon made no call?", len(secrets), atLeast)
	}
	for name, text := range pages {
		for i, s := range secrets {
			if s == "" {
				t.Fatalf("secret %d is empty", i)
			}
			if strings.Contains(text, s) {
				t.Errorf("%s shows secret %d (%d characters)", name, i, len(s))
			}
		}
	}
}

// BenchmarkDaemonIdleMemoryWebPage is the idle resident memory of the daemon
// bridging the simulator's two cars with the embedded broker, measured as
// BenchmarkDaemonIdleMemory measures it: with HTTP_LISTEN=off (as there), with
// the HTTP server on but the page never asked for, and with the page served
// (a first load and a minute of the script's polls, 30 state requests)
// before the idle window. The last reports its difference from the first
// (target: at most +1 MB).
//
//	go test -run '^$' -bench DaemonIdleMemoryWebPage -benchtime 1x .
func BenchmarkDaemonIdleMemoryWebPage(b *testing.B) {
	var off float64
	for _, mode := range []string{"http=off", "http=on", "page=served"} {
		b.Run(mode, func(b *testing.B) {
			w := newPerfWorld(b, smartcarsim.Options{})
			for b.Loop() {
				httpAddr := "off"
				if mode != "http=off" {
					httpAddr = freeAddr(b)
				}
				d := w.start("", freeAddr(b), "HTTP_LISTEN="+httpAddr)
				w.waitReady(d)
				if mode == "page=served" {
					for i, path := range append([]string{"/"}, slices.Repeat([]string{"/state"}, 30)...) {
						resp, err := http.Get("http://" + httpAddr + path)
						if err != nil {
							b.Fatalf("load %d: %v", i, err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Fatalf("GET %s: %d", path, resp.StatusCode)
						}
					}
					http.DefaultClient.CloseIdleConnections()
				}
				median, peak := d.idleMemory(b, idleWindow)
				b.ReportMetric(median.rss, "idle-RSS-MB")
				b.ReportMetric(median.anon, "idle-anon-MB")
				b.ReportMetric(median.file, "idle-file-MB")
				b.ReportMetric(peak, "peak-RSS-MB")
				switch {
				case mode == "http=off":
					off = median.rss
				case mode == "page=served" && off > 0:
					b.ReportMetric(median.rss-off, "delta-vs-http-off-MB")
				}
				d.stop(b)
			}
		})
	}
}

// pageConnector is a Connect flow whose state and failures the test sets;
// like smartcar.WebConnect, a press while a flow waits reuses it.
type pageConnector struct {
	mu        sync.Mutex
	state     smartcar.ConnectState
	startErr  error
	finishErr error
}

func (c *pageConnector) Start() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.startErr != nil {
		return "", c.startErr
	}
	return c.state.Link, nil
}

func (c *pageConnector) Finish(context.Context, string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.finishErr
}

func (c *pageConnector) State() smartcar.ConnectState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *pageConnector) set(st smartcar.ConnectState, startErr, finishErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state, c.startErr, c.finishErr = st, startErr, finishErr
}

// requestLog notes each answer's status as it begins, so an answer the
// browser shows has been noted.
type requestLog struct {
	http.ResponseWriter
	r     *http.Request
	note  func(string)
	wrote bool
}

func (w *requestLog) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.note(fmt.Sprintf("%s %s %d", w.r.Method, w.r.URL.Path, code))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *requestLog) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// TestWebPageWhenConnectGoesWrong runs the page in a real browser behind a
// reverse proxy at a sub-path, with a Connect that goes wrong as a user may
// meet it: Start fails (the new tab shows why, and the page, pressed from the
// keyboard, goes back to what the daemon says with focus kept); a press
// within the restart guard (the flow's link comes back); and a refused v2
// Finish, whose answer at …/connect/finish still polls and posts to the
// page's own addresses.
func TestWebPageWhenConnectGoesWrong(t *testing.T) {
	itest.Chromium(t)
	conn := &pageConnector{}
	daemon := status.Handler(status.Routes{Metrics: status.NewMetrics(), Page: &status.Page{
		Login: func() error { return nil }, Connect: conn, APIVersion: "v2", Version: "test",
	}})
	var mu sync.Mutex
	var requests []string
	mux := http.NewServeMux()
	mux.Handle("/car/", http.StripPrefix("/car", daemon))
	mux.HandleFunc("GET /smartcar-connect", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `<!doctype html><title>Smartcar Connect</title><link rel="icon" href="data:,">`)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(&requestLog{ResponseWriter: w, r: r, note: func(s string) {
			mu.Lock()
			requests = append(requests, s)
			mu.Unlock()
		}}, r)
	}))
	t.Cleanup(srv.Close)
	seen := func(want string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range requests {
			if strings.HasPrefix(r, want) {
				n++
			}
		}
		return n
	}

	bctx := browser(t, t.Context())
	do := func(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// finish submits the v2 address form, and waits for the answer's page.
	finish := func(t *testing.T, address string) {
		t.Helper()
		resp, err := chromedp.RunResponse(bctx, chromedp.SetValue(chromedp.CSS("#address"), address),
			chromedp.Click(chromedp.CSS(`#connect form[action="connect/finish"] button`)))
		if err != nil || resp.Status != http.StatusBadRequest || resp.URL != srv.URL+"/car/connect/finish" {
			t.Fatalf("Finish with %q: %v", address, err)
		}
	}
	eval := func(t *testing.T, what, js string) {
		t.Helper()
		if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js)); err != nil || !ok {
			t.Fatalf("%s: %v %v", what, ok, err)
		}
	}
	waitFor := func(t *testing.T, what, js string) {
		t.Helper()
		poll := chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second))
		if _, err := chromedp.Run(bctx, poll); err != nil {
			body, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : "(no page)"`))
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%s: %v\nthe page says:\n%s\nrequests: %v", what, err, body, requests)
		}
	}
	// watch notes every text the Connect status shows, and marks the live
	// region, to tell whether it is still the same element.
	const watch = `(() => {
		const box = document.getElementById("connect");
		window.saw = [];
		box.querySelector(".connect-status").kept = true;
		new MutationObserver(() => {
			const s = box.querySelector(".connect-status");
			window.saw.push((s ? s.textContent : "") + (s && s.querySelector("a") ? " [link]" : ""));
		}).observe(box, { subtree: true, childList: true, characterData: true });
		return true;
	})()`
	const sentence = `document.querySelector("#connect .connect-status")`

	t.Run("Start fails", func(t *testing.T) {
		conn.set(smartcar.ConnectState{}, errors.New("smartcar connect: Smartcar did not answer"), nil)
		do(t, "open the page", chromedp.Navigate(srv.URL+"/car/"), chromedp.WaitVisible(chromedp.CSS("#connect button")))
		eval(t, "watch the Connect status", watch)
		do(t, "press Connect from the keyboard", chromedp.Focus(chromedp.CSS("#connect button")), chromedp.KeyEvent("\r"))
		waitFor(t, `"Waiting for Smartcar…" on the press`, `window.saw.some((s) => s.startsWith("Waiting for Smartcar…"))`)
		waitFor(t, "the daemon's own words back after the failed Start", sentence+`.textContent.startsWith("Opens Smartcar Connect in a new tab")`)
		if n := seen("POST /car/connect 500"); n != 1 {
			t.Errorf("%d failed Starts answered, want 1", n)
		}
		waitFor(t, "focus still on the Connect button", `document.activeElement === document.querySelector("#connect button")`)
		waitFor(t, "the live region the same element", sentence+`.kept === true && document.querySelectorAll("#connect [aria-live]").length === 1`)
	})

	t.Run("press within the restart guard", func(t *testing.T) {
		link := srv.URL + "/smartcar-connect"
		conn.set(smartcar.ConnectState{Phase: smartcar.ConnectWaiting, Started: time.Now(), Link: link}, nil, nil)
		do(t, "open the page", chromedp.Navigate(srv.URL+"/car/"), chromedp.WaitVisible(chromedp.CSS(`#connect a[href="`+link+`"]`)))
		eval(t, "watch the Connect status", watch)
		do(t, "press Start again", chromedp.Click(chromedp.CSS("#connect button")))
		waitFor(t, `"Waiting for Smartcar…" without the link on the press`, `window.saw.some((s) => s.startsWith("Waiting for Smartcar…") && !s.endsWith("[link]"))`)
		waitFor(t, "the link to Connect back", sentence+`.querySelector('a[href="`+link+`"]') !== null`)
		if n := seen("POST /car/connect 303"); n != 1 {
			t.Errorf("%d Starts answered, want 1", n)
		}
	})

	t.Run("v2 Finish refused, at a sub-path", func(t *testing.T) {
		conn.set(smartcar.ConnectState{Phase: smartcar.ConnectWaiting, Started: time.Now(), Link: srv.URL + "/smartcar-connect", NeedsAddress: true},
			nil, errors.New("this is not the address Smartcar sent the browser to"))
		do(t, "open the page", chromedp.Navigate(srv.URL+"/car/"))
		finish(t, "hello")
		waitFor(t, "the refusal", `!!document.querySelector(".notice")`)
		waitFor(t, "a state poll from there answered", `performance.getEntriesByType("resource").some((e) => e.name === location.origin + "/car/state" && e.responseStatus === 200)`)
		waitFor(t, "its links the page's own", `document.querySelector('a[href="healthz"]').href === location.origin + "/car/healthz" && `+
			`document.querySelector('#connect form[action="connect/finish"]').action === location.origin + "/car/connect/finish"`)
		finish(t, "hello again") // from the refusal's page
		if n := seen("POST /car/connect/finish 400"); n != 2 {
			t.Errorf("%d refused Finishes, want 2", n)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	for _, r := range requests {
		if strings.HasSuffix(r, " 404") {
			t.Errorf("the page asked for what is not there: %s", r)
		}
	}
}
