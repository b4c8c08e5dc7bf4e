package smartcarsim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
)

// The conformance check drives the Simulator with Smartcar's official Node
// SDK (npm package smartcar, pinned in testdata/node-sdk/package.json): if the
// SDK, which is what Smartcar ships to talk to its real API, reads the
// simulator's answers as it reads Smartcar's, the simulator speaks Smartcar.
// testdata/node-sdk/check.js performs one SDK operation per run and prints
// one JSON line; this file sets the simulator up, runs it and checks both
// sides.

const nodeSDKDir = "testdata/node-sdk"

// installHint is the command that installs the SDK, from the repository root.
const installHint = "npm ci --prefix internal/smartcarsim/testdata/node-sdk"

// sdkOutput is check.js's one line.
type sdkOutput struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  *sdkError       `json:"error"`
}

// sdkError is what check.js copies from the thrown error: for a
// SmartcarError, the fields the SDK's constructor sets.
type sdkError struct {
	Name                 string `json:"name"`
	Message              string `json:"message"`
	IsSmartcarError      bool   `json:"isSmartcarError"`
	Type                 string `json:"type"` // v2.0 body type, the OAuth body's `error`, or SDK_ERROR
	Code                 string `json:"code"` // absent when the body's code is null
	StatusCode           int    `json:"statusCode"`
	RequestID            string `json:"requestId"`  // body requestId, else the sc-request-id header
	RetryAfter           string `json:"retryAfter"` // the Retry-After header's text, as the SDK keeps it
	Description          string `json:"description"`
	DocURL               string `json:"docURL"`
	SuggestedUserMessage string `json:"suggestedUserMessage"`
	Resolution           *struct {
		Type *string `json:"type"`
	} `json:"resolution"`
}

// sdkTokens is AuthClient.exchangeRefreshToken's Access object.
type sdkTokens struct {
	AccessToken       string    `json:"accessToken"`
	RefreshToken      string    `json:"refreshToken"`
	Expiration        time.Time `json:"expiration"`
	RefreshExpiration time.Time `json:"refreshExpiration"`
}

// sdkMeta is the meta object the SDK builds from the SC-* response headers
// on v2.0.
type sdkMeta struct {
	RequestID string `json:"requestId"`
}

// sdkResponse is what vehicle.request returns on v2.0.
type sdkResponse struct {
	Body json.RawMessage `json:"body"`
	Meta sdkMeta         `json:"meta"`
}

// sdkV3Response is what vehicle.request returns on v3: meta is then every
// response header, lower-cased, not the v2 meta object.
type sdkV3Response struct {
	Body json.RawMessage   `json:"body"`
	Meta map[string]string `json:"meta"`
}

// sdkAttributes is vehicle.attributes() on v2.0.
type sdkAttributes struct {
	ID    string  `json:"id"`
	Make  string  `json:"make"`
	Model string  `json:"model"`
	Year  int     `json:"year"`
	Meta  sdkMeta `json:"meta"`
}

// requireNodeSDK skips the test when node or the installed SDK is missing,
// unless REQUIRE_NODE_SDK=1 (CI), where that is a failure. It returns the
// SDK version installed.
func requireNodeSDK(t *testing.T) string {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node is not on PATH")
	}
	installed := filepath.Join(nodeSDKDir, "node_modules", "smartcar", "package.json")
	if _, err := os.Stat(installed); err != nil {
		missing = append(missing, "internal/smartcarsim/"+nodeSDKDir+"/node_modules/smartcar is not installed")
	}
	if len(missing) > 0 {
		msg := "Smartcar Node SDK conformance check not run: " + strings.Join(missing, "; ") +
			". Install node (≥ 18.20) and run `" + installHint + "` from the repository root."
		itest.Absent(t, "REQUIRE_NODE_SDK", msg)
	}
	var pinned struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	var got struct {
		Version string `json:"version"`
	}
	readJSON(t, filepath.Join(nodeSDKDir, "package.json"), &pinned)
	readJSON(t, installed, &got)
	if want := pinned.Dependencies["smartcar"]; got.Version != want {
		t.Fatalf("installed smartcar SDK is %s but package.json pins %q: run `%s`", got.Version, want, installHint)
	}
	return got.Version
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// sdkRun is one case's simulator and the variables check.js gets.
type sdkRun struct {
	t       *testing.T
	e       *env
	version string // of the SDK
	vars    map[string]string
}

