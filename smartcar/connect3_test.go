package smartcar

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

type connect3Run struct {
	out  *transcript
	done chan struct{}
	got  Connected
	err  error
}

// startConnectV3 runs ConnectV3 against the env's simulator in the background.
func (e *env) startConnectV3(t *testing.T, ctx context.Context, c ConnectV3) *connect3Run {
	t.Helper()
	r := &connect3Run{out: newTranscript(), done: make(chan struct{})}
	if c.Client == nil {
		c.Client, _ = e.v3Client()
	}
	c.ApplicationID, c.ConnectURL, c.Mode, c.Out = testApplicationID, e.srv.URL+"/oauth/authorize", "test", r.out
	go func() {
		defer close(r.done)
		r.got, r.err = c.Run(ctx)
	}()
	return r
}

func (r *connect3Run) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-r.done:
	case <-ctx.Done():
		t.Fatalf("Run did not return; output:\n%s", r.out.String())
	}
}

func TestConnectV3FinishesOnTheCallback(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	mine := smartcarsim.Vehicle{ID: "new-car", UserID: "new-user", Make: "TESLA", Model: "Model Y", Year: 2024}
	e.sim.QueueConnect(mine, []string{PermReadVehicleInfo, PermReadCharge, PermControlCharge})
	// Polls so rare that only the browser coming back can end the flow.
	r := e.startConnectV3(t, ctx, ConnectV3{RedirectURI: freeRedirectURI(t), Interval: func(time.Duration) time.Duration { return time.Hour }})

	link := r.out.connectURL(t, ctx)
	u, _ := url.Parse(link)
	q := u.Query()
	if q.Get("client_id") != testApplicationID || q.Get("response_type") != "code" || q.Get("mode") != "test" ||
		q.Get("scope") != DefaultScope || q.Get("state") == "" || !strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") {
		t.Errorf("Connect link %s", link)
	}
	// A request with the wrong state is refused and the flow goes on.
	if status, _ := browse(t, ctx, q.Get("redirect_uri")+"?user_id=evil&state=forged"); status != http.StatusBadRequest {
		t.Errorf("forged state answered %d, want 400", status)
	}
	// The browser: Connect approves and sends it back with user_id and state.
	status, page := browse(t, ctx, link)
	if status != http.StatusOK || !strings.Contains(page, "Vehicle connected") {
		t.Errorf("callback page %d:\n%s", status, page)
	}
	r.wait(t, ctx)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.got.UserID != "new-user" || len(r.got.New) != 1 || r.got.New[0].ID != "new-car" || r.got.New[0].UserID != "new-user" {
		t.Errorf("connected %+v", r.got)
	}
	if len(r.got.Vehicles) != 3 {
		t.Errorf("the listing for the cache has %d vehicles, want 3", len(r.got.Vehicles))
	}
	// One listing before the link, one after the callback; no more.
	if n := len(e.requestsTo("GET", "/v3/connections")); n != 2 {
		t.Errorf("%d listings, want 2", n)
	}
}

func TestConnectV3FinishesOnANewConnectionWithoutCallback(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// A redirect URI this machine does not serve: the user finishes on a phone,
	// and only /connections can tell.
	r := e.startConnectV3(t, ctx, ConnectV3{RedirectURI: "https://example.invalid/callback", Interval: func(time.Duration) time.Duration { return 5 * time.Millisecond }})
	r.out.connectURL(t, ctx)
	if _, err := e.sim.WaitRequest(ctx, func(req smartcarsim.Request) bool {
		return strings.HasSuffix(req.Path, "/connections") && req.Status != 0
	}); err != nil {
		t.Fatal(err)
	}
	e.sim.Grant(smartcarsim.Vehicle{ID: "phone-car", UserID: "phone-user", Make: "TESLA", Model: "Model 3", Year: 2023}, []string{PermReadCharge, PermControlCharge})
	r.wait(t, ctx)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.got.UserID != "" || len(r.got.New) != 1 || r.got.New[0].ID != "phone-car" {
		t.Errorf("connected %+v", r.got)
	}
	if strings.Contains(r.out.String(), "listening on") {
		t.Errorf("a callback was served for a redirect URI elsewhere:\n%s", r.out.String())
	}
}

func TestConnectV3WaitsOutRateLimits(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, _ := e.v3Client(WithMaxRetryWait(0))
	r := e.startConnectV3(t, ctx, ConnectV3{Client: c, RedirectURI: "https://example.invalid/callback", Interval: func(time.Duration) time.Duration { return 5 * time.Millisecond }})
	r.out.connectURL(t, ctx)
	e.sim.InjectFault(smartcarsim.Fault{Path: "/v3/connections", Status: 429, Code: "SMARTCAR_API", RetryAfter: time.Second})
	if _, err := e.sim.WaitRequest(ctx, func(req smartcarsim.Request) bool { return req.Status == 429 }); err != nil {
		t.Fatal(err)
	}
	limitedAt := time.Now() // after the 429 was answered: the gap below is at most this long
	seen := map[string]bool{}
	for _, req := range e.requestsTo("GET", "/v3/connections") {
		seen[req.RequestID] = true
	}
	if _, err := e.sim.WaitRequest(ctx, func(req smartcarsim.Request) bool {
		return strings.HasSuffix(req.Path, "/v3/connections") && !seen[req.RequestID]
	}); err != nil {
		t.Fatal(err)
	}
	if gap := time.Since(limitedAt); gap < time.Second-50*time.Millisecond {
		t.Errorf("polled again %v after a 429 asking for 1 s", gap)
	}
	e.sim.Grant(smartcarsim.Vehicle{ID: "later-car", UserID: "u2", Make: "TESLA"}, []string{PermControlCharge})
	r.wait(t, ctx)
	if r.err != nil {
		t.Fatal(r.err)
	}
}

func TestConnectV3Denied(t *testing.T) {
	e := newEnv(t, func(o *smartcarsim.Options) { o.DenyConnect = true })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r := e.startConnectV3(t, ctx, ConnectV3{RedirectURI: freeRedirectURI(t), Interval: func(time.Duration) time.Duration { return time.Hour }})
	browse(t, ctx, r.out.connectURL(t, ctx))
	r.wait(t, ctx)
	var se *Error
	if !errors.As(r.err, &se) || se.Type != TypeConnect || se.Code != CodeAccessDenied {
		t.Fatalf("err = %v, want a Connect access_denied", r.err)
	}
}

func TestConnectV3GivesUp(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r := e.startConnectV3(t, ctx, ConnectV3{RedirectURI: "https://example.invalid/cb", For: 50 * time.Millisecond,
		Interval: func(time.Duration) time.Duration { return 10 * time.Millisecond }})
	r.wait(t, ctx)
	if r.err == nil || !strings.Contains(r.err.Error(), "no new connection") {
		t.Fatalf("err = %v", r.err)
	}
}

func TestConnectPollIntervalSparesTheAppBucket(t *testing.T) {
	var polls int
	for at := time.Duration(0); at < DefaultConnectFor; at += ConnectPollInterval(at) {
		polls++
	}
	// The bucket holds 120 and refills 2 a minute; the daemon shares it.
	if polls > 40 {
		t.Errorf("%d polls in %s", polls, DefaultConnectFor)
	}
}
