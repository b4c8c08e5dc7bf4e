package smartcar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

var (
	simTesla = Vehicle{ID: smartcarsim.TeslaID, UserID: smartcarsim.UserID, Make: "TESLA", Model: "Model 3", Year: 2021}
	simFord  = Vehicle{ID: smartcarsim.OtherID, UserID: smartcarsim.UserID, Make: "FORD", Model: "Mustang Mach-E", Year: 2022}
)

func TestAppTokens(t *testing.T) {
	e := newEnv(t)
	tk := e.appTokens(nil)
	tokenCalls := func() int { return len(e.requestsTo("POST", "/oauth2/token")) }

	first, err := tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tokenCalls() != 1 {
		t.Fatalf("token calls = %d, want 1", tokenCalls())
	}
	form, _ := url.ParseQuery(e.requestsTo("POST", "/oauth2/token")[0].Body)
	if form.Get("grant_type") != "client_credentials" || form.Get("client_id") != testAPIClientID || form.Get("client_secret") != testAPIClientSecret {
		t.Errorf("token request form = %v, want the client_credentials grant with the credentials in it", form)
	}
	if again, _ := tk.Token(); again.AccessToken != first.AccessToken || tokenCalls() != 1 {
		t.Errorf("a fresh token was not reused (%d calls)", tokenCalls())
	}
	// Smartcar's tokens live an hour: renewed 5 minutes before the end, not after.
	e.clock.Advance(54 * time.Minute)
	if again, _ := tk.Token(); again.AccessToken != first.AccessToken || tokenCalls() != 1 {
		t.Errorf("renewed with 6 minutes left (%d calls)", tokenCalls())
	}
	e.clock.Advance(2 * time.Minute)
	renewed, err := tk.Token()
	if err != nil || renewed.AccessToken == first.AccessToken || tokenCalls() != 2 {
		t.Fatalf("not renewed with 4 minutes left: %v, %d calls", err, tokenCalls())
	}
	tk.Invalidate()
	if after, _ := tk.Token(); after.AccessToken == renewed.AccessToken || tokenCalls() != 3 {
		t.Errorf("Invalidate did not lead to a new token (%d calls)", tokenCalls())
	}
	if err := tk.Healthy(); err != nil {
		t.Errorf("Healthy = %v", err)
	}
}