// node runs `node check.js op` with the run's variables, overridden by
// extra ("NAME=value"), and decodes its one line.
func (r *sdkRun) node(op string, extra ...string) sdkOutput {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "check.js", op)
	cmd.Dir = nodeSDKDir
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = childEnv()
	for k, v := range r.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, extra...) // later entries win
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("node check.js %s: %v (ctx: %v)\nstdout: %s\nstderr: %s", op, err, ctx.Err(), stdout.Bytes(), stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 1 {
		r.t.Fatalf("node check.js %s printed %d lines, want 1:\n%s\nstderr: %s", op, len(lines), stdout.Bytes(), stderr.Bytes())
	}
	r.t.Logf("node check.js %s → %s", op, lines[0])
	var out sdkOutput
	if err := json.Unmarshal([]byte(lines[0]), &out); err != nil {
		r.t.Fatalf("node check.js %s: %v in %s", op, err, lines[0])
	}
	if out.OK == (out.Error != nil) {
		r.t.Fatalf("node check.js %s: malformed line %s", op, lines[0])
	}
	return out
}

// childEnv is this process's environment without any SMARTCAR_* variable
// (the SDK reads several) or proxy setting: the simulator is on loopback.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SMARTCAR_") || strings.HasSuffix(strings.ToUpper(name), "_PROXY") || name == "NODE_USE_ENV_PROXY" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// ok returns the result of a successful run, decoded into v.
func (r *sdkRun) ok(out sdkOutput, v any) {
	r.t.Helper()
	if !out.OK {
		r.t.Fatalf("SDK failed: %+v", *out.Error)
	}
	if err := json.Unmarshal(out.Result, v); err != nil {
		r.t.Fatalf("result %s: %v", out.Result, err)
	}
}

// refresh spends rt through the SDK and returns the new tokens.
func (r *sdkRun) refresh(rt string) sdkTokens {
	r.t.Helper()
	var tok sdkTokens
	r.ok(r.node("refresh", "SMARTCAR_REFRESH_TOKEN="+rt), &tok)
	return tok
}

// lastRequest is the last logged request with that method and path suffix;
// it fails the test if count such requests were not logged (count < 0: any).
func (r *sdkRun) lastRequest(method, suffix string, count int) Request {
	r.t.Helper()
	got := r.e.requestsTo(method, suffix)
	if len(got) == 0 || (count >= 0 && len(got) != count) {
		r.t.Fatalf("%d logged %s …%s requests, want %d; log: %+v", len(got), method, suffix, count, r.e.sim.Requests())
	}
	return got[len(got)-1]
}

// teslaVehicle snapshots the simulated Tesla.
func (r *sdkRun) teslaVehicle() vehicle {
	v, _ := r.e.sim.snapshot(TeslaID)
	return v
}

// direct GETs a v3 path as the simulator answers it, with the run's app
// token and the Tesla's user, decoded generically for comparison with what
// the SDK returned.
func (r *sdkRun) direct(path string) map[string]any {
	r.t.Helper()
	resp := r.e.do(r.t, "GET", path, "Authorization", bearerHeader(r.vars["SMARTCAR_APP_TOKEN"]), "sc-user-id", UserID)
	if resp.status != 200 {
		r.t.Fatalf("GET %s: %d %s", path, resp.status, resp.body)
	}
	return decode[map[string]any](r.t, resp.body)
}

// checkV3Meta checks that the SDK handed back the response headers as v3
// meta, with the request id the simulator logged for req.
func (r *sdkRun) checkV3Meta(meta map[string]string, req Request) {
	r.t.Helper()
	if meta["sc-request-id"] == "" || meta["sc-request-id"] != req.RequestID || req.Status/100 != 2 {
		r.t.Errorf("meta %v, logged %+v", meta, req)
	}
	if !strings.HasPrefix(req.UserAgent, "Smartcar/"+r.version+" ") {
		r.t.Errorf("User-Agent %q: not the SDK", req.UserAgent)
	}
}

const (
	doorSuffix     = "/tesla/charge/charge_port_door"
	chargeSuffix   = "/tesla/charge"
	v3OpenSuffix   = "/commands/charge-port/open"
	v3CloseSuffix  = "/commands/charge-port/close"
	v3SignalsPath  = "/v3/vehicles/" + TeslaID + "/signals"
	doorSignalCode = "charge-ischargingportflapopen"
)

// v3 requests check.js makes with vehicle.request, as NAME=value variables.
func v3req(method, path string, userID string) []string {
	return []string{"SMARTCAR_V3_METHOD=" + method, "SMARTCAR_V3_PATH=" + path, "SMARTCAR_USER_ID=" + userID}
}

