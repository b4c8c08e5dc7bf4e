package smartcar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

func TestClientReads(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	ctx := ctxT(t)

	tests := []struct {
		name string
		call func() (any, error)
		want any
	}{
		{"vehicle ids", func() (any, error) { return v2(c).ids(ctx, c) },
			[]string{smartcarsim.TeslaID, smartcarsim.OtherID}},
		{"tesla info", func() (any, error) { return v2(c).vehicle(ctx, c, smartcarsim.TeslaID) },
			Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA", Model: "Model 3", Year: 2021}},
		{"other info", func() (any, error) { return v2(c).vehicle(ctx, c, smartcarsim.OtherID) },
			Vehicle{ID: smartcarsim.OtherID, Make: "FORD", Model: "Mustang Mach-E", Year: 2022}},
		{"tesla permissions", func() (any, error) { return v2(c).permissions(ctx, c, smartcarsim.TeslaID) },
			[]string{PermReadVehicleInfo, PermReadCharge, PermControlCharge}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestClientPaging(t *testing.T) {
	e := newEnv(t)
	want := []string{smartcarsim.TeslaID, smartcarsim.OtherID}
	for i := range 23 {
		id := fmt.Sprintf("extra-%02d", i)
		e.sim.AddVehicle(smartcarsim.Vehicle{ID: id, Make: "FORD", Model: "F-150 Lightning", Year: 2023}, []string{PermReadVehicleInfo})
		want = append(want, id)
	}
	c, _ := e.client(t, WithPageSize(10))

	got, err := v2(c).ids(ctxT(t), c)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ids = %v\nwant  %v", got, want)
	}
	var offsets []string
	for _, r := range e.requestsTo("GET", "/v2.0/vehicles") {
		q, _ := url.ParseQuery(r.Query)
		if q.Get("limit") != "10" {
			t.Errorf("limit = %q, want 10", q.Get("limit"))
		}
		offsets = append(offsets, q.Get("offset"))
	}
	if want := []string{"0", "10", "20"}; !reflect.DeepEqual(offsets, want) {
		t.Errorf("offsets = %v, want %v (three pages, no extra call)", offsets, want)
	}

	// Permissions page the same way.
	c2 := NewV2Client(e.apiURL, &staticTokens{access: e.accessToken(t)}, WithPageSize(2))
	perms, err := v2(c2).permissions(ctxT(t), c2, smartcarsim.TeslaID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{PermReadVehicleInfo, PermReadCharge, PermControlCharge}; !reflect.DeepEqual(perms, want) {
		t.Errorf("permissions = %v, want %v", perms, want)
	}
	if n := len(e.requestsTo("GET", "/permissions")); n != 2 {
		t.Errorf("permission pages fetched = %d, want 2", n)
	}
}

// accessToken gets a valid access token from the simulator through a chain
// of its own (a separate store, so it never spends the env's refresh token).
func (e *env) accessToken(t *testing.T) string {
	t.Helper()
	tk, err := NewTokens(context.Background(), e.conf, NewTokenStore(t.TempDir()), e.sim.IssueRefreshToken(), WithNow(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tk.Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func TestPagesStopsOnShortPageWithoutCount(t *testing.T) {
	data := [][]string{{"a", "b"}, {"c"}}
	calls := 0
	got, err := pages(2, func(limit, offset int) ([]string, paging, error) {
		calls++
		return data[offset/2], paging{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []string{"a", "b", "c"}) || calls != 2 {
		t.Errorf("got %v after %d calls", got, calls)
	}
}

func TestTeslaCharge(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	ctx := ctxT(t)

	ch, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID})
	if err != nil {
		t.Fatal(err)
	}
	want := ChargeState{
		DoorOpen: ptr(false), Latch: ptr("DISENGAGED"), PluggedIn: ptr(false),
		Charging: ptr("NOT_CHARGING"), LimitPercent: ptr(80.0), EnergyAdded: ptr(0.0),
	}
	logged := e.requestsTo("GET", "/tesla/charge")
	want.RequestID = logged[len(logged)-1].RequestID
	if !reflect.DeepEqual(ch, want) {
		t.Errorf("charge = %s\nwant     %s", dump(ch), dump(want))
	}

	e.sim.SetPluggedIn(smartcarsim.TeslaID, true)
	ch, err = c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID})
	if err != nil {
		t.Fatal(err)
	}
	if !*ch.DoorOpen || !*ch.PluggedIn || *ch.Charging != "CHARGING" || *ch.Latch != "ENGAGED" || *ch.EnergyAdded != 4.2 {
		t.Errorf("plugged-in charge = %s", dump(ch))
	}

	_, err = c.Read(ctx, Vehicle{ID: smartcarsim.OtherID})
	assertSmartcarError(t, err, 501, TypeCompatibility, "MAKE_NOT_COMPATIBLE")
}

func dump(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestChargePortDoor(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	ctx := ctxT(t)
	tesla := Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA", Model: "Model 3", Year: 2021}

	if err := c.ChargePortDoor(ctx, tesla, Open); err != nil {
		t.Fatal(err)
	}
	if !e.sim.ChargePortOpen(smartcarsim.TeslaID) {
		t.Fatal("door still closed after OPEN")
	}
	posts := e.requestsTo("POST", "/charge/charge_port_door")
	if got := posts[0].Path; got != "/v2.0/vehicles/"+smartcarsim.TeslaID+"/tesla/charge/charge_port_door" {
		t.Errorf("path = %s (make must be lowercase)", got)
	}
	if got := posts[0].Body; got != `{"action":"OPEN"}` {
		t.Errorf("body = %s", got)
	}
	if ch, err := c.Read(ctx, Vehicle{ID: smartcarsim.TeslaID}); err != nil || !*ch.DoorOpen {
		t.Errorf("tesla/charge after OPEN: %v, %v", ch.DoorOpen, err)
	}

	if err := c.ChargePortDoor(ctx, tesla, Close); err != nil {
		t.Fatal(err)
	}
	if e.sim.ChargePortOpen(smartcarsim.TeslaID) {
		t.Fatal("door still open after CLOSE")
	}
}

func TestChargePortDoorErrors(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	ctx := ctxT(t)
	tesla := Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA"}

	t.Run("non-tesla make", func(t *testing.T) {
		err := c.ChargePortDoor(ctx, Vehicle{ID: smartcarsim.OtherID, Make: "FORD"}, Open)
		assertSmartcarError(t, err, 501, TypeCompatibility, "MAKE_NOT_COMPATIBLE")
		if !errors.Is(err, ErrNoChargePortCommand) {
			t.Errorf("501 is not ErrNoChargePortCommand: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "open charge port of "+smartcarsim.OtherID+": ") {
			t.Errorf("error lacks operation context: %v", err)
		}
	})
	t.Run("close while plugged in", func(t *testing.T) {
		e.sim.SetPluggedIn(smartcarsim.TeslaID, true)
		defer e.sim.SetPluggedIn(smartcarsim.TeslaID, false)
		err := c.ChargePortDoor(ctx, tesla, Close)
		assertSmartcarError(t, err, 409, TypeVehicleState, "CHARGING_PLUG_CONNECTED")
		if !e.sim.ChargePortOpen(smartcarsim.TeslaID) {
			t.Error("door closed despite the error")
		}
	})
	t.Run("permission not granted", func(t *testing.T) {
		e.sim.SetPermissions(smartcarsim.TeslaID, PermReadVehicleInfo, PermReadCharge)
		defer e.sim.SetPermissions(smartcarsim.TeslaID, PermReadVehicleInfo, PermReadCharge, PermControlCharge)
		err := c.ChargePortDoor(ctx, tesla, Open)
		se := assertSmartcarError(t, err, 403, TypePermission, "")
		if se.Resolution != "REAUTHENTICATE" {
			t.Errorf("resolution = %q", se.Resolution)
		}
	})
	t.Run("invalid action costs no call", func(t *testing.T) {
		before := len(e.sim.Requests())
		if err := c.ChargePortDoor(ctx, tesla, Action("open")); err == nil {
			t.Fatal("lowercase action accepted")
		}
		if err := c.ChargePortDoor(ctx, Vehicle{ID: smartcarsim.TeslaID}, Open); err == nil {
			t.Fatal("vehicle without make accepted")
		}
		if after := len(e.sim.Requests()); after != before {
			t.Errorf("%d requests sent for invalid input", after-before)
		}
	})
}

// TestErrorDecoding drives every documented failure through the simulator and
// checks the *Error the client hands back.
func TestErrorDecoding(t *testing.T) {
	tests := []struct {
		name  string
		fault smartcarsim.Fault
		want  Error // RequestID checked separately
	}{
		{"permission", smartcarsim.Fault{Status: 403},
			Error{StatusCode: 403, Type: TypePermission, Resolution: "REAUTHENTICATE"}},
		{"asleep", smartcarsim.Fault{Status: 409},
			Error{StatusCode: 409, Type: TypeVehicleState, Code: "ASLEEP"}},
		{"unreachable", smartcarsim.Fault{Status: 409, Type: TypeVehicleState, Code: "UNREACHABLE"},
			Error{StatusCode: 409, Type: TypeVehicleState, Code: "UNREACHABLE"}},
		{"rate limit", smartcarsim.Fault{Status: 429, RetryAfter: 30 * time.Second},
			Error{StatusCode: 429, Type: TypeRateLimit, Code: "VEHICLE", Resolution: "RETRY_LATER", RetryAfter: 30 * time.Second}},
		// 500 and 502 are retried: Times -1 makes every try fail.
		{"server", smartcarsim.Fault{Status: 500, Times: -1},
			Error{StatusCode: 500, Type: TypeServer, Code: "INTERNAL", Resolution: "RETRY_LATER"}},
		{"upstream", smartcarsim.Fault{Status: 502, Times: -1},
			Error{StatusCode: 502, Type: TypeUpstream, Code: "UNKNOWN_ISSUE", Resolution: "RETRY_LATER"}},
		{"not json", smartcarsim.Fault{Status: 503, Times: -1, RawBody: "<html><body>upstream\nconnect error</body></html>"},
			Error{StatusCode: 503, Description: "Service Unavailable: <html><body>upstream connect error</body></html>"}},
		{"401 twice", smartcarsim.Fault{Status: 401, Times: 2},
			Error{StatusCode: 401, Type: TypeAuthentication}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			c, _ := e.client(t, WithBackoff(0))
			tt.fault.Path = "/tesla/charge"
			e.sim.InjectFault(tt.fault)

			_, err := c.Read(ctxT(t), Vehicle{ID: smartcarsim.TeslaID})
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			logged := e.requestsTo("GET", "/tesla/charge")
			last := logged[len(logged)-1]
			if got.RequestID != last.RequestID || got.RequestID == "" {
				t.Errorf("RequestID = %q, want %q", got.RequestID, last.RequestID)
			}
			if got.Type != "" && got.Description == "" {
				t.Error("empty description")
			}
			if got.Type != "" && got.DocURL == "" {
				t.Error("empty docURL")
			}
			cmp := *got
			cmp.RequestID, cmp.DocURL, cmp.SuggestedUserMessage = "", "", ""
			if tt.want.Description == "" {
				cmp.Description = ""
			}
			if cmp != tt.want {
				t.Errorf("error = %+v\nwant    %+v", cmp, tt.want)
			}
			if !strings.Contains(err.Error(), got.RequestID) {
				t.Errorf("message %q lacks the request id", err)
			}
		})
	}
}

func TestUnauthorizedRefreshesOnceAndRetriesOnce(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	ctx := ctxT(t)
	if _, err := v2(c).ids(ctx, c); err != nil { // warm: one refresh
		t.Fatal(err)
	}
	before := e.tokenRequests()

	e.sim.InjectFault(smartcarsim.Fault{Path: "/v2.0/vehicles", Status: 401})
	ids, err := v2(c).ids(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Errorf("ids = %v", ids)
	}
	if n := e.tokenRequests() - before; n != 1 {
		t.Errorf("refreshes after a 401 = %d, want 1", n)
	}
	calls := e.requestsTo("GET", "/v2.0/vehicles")
	if len(calls) != 3 {
		t.Fatalf("vehicle calls = %d, want 3 (warm, 401, retry)", len(calls))
	}
	if calls[1].Status != 401 || calls[2].Status != 200 {
		t.Errorf("statuses = %d, %d", calls[1].Status, calls[2].Status)
	}
	if calls[1].Authorization == calls[2].Authorization {
		t.Error("retry used the refused token")
	}
}

func TestExpiredAccessTokenIs401AndRetriedOnce(t *testing.T) {
	e := newEnv(t, func(o *smartcarsim.Options) { o.AccessTTL = time.Hour })
	st := &staticTokens{access: e.accessToken(t)}
	c := NewV2Client(e.apiURL, st)
	if _, err := v2(c).vehicle(ctxT(t), c, smartcarsim.TeslaID); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	e.clock.Advance(time.Hour)

	_, err := v2(c).vehicle(ctxT(t), c, smartcarsim.TeslaID)
	assertSmartcarError(t, err, 401, TypeAuthentication, "")
	if n := st.invalidations(); n != 1 {
		t.Errorf("Invalidate calls = %d, want 1", n)
	}
	if n := len(e.requestsTo("GET", "/vehicles/"+smartcarsim.TeslaID)); n != 3 {
		t.Errorf("requests = %d, want 3 (ok, 401, one retry)", n)
	}
}

func TestUserAgent(t *testing.T) {
	e := newEnv(t)
	c, _ := e.client(t)
	custom := NewV2Client(e.apiURL, &staticTokens{access: e.accessToken(t)}, WithUserAgent("smartcar2mqtt/1.2.3"))
	ctx := ctxT(t)
	if _, err := v2(c).ids(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := v2(custom).vehicle(ctx, custom, smartcarsim.TeslaID); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.sim.Requests() {
		want := DefaultUserAgent
		if r.Path == "/v2.0/vehicles/"+smartcarsim.TeslaID {
			want = "smartcar2mqtt/1.2.3"
		}
		if r.UserAgent != want {
			t.Errorf("%s %s: User-Agent %q, want %q", r.Method, r.Path, r.UserAgent, want)
		}
	}
}

func TestTransportErrorsNameTheOperation(t *testing.T) {
	e := newEnv(t)
	c := NewV2Client(e.apiURL, &staticTokens{access: e.accessToken(t)})
	e.srv.Close()

	err := c.ChargePortDoor(ctxT(t), Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA"}, Close)
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	if !strings.HasPrefix(err.Error(), "close charge port of "+smartcarsim.TeslaID+": ") {
		t.Errorf("error = %v", err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Errorf("transport error not wrapped: %T", err)
	}
}

func TestTimeoutAndCancellation(t *testing.T) {
	e := newEnv(t, func(o *smartcarsim.Options) { o.Latency = time.Hour })
	st := &staticTokens{access: e.accessToken(t)}
	tesla := Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA"}

	t.Run("per-request timeout", func(t *testing.T) {
		c := NewV2Client(e.apiURL, st, WithTimeout(50*time.Millisecond))
		err := c.ChargePortDoor(ctxT(t), tesla, Open)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		c := NewV2Client(e.apiURL, st)
		ctx, cancel := context.WithCancel(ctxT(t))
		go func() {
			// Cancel once the command has reached the car.
			e.sim.WaitRequest(ctx, func(r smartcarsim.Request) bool { return r.Method == "POST" && r.Status == 0 })
			cancel()
		}()
		err := c.ChargePortDoor(ctx, tesla, Open)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want canceled", err)
		}
	})
	// The simulator saw both clients go away and did not move the door.
	if _, err := e.sim.WaitRequest(ctxT(t), func(r smartcarsim.Request) bool { return r.Method == "POST" && r.Status == 499 }); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.requestsTo("POST", "") {
		if _, err := e.sim.WaitRequest(ctxT(t), func(x smartcarsim.Request) bool { return x.RequestID == r.RequestID && x.Status != 0 }); err != nil {
			t.Fatal(err)
		}
	}
	if e.sim.ChargePortOpen(smartcarsim.TeslaID) {
		t.Error("door moved although every client gave up")
	}
}

// assertSmartcarError checks err is (or wraps) *Error with the given fields.
func assertSmartcarError(t *testing.T, err error, status int, typ, code string) *Error {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if se.StatusCode != status || se.Type != typ || se.Code != code {
		t.Fatalf("error = %d %s:%s, want %d %s:%s (%v)", se.StatusCode, se.Type, se.Code, status, typ, code, err)
	}
	if se.RequestID == "" {
		t.Errorf("no request id in %v", err)
	}
	return se
}

func TestCommandErrorInSuccessfulResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(RequestIDHeader, "hdr-req")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"type":"VEHICLE_STATE","code":"UNREACHABLE","description":"gone","statusCode":409,"resolution":{"type":null}}`)
	}))
	defer srv.Close()
	c := NewV2Client(srv.URL, &staticTokens{access: "x"})
	err := c.ChargePortDoor(ctxT(t), Vehicle{ID: "v", Make: "TESLA"}, Open)
	se := assertSmartcarError(t, err, 409, TypeVehicleState, "UNREACHABLE")
	if se.RequestID != "hdr-req" {
		t.Errorf("request id = %q", se.RequestID)
	}
}

// A 2xx body that does not decode is one call, counted as an invalid response, never
// also as a success: every call counts against the quota once.
func TestUndecodableAnswerIsCountedOnce(t *testing.T) {
	for _, tt := range []struct {
		name string
		body string
		read func(*Client) error
	}{
		{"v2", `{"chargePortOpen":"yes"}`, func(c *Client) error { _, err := c.Read(t.Context(), Vehicle{ID: "V"}); return err }},
		{"v3", `{"data":"no list"}`, func(c *Client) error { _, err := c.Read(t.Context(), Vehicle{ID: "V", UserID: "U"}); return err }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			log := newCallLog()
			c := NewV2Client(srv.URL, &staticTokens{access: "a"}, WithObserver(log))
			if tt.name == "v3" {
				c = NewV3Client(srv.URL, &staticTokens{access: "a"}, WithObserver(log))
			}
			if err := tt.read(c); err == nil {
				t.Fatal("an undecodable answer read without error")
			}
			if calls := log.all(); len(calls) != 1 || calls[0].Outcome != OutcomeInvalidResponse {
				t.Errorf("observed %+v, want one invalid_response", calls)
			}
		})
	}
}