func TestAppTokensRefusedCredentials(t *testing.T) {
	e := newEnv(t)
	tk := NewAppTokens(t.Context(), AppTokensConfig{ClientID: testAPIClientID, ClientSecret: "wrong-secret-Pq7",
		TokenURL: e.srv.URL + "/oauth2/token", Now: e.clock.Now})
	_, err := tk.Token()
	if !IsLoginRefused(err) || IsInvalidGrant(err) {
		t.Fatalf("err = %v, want a refused login that is not a dead refresh token", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-Pq7") {
		t.Errorf("the error shows the secret: %v", err)
	}
	if !strings.Contains(LoginAdvice(err), "SMARTCAR_CLIENT_SECRET") {
		t.Errorf("advice %q does not name the variables to check", LoginAdvice(err))
	}
	// Asked again at once (every vehicle's worker does): answered from memory.
	if _, err2 := tk.Token(); !IsLoginRefused(err2) || len(e.requestsTo("POST", "/oauth2/token")) != 1 {
		t.Errorf("a refused credential was tried again at once: %v, %d calls", err2, len(e.requestsTo("POST", "/oauth2/token")))
	}
	if tk.Healthy() == nil {
		t.Error("Healthy is nil with refused credentials")
	}
	e.clock.Advance(refusedRetry)
	tk.Token()
	if n := len(e.requestsTo("POST", "/oauth2/token")); n != 2 {
		t.Errorf("after %s the credentials were not tried again (%d calls)", refusedRetry, n)
	}
}

func TestV3VehiclesFollowsPagingAndUserFilter(t *testing.T) {
	e := newEnv(t)
	want := []Vehicle{simTesla, simFord}
	for i := range 5 {
		user := "user-b"
		if i%2 == 0 {
			user = "user-a"
		}
		v := smartcarsim.Vehicle{ID: fmt.Sprintf("extra-%d", i), UserID: user, Make: "TESLA", Model: "Model Y", Year: 2024}
		e.sim.AddVehicle(v, []string{PermReadCharge})
		want = append(want, Vehicle{ID: v.ID, UserID: user, Make: "TESLA", Model: "Model Y", Year: 2024})
	}
	c, _ := e.v3Client(WithPageSize(3))
	got, err := c.Vehicles(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []Vehicle
	for _, v := range got {
		ids = append(ids, v.Vehicle)
		if v.TeslaEndpoints {
			t.Errorf("%s marked for v2.0's Tesla endpoints", v.ID)
		}
	}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("vehicles:\n got %+v\nwant %+v", ids, want)
	}
	if got[0].Permissions == nil || !slices.Contains(got[0].Permissions, PermControlCharge) {
		t.Errorf("tesla permissions = %v", got[0].Permissions)
	}
	pages := e.requestsTo("GET", "/v3/connections")
	if len(pages) != 3 {
		t.Errorf("%d pages fetched for 7 connections of 3, want 3", len(pages))
	}
	for _, p := range pages {
		if q, _ := url.ParseQuery(p.Query); q.Get("page[size]") != "3" {
			t.Errorf("page query %q lacks page[size]=3", p.Query)
		}
	}

	filtered, _ := e.v3Client(WithUserFilter("user-a"))
	got, err = filtered.Vehicles(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		if v.UserID != "user-a" {
			t.Errorf("user filter let %s of %s through", v.ID, v.UserID)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d vehicles of user-a, want 3", len(got))
	}
	last := e.requestsTo("GET", "/v3/connections")
	if q, _ := url.ParseQuery(last[len(last)-1].Query); q.Get("filter[userId]") != "user-a" {
		t.Errorf("filter not sent: %q", last[len(last)-1].Query)
	}
	// A list filtered by SMARTCAR_VEHICLE_IDS is the same one call, filtered here.
	only, err := filtered.Vehicles(t.Context(), []string{"extra-2"})
	if err != nil || len(only) != 1 || only[0].ID != "extra-2" {
		t.Errorf("only extra-2: %+v, %v", only, err)
	}
}

func TestV3PagingLinkMustStayOnTheAPI(t *testing.T) {
	c := NewV3Client("https://vehicle.api.smartcar.com/v3", &staticTokens{})
	from := request{path: "/connections", rawQuery: "page[number]=1"}
	for _, tt := range []struct {
		link, path, query string
		ok                bool
	}{
		{"https://vehicle.api.smartcar.com/v3/connections?page[number]=2", "/connections", "page[number]=2", true},
		{"/v3/connections?page[number]=3", "/connections", "page[number]=3", true},
		{"?page[number]=4", "/connections", "page[number]=4", true},
		{"https://evil.example/v3/connections?page[number]=2", "", "", false},
		{"http://vehicle.api.smartcar.com/v3/connections", "", "", false},
		{"/v2.0/vehicles", "", "", false},
	} {
		got, err := c.below(tt.link, from)
		if (err == nil) != tt.ok || tt.ok && (got.path != tt.path || got.rawQuery != tt.query) {
			t.Errorf("below(%q) = %q ? %q, %v; want %q ? %q ok=%v", tt.link, got.path, got.rawQuery, err, tt.path, tt.query, tt.ok)
		}
	}
}

func TestV3ReadSignals(t *testing.T) {
	e := newEnv(t)
	c, _ := e.v3Client()
	ctx := t.Context()

	st, err := c.Read(ctx, simTesla)
	if err != nil {
		t.Fatal(err)
	}
	want := ChargeState{DoorOpen: ptr(false), PluggedIn: ptr(false), Latch: ptr(LatchDisengaged), Charging: ptr("NOT_CHARGING"),
		LimitPercent: ptr(80.0), EnergyAdded: ptr(0.0)}
	reads := e.requestsTo("GET", "/signals")
	want.RequestID = reads[len(reads)-1].RequestID
	if !reflect.DeepEqual(st, want) {
		t.Errorf("read:\n got %s\nwant %s", dump(st), dump(want))
	}
	if reads[0].UserID != smartcarsim.UserID || !strings.HasPrefix(reads[0].Authorization, "Bearer sim-app-") {
		t.Errorf("read sent sc-user-id %q and %q", reads[0].UserID, reads[0].Authorization[:min(12, len(reads[0].Authorization))])
	}

	// The second documented body forms read the same.
	e.sim.SetPluggedIn(smartcarsim.TeslaID, true)
	e.sim.SetAltBodies(true)
	st, err = c.Read(ctx, simTesla)
	if err != nil {
		t.Fatal(err)
	}
	if !*st.DoorOpen || !*st.PluggedIn || *st.Latch != LatchEngaged || *st.Charging != "CHARGING" || *st.LimitPercent != 80 || *st.EnergyAdded != 4.2 {
		t.Errorf("plugged in, other body forms: %s", dump(st))
	}

	// A signal Smartcar marks as failed is unknown, whatever its stale body says.
	e.sim.SetSignalError(smartcarsim.TeslaID, SignalDoorOpen, "VEHICLE_STATE", "ASLEEP")
	st, err = c.Read(ctx, simTesla)
	if err != nil || st.DoorOpen != nil || st.PluggedIn == nil {
		t.Errorf("failed door signal: %s, %v; want door unknown and the plug known", dump(st), err)
	}
	e.sim.SetSignalError(smartcarsim.TeslaID, SignalDoorOpen, "", "")

	// No data yet, as a 404 or as an empty list: unknown, not an error.
	for _, status := range []int{http.StatusNotFound, http.StatusOK} {
		e.sim.SetNoData(smartcarsim.TeslaID, status)
		st, err = c.Read(ctx, simTesla)
		if err != nil || !st.NoData || st.DoorOpen != nil {
			t.Errorf("no data (%d): %s, %v", status, dump(st), err)
		}
	}
	e.sim.SetNoData(smartcarsim.TeslaID, 0)

	// The wrong user is refused, as Smartcar does.
	_, err = c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID, UserID: "someone-else"})
	assertSmartcarError(t, err, 400, TypeValidation, "INVALID_USER_ID")
}