func TestNodeSDKConformance(t *testing.T) {
	version := requireNodeSDK(t)

	// wantErr describes the SmartcarError a case must end in. Every case
	// with one also checks that the SDK's requestId is the sc-request-id
	// the simulator logged for the request, and that the SDK did not retry.
	type wantErr struct {
		method, suffix string
		status         int
		// sdkError: the body was v3's {"errors":[…]} envelope, which the
		// SDK does not read: it throws type SDK_ERROR, description
		// "Unknown error", no code, no resolution, and keeps nothing of the
		// envelope. typ, code and resolution are then unchecked.
		sdkError   bool
		typ, code  string
		resolution string // resolution.type; "" = none or null
		retryAfter string
	}
	tests := []struct {
		name  string
		op    string
		opts  func(*Options)
		login bool     // get a v2 access token first
		app   bool     // get a v3 application token first
		vars  []string // extra check.js variables
		setup func(r *sdkRun)
		check func(r *sdkRun, out sdkOutput) // for successful ops
		err   *wantErr
	}{
		{
			name: "refresh rotates and the used token is refused",
			op:   "refresh",
			check: func(r *sdkRun, out sdkOutput) {
				t := r.t
				old := r.vars["SMARTCAR_REFRESH_TOKEN"]
				var tok sdkTokens
				r.ok(out, &tok)
				if tok.AccessToken == "" || tok.RefreshToken == "" || tok.RefreshToken == old {
					t.Fatalf("tokens = %+v, old refresh token %s", tok, old)
				}
				// The SDK turns expires_in into a date from its own clock.
				if d := time.Until(tok.Expiration); d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
					t.Errorf("access expiration in %v, want ~2h (expires_in 7200)", d)
				}
				req := r.lastRequest("POST", "/oauth/token", 1)
				basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(testClientID+":"+testClientSecret))
				form, _ := url.ParseQuery(req.Body)
				if req.Authorization != basic || form.Get("grant_type") != "refresh_token" || form.Get("refresh_token") != old {
					t.Errorf("token request: auth %q body %q", req.Authorization, req.Body)
				}

				// Smartcar answers a used refresh token with the OAuth body
				// {"error":"invalid_grant",...}, status 400; the SDK copies
				// `error` into type and has no code.
				again := r.node("refresh")
				if again.OK {
					t.Fatalf("used refresh token accepted: %s", again.Result)
				}
				e := again.Error
				refused := r.lastRequest("POST", "/oauth/token", 2)
				if !e.IsSmartcarError || e.Type != "invalid_grant" || e.Code != "" || e.StatusCode != 400 ||
					e.RequestID != refused.RequestID || e.Description == "" {
					t.Errorf("used refresh token: SDK error %+v, want invalid_grant/400 with request id %s", *e, refused.RequestID)
				}

				next := r.refresh(tok.RefreshToken)
				if next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken {
					t.Errorf("rotated refresh token refused or not rotated: %+v", next)
				}
			},
		},
		{
			name:  "vehicles list",
			op:    "vehicles",
			login: true,
			check: func(r *sdkRun, out sdkOutput) {
				var got struct {
					Vehicles []string `json:"vehicles"`
					Paging   struct {
						Count  int `json:"count"`
						Offset int `json:"offset"`
					} `json:"paging"`
					Meta sdkMeta `json:"meta"`
				}
				r.ok(out, &got)
				if !slices.Contains(got.Vehicles, TeslaID) || !slices.Contains(got.Vehicles, OtherID) || got.Paging.Count != 2 {
					r.t.Errorf("vehicles = %+v", got)
				}
				if req := r.lastRequest("GET", "", -1); got.Meta.RequestID != req.RequestID || req.Status != 200 {
					r.t.Errorf("meta.requestId %q, last request %+v", got.Meta.RequestID, req)
				}
			},
		},
		{
			name:  "attributes",
			op:    "attributes",
			login: true,
			check: func(r *sdkRun, out sdkOutput) {
				var got sdkAttributes
				r.ok(out, &got)
				want := r.teslaVehicle().info
				if got.ID != want.ID || got.Make != want.Make || got.Model != want.Model || got.Year != want.Year || want.Make == "" || want.Year == 0 {
					r.t.Errorf("attributes = %+v, simulator has %+v", got, want)
				}
				if req := r.lastRequest("GET", "", -1); got.Meta.RequestID != req.RequestID || req.Status != 200 {
					r.t.Errorf("meta.requestId %q, last request %+v", got.Meta.RequestID, req)
				}
			},
		},
		{
			name:  "door open then close through vehicle.request",
			op:    "door-open",
			login: true,
			check: func(r *sdkRun, out sdkOutput) {
				t := r.t
				var res sdkResponse
				r.ok(out, &res)
				if !r.e.sim.ChargePortOpen(TeslaID) {
					t.Fatal("door closed after the SDK's OPEN")
				}
				req := r.lastRequest("POST", doorSuffix, 1)
				var body struct {
					Action string `json:"action"`
				}
				if err := json.Unmarshal([]byte(req.Body), &body); err != nil || body.Action != "OPEN" {
					t.Errorf("logged body %q, want action OPEN", req.Body)
				}
				if req.Path != "/v2.0/vehicles/"+TeslaID+doorSuffix || req.Authorization != "Bearer "+r.vars["SMARTCAR_ACCESS_TOKEN"] {
					t.Errorf("logged %s with Authorization %q", req.Path, req.Authorization)
				}
				if !strings.HasPrefix(req.UserAgent, "Smartcar/"+r.version+" ") {
					t.Errorf("User-Agent %q: not the SDK", req.UserAgent)
				}
				var status struct {
					Status string `json:"status"`
				}
				if err := json.Unmarshal(res.Body, &status); err != nil || status.Status != "success" || res.Meta.RequestID != req.RequestID {
					t.Errorf("response %s meta %+v, request id %s", res.Body, res.Meta, req.RequestID)
				}

				r.ok(r.node("door-close"), &res)
				if r.e.sim.ChargePortOpen(TeslaID) {
					t.Error("door open after the SDK's CLOSE")
				}
				req = r.lastRequest("POST", doorSuffix, 2)
				if err := json.Unmarshal([]byte(req.Body), &body); err != nil || body.Action != "CLOSE" {
					t.Errorf("logged body %q, want action CLOSE", req.Body)
				}
			},
		},
		{
			name:  "tesla charge, unplugged",
			op:    "tesla-charge",
			login: true,
			check: checkCharge,
		},
		{
			name:  "tesla charge, plugged in",
			op:    "tesla-charge",
			login: true,
			setup: func(r *sdkRun) { r.e.sim.SetPluggedIn(TeslaID, true) },
			check: checkCharge,
		},

		// Errors the simulator sends on its own.
		{
			name: "unknown access token", op: "tesla-charge",
			vars: []string{"SMARTCAR_ACCESS_TOKEN=not-a-token"},
			err:  &wantErr{method: "GET", suffix: chargeSuffix, status: 401, typ: "AUTHENTICATION"},
		},
		{
			name: "permission not granted", op: "door-open", login: true,
			setup: func(r *sdkRun) { r.e.sim.SetPermissions(TeslaID, "read_vehicle_info", "read_charge") },
			err:   &wantErr{method: "POST", suffix: doorSuffix, status: 403, typ: "PERMISSION", resolution: "REAUTHENTICATE"},
		},
		{
			name: "door command for a non-Tesla", op: "door-open", login: true,
			vars: []string{"SMARTCAR_VEHICLE_ID=" + OtherID, "SMARTCAR_VEHICLE_MAKE=ford"},
			err:  &wantErr{method: "POST", suffix: "/ford/charge/charge_port_door", status: 501, typ: "COMPATIBILITY", code: "MAKE_NOT_COMPATIBLE"},
		},
		{
			name: "v2.0 retired", op: "tesla-charge", login: true,
			setup: func(r *sdkRun) { r.e.sim.RetireV2(true) },
			err:   &wantErr{method: "GET", suffix: chargeSuffix, status: 410, typ: "RESOURCE_NOT_FOUND", code: "VERSION"},
		},

		// Injected faults, with the simulator's defaults (defaultFault).
		{
			name: "fault 401", op: "tesla-charge", login: true,
			setup: inject(Fault{Method: "GET", Path: chargeSuffix, Status: 401}),
			err:   &wantErr{method: "GET", suffix: chargeSuffix, status: 401, typ: "AUTHENTICATION"},
		},
		{
			name: "fault 403", op: "door-open", login: true,
			setup: inject(Fault{Method: "POST", Path: doorSuffix, Status: 403}),
			err:   &wantErr{method: "POST", suffix: doorSuffix, status: 403, typ: "PERMISSION", resolution: "REAUTHENTICATE"},
		},
		{
			name: "fault 409 asleep", op: "door-open", login: true,
			setup: inject(Fault{Method: "POST", Path: doorSuffix, Status: 409}),
			err:   &wantErr{method: "POST", suffix: doorSuffix, status: 409, typ: "VEHICLE_STATE", code: "ASLEEP"},
		},
		{
			name: "fault 429 with Retry-After", op: "tesla-charge", login: true,
			setup: inject(Fault{Method: "GET", Path: chargeSuffix, Status: 429, RetryAfter: 7 * time.Second}),
			err: &wantErr{method: "GET", suffix: chargeSuffix, status: 429, typ: "RATE_LIMIT", code: "VEHICLE",
				resolution: "RETRY_LATER", retryAfter: "7"},
		},
		{
			name: "fault 500", op: "door-close", login: true,
			setup: inject(Fault{Method: "POST", Path: doorSuffix, Status: 500}),
			err:   &wantErr{method: "POST", suffix: doorSuffix, status: 500, typ: "SERVER", code: "INTERNAL", resolution: "RETRY_LATER"},
		},
		{
			name: "fault 502", op: "tesla-charge", login: true,
			setup: inject(Fault{Method: "GET", Path: chargeSuffix, Status: 502}),
			err:   &wantErr{method: "GET", suffix: chargeSuffix, status: 502, typ: "UPSTREAM", code: "UNKNOWN_ISSUE", resolution: "RETRY_LATER"},
		},

		// API v3.
		{
			name: "v3 application token by fetch",
			op:   "app-token",
			check: func(r *sdkRun, out sdkOutput) {
				var got struct {
					Status       int          `json:"status"`
					RequestID    string       `json:"requestId"`
					CacheControl string       `json:"cacheControl"`
					Body         appTokenBody `json:"body"`
				}
				r.ok(out, &got)
				req := r.lastRequest("POST", "/oauth2/token", 1)
				if got.Status != 200 || got.RequestID != req.RequestID || got.CacheControl != "no-store" ||
					got.Body.TokenType != "Bearer" || got.Body.ExpiresIn != 3600 || got.Body.RefreshToken != "" {
					r.t.Errorf("token answer %+v, logged %+v", got, req)
				}
				if resp := r.e.do(r.t, "GET", "/v3/connections", "Authorization", bearerHeader(got.Body.AccessToken)); resp.status != 200 {
					r.t.Errorf("the token fetched does not open /v3/connections: %d %s", resp.status, resp.body)
				}
			},
		},
		{
			name: "v3 getVehicle",
			op:   "get-vehicle",
			app:  true,
			check: func(r *sdkRun, out sdkOutput) {
				// getVehicle returns {body: <the document and meta>, headers}.
				var got struct {
					Body struct {
						Data map[string]any    `json:"data"`
						Meta map[string]string `json:"meta"`
					} `json:"body"`
					Headers map[string]string `json:"headers"`
				}
				r.ok(out, &got)
				// The SDK asks with a trailing slash and without sc-user-id.
				req := r.lastRequest("GET", "/v3/vehicles/"+TeslaID+"/", 1)
				if req.UserID != "" {
					r.t.Errorf("SDK sent sc-user-id %q", req.UserID)
				}
				want := r.direct("/v3/vehicles/" + TeslaID)["data"]
				if !reflect.DeepEqual(got.Body.Data, want) {
					r.t.Errorf("SDK body.data %v\nsimulator's   %v", got.Body.Data, want)
				}
				attrs, _ := got.Body.Data["attributes"].(map[string]any)
				if got.Body.Data["id"] != TeslaID || attrs["make"] != "TESLA" || attrs["model"] != "Model 3" || attrs["year"] != 2021.0 {
					r.t.Errorf("vehicle document %v", got.Body.Data)
				}
				r.checkV3Meta(got.Headers, req)
				if !reflect.DeepEqual(got.Body.Meta, got.Headers) {
					r.t.Errorf("body.meta %v is not the headers %v", got.Body.Meta, got.Headers)
				}
			},
		},
		{
			name: "v3 signals through vehicle.request with sc-user-id",
			op:   "v3-request",
			app:  true,
			vars: v3req("GET", "signals", UserID),
			setup: func(r *sdkRun) {
				r.e.sim.SetPluggedIn(TeslaID, true)
				r.e.sim.SetSignalError(TeslaID, "charge-energyadded", "UPSTREAM", "NO_RESPONSE")
			},
			check: func(r *sdkRun, out sdkOutput) {
				var got sdkV3Response
				r.ok(out, &got)
				req := r.lastRequest("GET", "/signals", 1)
				if req.Path != v3SignalsPath || req.UserID != UserID {
					r.t.Errorf("logged %s with sc-user-id %q", req.Path, req.UserID)
				}
				// The fake clock makes both answers identical.
				if want := r.direct(v3SignalsPath); !reflect.DeepEqual(decode[map[string]any](r.t, got.Body), want) {
					r.t.Errorf("SDK body %s\nsimulator's %v", got.Body, want)
				}
				r.checkV3Meta(got.Meta, req)
			},
		},
		{
			name: "v3 one signal through vehicle.request loses the signal's meta",
			op:   "v3-request",
			app:  true,
			vars: v3req("GET", "signals/"+doorSignalCode, UserID),
			check: func(r *sdkRun, out sdkOutput) {
				var got sdkV3Response
				r.ok(out, &got)
				req := r.lastRequest("GET", "/signals/"+doorSignalCode, 1)
				// A signal is answered bare, as Smartcar's reference shows
				// it; its top-level meta (retrievedAt, oemUpdatedAt) is
				// where the SDK puts the headers, then omits from body.
				want := r.direct(v3SignalsPath + "/" + doorSignalCode)
				if _, ok := want["meta"].(map[string]any)["retrievedAt"]; !ok {
					r.t.Fatalf("simulator's signal has no meta.retrievedAt: %v", want)
				}
				delete(want, "meta")
				if !reflect.DeepEqual(decode[map[string]any](r.t, got.Body), want) {
					r.t.Errorf("SDK body %s\nsimulator's (without meta) %v", got.Body, want)
				}
				r.checkV3Meta(got.Meta, req)
			},
		},
		{
			name: "v3 door open through vehicle.request",
			op:   "v3-request",
			app:  true,
			vars: v3req("POST", "commands/charge-port/open", UserID),
			check: func(r *sdkRun, out sdkOutput) {
				var got sdkV3Response
				r.ok(out, &got)
				req := r.lastRequest("POST", v3OpenSuffix, 1)
				if req.Path != "/v3/vehicles/"+TeslaID+v3OpenSuffix || req.Body != "" || req.UserID != UserID ||
					req.Authorization != bearerHeader(r.vars["SMARTCAR_APP_TOKEN"]) {
					r.t.Errorf("logged %+v", req)
				}
				doc := decode[commandWire](r.t, got.Body)
				if a := doc.Data.Attributes; doc.Data.Type != "command-execution" || a.Command != "charge-port/open" ||
					a.Status.Value != "SUCCESS" || a.CompletedAt == nil {
					r.t.Errorf("command execution %s", got.Body)
				}
				if !r.e.sim.ChargePortOpen(TeslaID) {
					r.t.Error("door closed after the SDK's open")
				}
				r.checkV3Meta(got.Meta, req)
			},
		},
		{
			name: "v3 async door: the SDK reads the whole stream as one string",
			op:   "v3-request",
			opts: func(o *Options) { o.Async = true },
			app:  true,
			vars: v3req("POST", "commands/charge-port/open", UserID),
			check: func(r *sdkRun, out sdkOutput) {
				var got struct {
					Body map[string]string `json:"body"`
					Meta map[string]string `json:"meta"`
				}
				r.ok(out, &got)
				// JSON.parse fails on two documents, so the SDK spreads the
				// text into an object of characters keyed "0", "1", …
				text := make([]byte, len(got.Body))
				for k, c := range got.Body {
					i, err := strconv.Atoi(k)
					if err != nil || i >= len(text) || len(c) != 1 {
						r.t.Fatalf("body is not a spread string: %v", got.Body)
					}
					text[i] = c[0]
				}
				lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
				if len(lines) != 2 || decode[commandWire](r.t, []byte(lines[0])).Data.Attributes.Status.Value != "PENDING" ||
					decode[commandWire](r.t, []byte(lines[1])).Data.Attributes.Status.Value != "SUCCESS" {
					r.t.Errorf("stream as the SDK got it: %q", text)
				}
				if got.Meta["content-type"] != "application/x-ndjson" || !r.e.sim.ChargePortOpen(TeslaID) {
					r.t.Errorf("meta %v, door open %v", got.Meta, r.e.sim.ChargePortOpen(TeslaID))
				}
				r.checkV3Meta(got.Meta, r.lastRequest("POST", v3OpenSuffix, 1))
			},
		},
		{
			name: "v3 connections through vehicle.request and a relative path",
			op:   "v3-request",
			app:  true,
			vars: v3req("GET", "../../connections?page[size]=1", UserID),
			check: func(r *sdkRun, out sdkOutput) {
				var got sdkV3Response
				r.ok(out, &got)
				// fetch resolved the dot segments before sending.
				req := r.lastRequest("GET", "/connections", 1)
				if req.Path != "/v3/connections" || req.Query != "page[size]=1" {
					r.t.Errorf("logged %s?%s", req.Path, req.Query)
				}
				page := decode[connectionsWire](r.t, got.Body)
				if len(page.Data) != 1 || page.Data[0].Relationships.Vehicle.Data.ID != TeslaID ||
					page.Links.Next == nil || !strings.HasPrefix(*page.Links.Next, r.e.srv.URL+"/v3/connections?") {
					r.t.Errorf("connections page %s", got.Body)
				}
				// As for a signal, the document's top-level meta (totalCount,
				// pageNumber, pageSize) is lost: the SDK puts the headers
				// there, then omits meta from body.
				want := r.direct("/v3/connections?page[size]=1")
				if _, ok := want["meta"].(map[string]any)["totalCount"]; !ok {
					r.t.Fatalf("simulator's page has no meta.totalCount: %v", want)
				}
				delete(want, "meta")
				if !reflect.DeepEqual(decode[map[string]any](r.t, got.Body), want) {
					r.t.Errorf("SDK body %s\nsimulator's (without meta) %v", got.Body, want)
				}
				if req.UserID != UserID {
					r.t.Errorf("logged sc-user-id %q", req.UserID)
				}
				r.checkV3Meta(got.Meta, req)
			},
		},

		// v3 errors: the SDK cannot read the v3 envelope.
		{
			name: "v3 getSignals cannot send sc-user-id", op: "get-signals", app: true,
			err: &wantErr{method: "GET", suffix: "/v3/vehicles/" + TeslaID + "/signals", status: 400, sdkError: true},
		},
		{
			name: "v3 getSignal cannot send sc-user-id", op: "get-signal", app: true,
			vars: []string{"SMARTCAR_SIGNAL_CODE=" + doorSignalCode},
			err:  &wantErr{method: "GET", suffix: "/signals/" + doorSignalCode, status: 400, sdkError: true},
		},
		{
			name: "v3 wrong sc-user-id", op: "v3-request", app: true,
			vars: v3req("GET", "signals", "someone-else"),
			err:  &wantErr{method: "GET", suffix: "/signals", status: 400, sdkError: true},
		},
		{
			name: "v3 unknown token", op: "get-vehicle",
			vars: []string{"SMARTCAR_APP_TOKEN=not-a-token"},
			err:  &wantErr{method: "GET", suffix: "/v3/vehicles/" + TeslaID + "/", status: 401, sdkError: true},
		},
		{
			name: "v3 refuses a v2 access token", op: "get-vehicle",
			setup: func(r *sdkRun) { r.vars["SMARTCAR_APP_TOKEN"] = r.e.accessToken(r.t) },
			err:   &wantErr{method: "GET", suffix: "/v3/vehicles/" + TeslaID + "/", status: 401, sdkError: true},
		},
		{
			name: "v3 unknown vehicle", op: "get-vehicle", app: true,
			vars: []string{"SMARTCAR_VEHICLE_ID=no-such-vehicle"},
			err:  &wantErr{method: "GET", suffix: "/v3/vehicles/no-such-vehicle/", status: 404, sdkError: true},
		},
		{
			name: "v3 door for a non-Tesla", op: "v3-request", app: true,
			vars: append(v3req("POST", "commands/charge-port/open", UserID), "SMARTCAR_VEHICLE_ID="+OtherID),
			err:  &wantErr{method: "POST", suffix: v3OpenSuffix, status: 501, sdkError: true},
		},
		{
			name: "v3 door without control_charge", op: "v3-request", app: true,
			vars:  v3req("POST", "commands/charge-port/open", UserID),
			setup: func(r *sdkRun) { r.e.sim.SetPermissions(TeslaID, "read_vehicle_info", "read_charge") },
			err:   &wantErr{method: "POST", suffix: v3OpenSuffix, status: 403, sdkError: true},
		},
		{
			name: "v3 close while plugged in", op: "v3-request", app: true,
			vars:  v3req("POST", "commands/charge-port/close", UserID),
			setup: func(r *sdkRun) { r.e.sim.SetPluggedIn(TeslaID, true) },
			err:   &wantErr{method: "POST", suffix: v3CloseSuffix, status: 409, sdkError: true},
		},
		{
			name: "v3 fault 429 with Retry-After", op: "v3-request", app: true,
			vars:  v3req("GET", "signals", UserID),
			setup: inject(Fault{Method: "GET", Path: "/signals", Status: 429, RetryAfter: 7 * time.Second}),
			err:   &wantErr{method: "GET", suffix: "/signals", status: 429, sdkError: true, retryAfter: "7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var tweaks []func(*Options)
			if tt.opts != nil {
				tweaks = append(tweaks, tt.opts)
			}
			r := &sdkRun{t: t, e: newEnv(t, tweaks...), version: version, vars: map[string]string{
				"SMARTCAR_CLIENT_ID":         testClientID,
				"SMARTCAR_CLIENT_SECRET":     testClientSecret,
				"SMARTCAR_API_CLIENT_ID":     testAPIClientID,
				"SMARTCAR_API_CLIENT_SECRET": testAPIClientSecret,
				"SMARTCAR_VEHICLE_ID":        TeslaID,
			}}
			// The SDK's own overrides of https://api.smartcar.com,
			// https://vehicle.api.smartcar.com and https://auth.smartcar.com.
			r.vars["SMARTCAR_API_ORIGIN"] = r.e.srv.URL
			r.vars["SMARTCAR_API_V3_ORIGIN"] = r.e.srv.URL
			r.vars["SMARTCAR_AUTH_ORIGIN"] = r.e.srv.URL
			if tt.op == "refresh" {
				r.vars["SMARTCAR_REFRESH_TOKEN"] = r.e.sim.IssueRefreshToken()
			}
			// Tokens the Go way: one node start less per case.
			if tt.login {
				r.vars["SMARTCAR_ACCESS_TOKEN"] = r.e.accessToken(t)
			}
			if tt.app {
				r.vars["SMARTCAR_APP_TOKEN"] = r.e.appToken(t)
			}
			if tt.setup != nil {
				tt.setup(r)
			}
			doorBefore := r.e.sim.ChargePortOpen(TeslaID)
			out := r.node(tt.op, tt.vars...)
			if tt.err == nil {
				tt.check(r, out)
				return
			}
			if out.OK {
				t.Fatalf("SDK succeeded with %s, want a %d error", out.Result, tt.err.status)
			}
			w, e := tt.err, out.Error
			// The SDK does not retry: exactly one request, answered with the error.
			req := r.lastRequest(w.method, w.suffix, 1)
			if req.Status != w.status {
				t.Errorf("logged status %d, want %d", req.Status, w.status)
			}
			if !e.IsSmartcarError || e.Name != "SmartcarError" {
				t.Errorf("not a SmartcarError: %+v", *e)
			}
			if e.RequestID == "" || e.RequestID != req.RequestID {
				t.Errorf("SDK requestId %q, simulator sent sc-request-id %q", e.RequestID, req.RequestID)
			}
			if e.RetryAfter != w.retryAfter {
				t.Errorf("SDK retryAfter %q, want %q", e.RetryAfter, w.retryAfter)
			}
			if w.sdkError {
				if e.Type != "SDK_ERROR" || e.Code != "" || e.StatusCode != w.status || e.Description != "Unknown error" ||
					e.Message != "SDK_ERROR:undefined - Unknown error" || e.DocURL != "" || e.Resolution != nil {
					t.Errorf("SDK error %+v, want SDK_ERROR/%d with nothing of the envelope", *e, w.status)
				}
			} else {
				if e.Type != w.typ || e.Code != w.code || e.StatusCode != w.status {
					t.Errorf("SDK error %s:%s (%d), want %s:%s (%d)", e.Type, e.Code, e.StatusCode, w.typ, w.code, w.status)
				}
				var res string
				if e.Resolution != nil && e.Resolution.Type != nil {
					res = *e.Resolution.Type
				}
				if res != w.resolution {
					t.Errorf("SDK resolution.type %q, want %q", res, w.resolution)
				}
				wantMsg := fmt.Sprintf("%s:%s - %s", w.typ, orNull(w.code), e.Description)
				if e.Description == "" || e.DocURL == "" || e.Message != wantMsg {
					t.Errorf("SDK description %q docURL %q message %q (want %q)", e.Description, e.DocURL, e.Message, wantMsg)
				}
			}
			if r.e.sim.ChargePortOpen(TeslaID) != doorBefore {
				t.Error("a failed command moved the door")
			}
		})
	}
}

