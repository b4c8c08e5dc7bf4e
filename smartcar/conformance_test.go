package smartcar

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The conformance check drives the Simulator with Smartcar's official Node
// SDK (npm package smartcar, pinned in testdata/node-sdk/package.json): if the
// SDK, which is what Smartcar ships to talk to its real API, reads the
// simulator's answers as it reads Smartcar's, the simulator speaks Smartcar.
// testdata/node-sdk/check.js performs one SDK operation per run and prints
// one JSON line; this file sets the simulator up, runs it and checks both
// sides.

const nodeSDKDir = "testdata/node-sdk"

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
	Type                 string `json:"type"` // v2.0 body type, or the OAuth body's `error`
	Code                 string `json:"code"` // absent when the body's code is null
	StatusCode           int    `json:"statusCode"`
	RequestID            string `json:"requestId"`  // body requestId, else the SC-Request-Id header
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

// sdkMeta is the meta object the SDK builds from the SC-* response headers.
type sdkMeta struct {
	RequestID string `json:"requestId"`
}

// sdkResponse is what vehicle.request returns.
type sdkResponse struct {
	Body json.RawMessage `json:"body"`
	Meta sdkMeta         `json:"meta"`
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
		missing = append(missing, "smartcar/"+nodeSDKDir+"/node_modules/smartcar is not installed")
	}
	if len(missing) > 0 {
		msg := "Smartcar Node SDK conformance check not run: " + strings.Join(missing, "; ") +
			". Install node (≥ 18.20) and run `npm ci --prefix smartcar/testdata/node-sdk` from the repository root."
		if os.Getenv("REQUIRE_NODE_SDK") == "1" {
			t.Fatal(msg + " (REQUIRE_NODE_SDK=1: not skipping)")
		}
		t.Skip(msg)
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
		t.Fatalf("installed smartcar SDK is %s but package.json pins %q: run `npm ci --prefix smartcar/testdata/node-sdk`", got.Version, want)
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
	t    *testing.T
	e    *env
	vars map[string]string
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

// login gets an access token for every later run. It takes the Go client's
// way (the SDK's refresh has a case of its own): one node start less per case.
func (r *sdkRun) login() {
	r.t.Helper()
	r.vars["SMARTCAR_ACCESS_TOKEN"] = r.e.accessToken(r.t)
}

// lastRequest is the last logged request with that method and path suffix;
// it fails the test if count such requests were not logged (count < 0: any).
func (r *sdkRun) lastRequest(method, suffix string, count int) SimRequest {
	r.t.Helper()
	got := r.e.requestsTo(method, suffix)
	if len(got) == 0 || (count >= 0 && len(got) != count) {
		r.t.Fatalf("%d logged %s …%s requests, want %d; log: %+v", len(got), method, suffix, count, r.e.sim.Requests())
	}
	return got[len(got)-1]
}

// teslaVehicle snapshots the simulated Tesla.
func (r *sdkRun) teslaVehicle() simVehicle {
	r.e.sim.mu.Lock()
	defer r.e.sim.mu.Unlock()
	return *r.e.sim.vehicles[SimTeslaID]
}

const (
	doorSuffix   = "/tesla/charge/charge_port_door"
	chargeSuffix = "/tesla/charge"
)

func TestNodeSDKConformance(t *testing.T) {
	version := requireNodeSDK(t)

	// wantErr describes the SmartcarError a case must end in. Every case
	// with one also checks that the SDK's requestId is the SC-Request-Id
	// the simulator logged for the request, and that the SDK did not retry.
	type wantErr struct {
		method, suffix string
		status         int
		typ, code      string
		resolution     string // resolution.type; "" = none or null
		retryAfter     string
	}
	tests := []struct {
		name  string
		op    string
		login bool     // get an access token first
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
				if !e.IsSmartcarError || e.Type != CodeInvalidGrant || e.Code != "" || e.StatusCode != 400 ||
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
					Paging   paging   `json:"paging"`
					Meta     sdkMeta  `json:"meta"`
				}
				r.ok(out, &got)
				if !slices.Contains(got.Vehicles, SimTeslaID) || !slices.Contains(got.Vehicles, SimOtherID) || got.Paging.Count != 2 {
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
				var got struct {
					Vehicle
					Meta sdkMeta `json:"meta"`
				}
				r.ok(out, &got)
				if want := r.teslaVehicle().info; got.Vehicle != want || want.Make == "" || want.Year == 0 {
					r.t.Errorf("attributes = %+v, simulator has %+v", got.Vehicle, want)
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
				if !r.e.sim.ChargePortOpen(SimTeslaID) {
					t.Fatal("door closed after the SDK's OPEN")
				}
				req := r.lastRequest("POST", doorSuffix, 1)
				var body struct {
					Action Action `json:"action"`
				}
				if err := json.Unmarshal([]byte(req.Body), &body); err != nil || body.Action != Open {
					t.Errorf("logged body %q, want action OPEN", req.Body)
				}
				if req.Path != "/v2.0/vehicles/"+SimTeslaID+doorSuffix || req.Authorization != "Bearer "+r.vars["SMARTCAR_ACCESS_TOKEN"] {
					t.Errorf("logged %s with Authorization %q", req.Path, req.Authorization)
				}
				if !strings.HasPrefix(req.UserAgent, "Smartcar/"+version+" ") {
					t.Errorf("User-Agent %q: not the SDK", req.UserAgent)
				}
				var status struct {
					Status string `json:"status"`
				}
				if err := json.Unmarshal(res.Body, &status); err != nil || status.Status != "success" || res.Meta.RequestID != req.RequestID {
					t.Errorf("response %s meta %+v, request id %s", res.Body, res.Meta, req.RequestID)
				}

				r.ok(r.node("door-close"), &res)
				if r.e.sim.ChargePortOpen(SimTeslaID) {
					t.Error("door open after the SDK's CLOSE")
				}
				req = r.lastRequest("POST", doorSuffix, 2)
				if err := json.Unmarshal([]byte(req.Body), &body); err != nil || body.Action != Close {
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
			setup: func(r *sdkRun) { r.e.sim.SetPluggedIn(SimTeslaID, true) },
			check: checkCharge,
		},

		// Errors the simulator sends on its own.
		{
			name: "unknown access token", op: "tesla-charge",
			vars: []string{"SMARTCAR_ACCESS_TOKEN=not-a-token"},
			err:  &wantErr{method: "GET", suffix: chargeSuffix, status: 401, typ: TypeAuthentication},
		},
		{
			name: "permission not granted", op: "door-open", login: true,
			setup: func(r *sdkRun) { r.e.sim.SetPermissions(SimTeslaID, PermReadVehicleInfo, PermReadCharge) },
			err:   &wantErr{method: "POST", suffix: doorSuffix, status: 403, typ: TypePermission, resolution: "REAUTHENTICATE"},
		},
		{
			name: "door command for a non-Tesla", op: "door-open", login: true,
			vars: []string{"SMARTCAR_VEHICLE_ID=" + SimOtherID, "SMARTCAR_VEHICLE_MAKE=ford"},
			err:  &wantErr{method: "POST", suffix: "/ford/charge/charge_port_door", status: 501, typ: TypeCompatibility, code: "MAKE_NOT_COMPATIBLE"},
		},

		// Injected faults, with the simulator's defaults (defaultFault).
		{
			name: "fault 401", op: "tesla-charge", login: true,
			setup: inject(Fault{Method: "GET", Path: chargeSuffix, Status: 401}),
			err:   &wantErr{method: "GET", suffix: chargeSuffix, status: 401, typ: TypeAuthentication},
		},
		{
			name: "fault 403", op: "door-open", login: true,
			setup: inject(Fault{Method: "POST", Path: doorSuffix, Status: 403}),
			err:   &wantErr{method: "POST", suffix: doorSuffix, status: 403, typ: TypePermission, resolution: "REAUTHENTICATE"},
		},
		{
			name: "fault 409 asleep", op: "door-open", login: true,
			setup: inject(Fault{Method: "POST", Path: doorSuffix, Status: 409}),
			err:   &wantErr{method: "POST", suffix: doorSuffix, status: 409, typ: TypeVehicleState, code: "ASLEEP"},
		},
		{
			name: "fault 429 with Retry-After", op: "tesla-charge", login: true,
			setup: inject(Fault{Method: "GET", Path: chargeSuffix, Status: 429, RetryAfter: 7 * time.Second}),
			err: &wantErr{method: "GET", suffix: chargeSuffix, status: 429, typ: TypeRateLimit, code: "VEHICLE",
				resolution: "RETRY_LATER", retryAfter: "7"},
		},
		{
			name: "fault 500", op: "door-close", login: true,
			setup: inject(Fault{Method: "POST", Path: doorSuffix, Status: 500}),
			err:   &wantErr{method: "POST", suffix: doorSuffix, status: 500, typ: TypeServer, code: "INTERNAL", resolution: "RETRY_LATER"},
		},
		{
			name: "fault 502", op: "tesla-charge", login: true,
			setup: inject(Fault{Method: "GET", Path: chargeSuffix, Status: 502}),
			err:   &wantErr{method: "GET", suffix: chargeSuffix, status: 502, typ: TypeUpstream, code: "UNKNOWN_ISSUE", resolution: "RETRY_LATER"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &sdkRun{t: t, e: newEnv(t), vars: map[string]string{
				"SMARTCAR_CLIENT_ID":     testClientID,
				"SMARTCAR_CLIENT_SECRET": testClientSecret,
				"SMARTCAR_VEHICLE_ID":    SimTeslaID,
			}}
			// The SDK's own overrides of https://api.smartcar.com and
			// https://auth.smartcar.com.
			r.vars["SMARTCAR_API_ORIGIN"] = r.e.srv.URL
			r.vars["SMARTCAR_AUTH_ORIGIN"] = r.e.srv.URL
			if tt.op == "refresh" {
				r.vars["SMARTCAR_REFRESH_TOKEN"] = r.e.sim.IssueRefreshToken()
			}
			if tt.login {
				r.login()
			}
			if tt.setup != nil {
				tt.setup(r)
			}
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
			if e.Type != w.typ || e.Code != w.code || e.StatusCode != w.status {
				t.Errorf("SDK error %s:%s (%d), want %s:%s (%d)", e.Type, e.Code, e.StatusCode, w.typ, w.code, w.status)
			}
			if e.RequestID == "" || e.RequestID != req.RequestID {
				t.Errorf("SDK requestId %q, simulator sent SC-Request-Id %q", e.RequestID, req.RequestID)
			}
			if e.RetryAfter != w.retryAfter {
				t.Errorf("SDK retryAfter %q, want %q", e.RetryAfter, w.retryAfter)
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
			if r.e.sim.ChargePortOpen(SimTeslaID) {
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
	raw, err := json.Marshal(simCharge(r.teslaVehicle()))
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
// check found the SDK using: the vehicle list and the vehicle attributes with
// a trailing slash answer exactly as without it.
func TestSimulatorServesSDKPaths(t *testing.T) {
	e := newEnv(t)
	at := e.accessToken(t)
	get := func(path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t), "GET", e.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/v2.0/vehicles", "/v2.0/vehicles/" + SimTeslaID} {
		code, body := get(path)
		slashCode, slashBody := get(path + "/")
		if code != 200 || slashCode != code || slashBody != body {
			t.Errorf("GET %s: %d %s\nGET %s/: %d %s", path, code, body, path, slashCode, slashBody)
		}
	}
}