func TestV3ErrorEnvelopeAndRetries(t *testing.T) {
	e := newEnv(t)
	c, tk := e.v3Client(WithBackoff(0))
	ctx := t.Context()

	e.sim.InjectFault(smartcarsim.Fault{Path: "/signals", Status: 409})
	_, err := c.Read(ctx, simTesla)
	se := assertSmartcarError(t, err, 409, TypeVehicleState, "ASLEEP")
	reads := e.requestsTo("GET", "/signals")
	if se.RequestID != reads[len(reads)-1].RequestID || se.Description == "" || se.SuggestedUserMessage == "" {
		t.Errorf("409 from the envelope: %+v", se)
	}
	if len(reads) != 1 {
		t.Errorf("409 tried %d times", len(reads))
	}

	// 401: a new application token, once, then the call again.
	first, _ := tk.Token()
	e.sim.InjectFault(smartcarsim.Fault{Path: "/signals", Status: 401})
	if _, err := c.Read(ctx, simTesla); err != nil {
		t.Fatalf("after one 401: %v", err)
	}
	if now, _ := tk.Token(); now.AccessToken == first.AccessToken {
		t.Error("a 401 did not renew the application token")
	}
	if n := len(e.requestsTo("POST", "/oauth2/token")); n != 2 {
		t.Errorf("token calls = %d, want 2 (start, after the 401)", n)
	}

	// 503: retried like a read.
	before := len(e.requestsTo("GET", "/signals"))
	e.sim.InjectFault(smartcarsim.Fault{Path: "/signals", Status: 503, Times: 2})
	if _, err := c.Read(ctx, simTesla); err != nil {
		t.Fatalf("after two 503: %v", err)
	}
	if n := len(e.requestsTo("GET", "/signals")) - before; n != 3 {
		t.Errorf("503 twice then ok took %d requests, want 3", n)
	}
}