// inject returns a setup that injects f once.
func inject(f Fault) func(*sdkRun) {
	return func(r *sdkRun) { r.e.sim.InjectFault(f) }
}

// orNull is how the SDK's message shows a code: null when the body's was.
func orNull(code string) string {
	if code == "" {
		return "null"
	}
	return code
}

// checkCharge compares the body the SDK returned for tesla/charge with the
// simulator's body for the car's current state, field by field.
func checkCharge(r *sdkRun, out sdkOutput) {
	r.t.Helper()
	var res struct {
		Body map[string]any `json:"body"`
		Meta sdkMeta        `json:"meta"`
	}
	r.ok(out, &res)
	raw, err := json.Marshal(teslaCharge(r.teslaVehicle()))
	if err != nil {
		r.t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		r.t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Body, want) {
		r.t.Errorf("SDK charge body %v\nsimulator's        %v", res.Body, want)
	}
	if req := r.lastRequest("GET", chargeSuffix, 1); res.Meta.RequestID != req.RequestID {
		r.t.Errorf("meta.requestId %q, logged %q", res.Meta.RequestID, req.RequestID)
	}
}

// TestSimulatorServesSDKPaths pins, without node, the paths the conformance
// check found the SDK using: the v2 vehicle list and vehicle attributes and
// the v3 vehicle, each with a trailing slash, answer exactly as without it.
func TestSimulatorServesSDKPaths(t *testing.T) {
	e := newEnv(t)
	v2 := "Bearer " + e.accessToken(t)
	v3 := "Bearer " + e.appToken(t)
	for _, tt := range []struct{ path, auth string }{
		{"/v2.0/vehicles", v2},
		{"/v2.0/vehicles/" + TeslaID, v2},
		{"/v3/vehicles/" + TeslaID, v3},
	} {
		plain := e.do(t, "GET", tt.path, "Authorization", tt.auth)
		slash := e.do(t, "GET", tt.path+"/", "Authorization", tt.auth)
		if plain.status != http.StatusOK || slash.status != plain.status || string(slash.body) != string(plain.body) {
			t.Errorf("GET %s: %d %s\nGET %s/: %d %s", tt.path, plain.status, plain.body, tt.path, slash.status, slash.body)
		}
	}
}