func TestV3ChargePortCommand(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "200", true: "202 streamed"}[async], func(t *testing.T) {
			e := newEnv(t, func(o *smartcarsim.Options) { o.Async = async; o.Latency = 20 * time.Millisecond })
			c, _ := e.v3Client(WithBackoff(0))
			ctx := t.Context()

			if err := c.ChargePortDoor(ctx, simTesla, Open); err != nil {
				t.Fatal(err)
			}
			if !e.sim.ChargePortOpen(smartcarsim.TeslaID) {
				t.Fatal("door still closed after OPEN")
			}
			posts := e.requestsTo("POST", "/commands/charge-port/open")
			if len(posts) != 1 || posts[0].Path != "/v3/vehicles/"+smartcarsim.TeslaID+"/commands/charge-port/open" ||
				posts[0].UserID != smartcarsim.UserID || posts[0].Body != "" {
				t.Fatalf("command requests: %+v", posts)
			}
			want := 200
			if async {
				want = 202
			}
			if posts[0].Status != want {
				t.Errorf("status %d, want %d", posts[0].Status, want)
			}

			// The car refuses: the outcome in the body is the error.
			e.sim.InjectFault(smartcarsim.Fault{Path: "/commands/charge-port/close", Status: want, Type: TypeVehicleState, Code: "UNREACHABLE"})
			err := c.ChargePortDoor(ctx, simTesla, Close)
			se := assertSmartcarError(t, err, want, TypeVehicleState, "UNREACHABLE")
			if se.RequestID == "" || OutcomeUnknown(err) {
				t.Errorf("failed command: %+v, outcome unknown %v", se, OutcomeUnknown(err))
			}
			if !e.sim.ChargePortOpen(smartcarsim.TeslaID) {
				t.Error("a failed CLOSE closed the door")
			}
		})
	}
}

func TestV3CommandNotOffered(t *testing.T) {
	e := newEnv(t)
	c, _ := e.v3Client(WithBackoff(0))
	err := c.ChargePortDoor(t.Context(), simFord, Open)
	assertSmartcarError(t, err, 501, TypeCompatibility, "MAKE_NOT_COMPATIBLE")
	if !errors.Is(err, ErrNoChargePortCommand) {
		t.Errorf("501: %v is not ErrNoChargePortCommand", err)
	}
	e.sim.InjectFault(smartcarsim.Fault{Path: "/commands/charge-port/open", Status: 404})
	if err := c.ChargePortDoor(t.Context(), simTesla, Open); !errors.Is(err, ErrNoChargePortCommand) {
		t.Errorf("404: %v is not ErrNoChargePortCommand", err)
	}
	e.sim.InjectFault(smartcarsim.Fault{Path: "/commands/charge-port/open", Status: 403})
	if err := c.ChargePortDoor(t.Context(), simTesla, Open); errors.Is(err, ErrNoChargePortCommand) {
		t.Errorf("403 taken for a missing command: %v", err)
	}
}

func TestV3CommandOutcomeUnknownOnTimeout(t *testing.T) {
	e := newEnv(t, func(o *smartcarsim.Options) { o.Async = true; o.Latency = time.Hour })
	c, _ := e.v3Client(WithTimeout(200 * time.Millisecond))
	err := c.ChargePortDoor(t.Context(), simTesla, Open)
	if err == nil || !OutcomeUnknown(err) {
		t.Fatalf("a command cut off by the timeout: %v, outcome unknown %v", err, OutcomeUnknown(err))
	}
	if n := len(e.requestsTo("POST", "/commands/charge-port/open")); n != 1 {
		t.Errorf("a command whose outcome is unknown was sent %d times", n)
	}
}

func TestCommandOutcomeForms(t *testing.T) {
	doc := func(status string) string {
		return `{"data":{"type":"command-execution","attributes":{"status":{"value":"` + status + `"}}}}`
	}
	for _, tt := range []struct {
		name    string
		status  int
		body    string
		ok      bool
		unknown bool
	}{
		{"200 success", 200, doc("SUCCESS"), true, false},
		{"200 empty", 200, "", true, false},
		{"202 stream", 202, doc("PENDING") + "\n" + doc("IN_PROGRESS") + "\n" + doc("SUCCESS") + "\n", true, false},
		{"202 concatenated", 202, doc("PENDING") + doc("SUCCESS"), true, false},
		{"202 server-sent events", 202, "event: status\ndata: " + doc("PENDING") + "\n\ndata: " + doc("SUCCESS") + "\n\n", true, false},
		{"202 ended pending", 202, doc("PENDING") + "\n", false, true},
		{"202 cut mid-document", 202, doc("PENDING") + "\n" + `{"data":{"attri`, false, true},
		{"202 empty", 202, "", false, true},
		{"failed", 202, doc("PENDING") + `{"data":{"attributes":{"status":{"value":"FAILED","error":{"type":"VEHICLE_STATE","code":"ASLEEP","detail":"asleep"}}}}}`, false, false},
		{"200 without status", 200, `{"data":{}}`, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := commandOutcome(response{status: tt.status, requestID: "rid", body: []byte(tt.body)})
			if (err == nil) != tt.ok || OutcomeUnknown(err) != tt.unknown {
				t.Errorf("err = %v (unknown %v), want ok=%v unknown=%v", err, OutcomeUnknown(err), tt.ok, tt.unknown)
			}
		})
	}
}

func TestV2Retirement(t *testing.T) {
	t.Run("410", func(t *testing.T) {
		e := newEnv(t)
		c, _ := e.client(t)
		e.sim.RetireV2(true)
		_, err := c.Read(t.Context(), Vehicle{ID: smartcarsim.TeslaID})
		if !IsV2Retired(err) {
			t.Fatalf("410: %v is not IsV2Retired", err)
		}
		for _, step := range []string{"SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "SMARTCAR_APPLICATION_ID", "auth"} {
			if !strings.Contains(err.Error(), step) {
				t.Errorf("the error does not say %s: %v", step, err)
			}
		}
	})
	t.Run("404 on a path that worked", func(t *testing.T) {
		e := newEnv(t)
		c, _ := e.client(t)
		e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 404})
		if _, err := c.Read(t.Context(), Vehicle{ID: smartcarsim.TeslaID}); err == nil || IsV2Retired(err) {
			t.Fatalf("a 404 on a path never seen working: %v; want a plain error", err)
		}
		if _, err := c.Read(t.Context(), Vehicle{ID: smartcarsim.TeslaID}); err != nil {
			t.Fatal(err)
		}
		e.sim.InjectFault(smartcarsim.Fault{Path: "/tesla/charge", Status: 404})
		if _, err := c.Read(t.Context(), Vehicle{ID: smartcarsim.TeslaID}); !IsV2Retired(err) {
			t.Fatalf("a 404 on a path that worked: %v; want IsV2Retired", err)
		}
	})
}

func TestOutcomeUnknown(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"Smartcar answered", &Error{StatusCode: 409, Type: TypeVehicleState}, false},
		{"connection refused: nothing sent", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{"daemon stopping", fmt.Errorf("open: %w", context.Canceled), false},
		{"no name: nothing sent", fmt.Errorf("open: %w", &net.DNSError{Err: "no such host", Name: "vehicle.api.smartcar.com", IsNotFound: true}), false},
		{"no login: nothing sent", fmt.Errorf("open: %w", ErrNoToken), false},
		{"timeout", fmt.Errorf("open: %w", context.DeadlineExceeded), true},
		{"reset while waiting", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true},
		{"answer cut short", fmt.Errorf("open: %w", errUnfinishedCommand), true},
	} {
		if got := OutcomeUnknown(tt.err); got != tt.want {
			t.Errorf("%s: OutcomeUnknown = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestEnergyAddedUnits(t *testing.T) {
	for _, tt := range []struct {
		body string
		kWh  float64
	}{
		{`{"value":4.2,"unit":"kWh"}`, 4.2},
		{`{"value":4.2,"unit":"kilowatt_hours"}`, 4.2},
		{`{"value":4.2}`, 4.2},
		{`{"value":4200,"unit":"Wh"}`, 4.2},
		{`{"value":4200,"unit":"watt_hours"}`, 4.2},
		{`{"value":4200,"unit":"Watt-hours"}`, 4.2},
	} {
		var b signalBody
		if err := json.Unmarshal([]byte(tt.body), &b); err != nil {
			t.Fatal(err)
		}
		if got := b.energyKWh(); got == nil || math.Abs(*got-tt.kWh) > 1e-9 {
			t.Errorf("%s: %v kWh, want %v", tt.body, got, tt.kWh)
		}
	}
}
