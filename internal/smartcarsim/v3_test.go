package smartcarsim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Wire structs as a v3 client would write them, independent of the
// simulator's own.

type v3ErrorsWire struct {
	Errors []struct {
		Status     string  `json:"status"`
		Type       string  `json:"type"`
		Code       *string `json:"code"`
		Title      string  `json:"title"`
		Detail     string  `json:"detail"`
		Resolution *struct {
			Type *string `json:"type"`
		} `json:"resolution"`
		SuggestedUserMessage string `json:"suggestedUserMessage"`
	} `json:"errors"`
}

type oauthErrorWire struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

type idWire struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type connectionsWire struct {
	Data []struct {
		Type       string `json:"type"`
		ID         string `json:"id"`
		Attributes struct {
			Vehicle struct {
				Make  string `json:"make"`
				Model string `json:"model"`
				Year  int    `json:"year"`
			} `json:"vehicle"`
			Permissions []string `json:"permissions"`
			CreatedAt   string   `json:"createdAt"`
		} `json:"attributes"`
		Relationships struct {
			Vehicle struct {
				Data idWire `json:"data"`
			} `json:"vehicle"`
			User struct {
				Data idWire `json:"data"`
			} `json:"user"`
		} `json:"relationships"`
	} `json:"data"`
	Links struct {
		Self string  `json:"self"`
		Next *string `json:"next"`
	} `json:"links"`
	Meta struct {
		TotalCount int `json:"totalCount"`
		PageNumber int `json:"pageNumber"`
		PageSize   int `json:"pageSize"`
	} `json:"meta"`
}

type vehicleWire struct {
	Data struct {
		Type       string `json:"type"`
		ID         string `json:"id"`
		Attributes struct {
			Make  string `json:"make"`
			Model string `json:"model"`
			Year  int    `json:"year"`
		} `json:"attributes"`
	} `json:"data"`
}

type signalWire struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Attributes struct {
		Code   string `json:"code"`
		Name   string `json:"name"`
		Group  string `json:"group"`
		Status struct {
			Value string `json:"value"`
			Error *struct {
				Type string  `json:"type"`
				Code *string `json:"code"`
			} `json:"error"`
		} `json:"status"`
		Body json.RawMessage `json:"body"`
	} `json:"attributes"`
	Meta struct {
		RetrievedAt  json.RawMessage `json:"retrievedAt"`
		OEMUpdatedAt json.RawMessage `json:"oemUpdatedAt"`
	} `json:"meta"`
	Links struct {
		Self string `json:"self"`
	} `json:"links"`
}

type signalsWire struct {
	Data []signalWire `json:"data"`
}

type commandWire struct {
	Data struct {
		Type       string `json:"type"`
		ID         string `json:"id"`
		Attributes struct {
			Command string `json:"command"`
			Status  struct {
				Value string `json:"value"`
				Error *struct {
					Type   string  `json:"type"`
					Code   *string `json:"code"`
					Detail string  `json:"detail"`
				} `json:"error"`
			} `json:"status"`
			CreatedAt   string  `json:"createdAt"`
			CompletedAt *string `json:"completedAt"`
		} `json:"attributes"`
	} `json:"data"`
}

// v3 sends a v3 request with the app token and, unless user is "", sc-user-id.
func (e *env) v3(t *testing.T, method, path, tok, user string) response {
	t.Helper()
	h := []string{"Authorization", bearerHeader(tok)}
	if user != "" {
		h = append(h, "sc-user-id", user)
	}
	return e.do(t, method, path, h...)
}

// wantV3Error checks r is the v3 envelope with one error of this status,
// type and code ("" = null).
func wantV3Error(t *testing.T, r response, status int, typ, code string) {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d (%s) %s, want %d envelope", r.status, r.header.Get("Content-Type"), r.body, status)
	}
	b := decode[v3ErrorsWire](t, r.body)
	if len(b.Errors) != 1 {
		t.Fatalf("errors %s, want one", r.body)
	}
	e := b.Errors[0]
	gotCode := ""
	if e.Code != nil {
		gotCode = *e.Code
	}
	if e.Status != strconv.Itoa(status) || e.Type != typ || gotCode != code || e.Title == "" || e.Detail == "" || e.Resolution == nil {
		t.Errorf("error %s, want %d %s:%s", r.body, status, typ, code)
	}
}

func TestV3Token(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AppTokenTTL = 10 * time.Minute })
	form := func(grant, id, secret string) url.Values {
		v := url.Values{"grant_type": {grant}}
		if id != "" {
			v.Set("client_id", id)
			v.Set("client_secret", secret)
		}
		return v
	}
	tests := []struct {
		name       string
		form       url.Values
		user, pass string // HTTP Basic
		status     int
		oauthErr   string
	}{
		{"form credentials", form("client_credentials", testAPIClientID, testAPIClientSecret), "", "", 200, ""},
		{"basic credentials", form("client_credentials", "", ""), testAPIClientID, testAPIClientSecret, 200, ""},
		{"wrong secret in the form", form("client_credentials", testAPIClientID, "nope"), "", "", 401, "invalid_client"},
		{"wrong basic secret", form("client_credentials", "", ""), testAPIClientID, "nope", 401, "invalid_client"},
		{"v2 client is not the API client", form("client_credentials", testClientID, testClientSecret), "", "", 401, "invalid_client"},
		{"no credentials", form("client_credentials", "", ""), "", "", 401, "invalid_client"},
		{"other grant", form("refresh_token", testAPIClientID, testAPIClientSecret), "", "", 400, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.postForm(t, "/oauth2/token", tt.form, tt.user, tt.pass)
			if r.status != tt.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tt.status)
			}
			if tt.oauthErr != "" {
				b := decode[oauthErrorWire](t, r.body)
				if b.Error != tt.oauthErr || b.Description == "" {
					t.Errorf("body %s, want error %s", r.body, tt.oauthErr)
				}
				return
			}
			tok := decode[appTokenBody](t, r.body)
			if !strings.HasPrefix(tok.AccessToken, "sim-app-") || tok.TokenType != "Bearer" || tok.ExpiresIn != 600 || tok.RefreshToken != "" {
				t.Errorf("token %s", r.body)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
		})
	}

	t.Run("expiry", func(t *testing.T) {
		tok := e.appToken(t)
		if r := e.v3(t, "GET", "/v3/connections", tok, ""); r.status != 200 {
			t.Fatalf("fresh token: %d %s", r.status, r.body)
		}
		e.clock.Advance(10*time.Minute - time.Second)
		if r := e.v3(t, "GET", "/v3/connections", tok, ""); r.status != 200 {
			t.Fatalf("token a second before expiry: %d", r.status)
		}
		e.clock.Advance(time.Second)
		wantV3Error(t, e.v3(t, "GET", "/v3/connections", tok, ""), 401, "AUTHENTICATION", "")
	})

	t.Run("v2 and v3 tokens are separate", func(t *testing.T) {
		v2, v3 := e.accessToken(t), e.appToken(t)
		wantV3Error(t, e.v3(t, "GET", "/v3/vehicles/"+TeslaID+"/signals", v2, UserID), 401, "AUTHENTICATION", "")
		r := e.v2get(t, v3, "/vehicles")
		if b := decode[v2ErrorWire](t, r.body); r.status != 401 || b.Type != "AUTHENTICATION" {
			t.Errorf("v3 token on v2.0: %d %s", r.status, r.body)
		}
	})
}

func TestV3UserAndVehicleChecks(t *testing.T) {
	e := newEnv(t)
	tok := e.appToken(t)
	signals := "/v3/vehicles/" + TeslaID + "/signals"
	tests := []struct {
		name, method, path, token, user string
		status                          int
		typ, code                       string // for errors
	}{
		{"no token", "GET", signals, "", UserID, 401, "AUTHENTICATION", ""},
		{"right user", "GET", signals, tok, UserID, 200, "", ""},
		{"no user", "GET", signals, tok, "", 400, "VALIDATION", "INVALID_USER_ID"},
		{"wrong user", "GET", signals, tok, "someone-else", 400, "VALIDATION", "INVALID_USER_ID"},
		{"one signal, no user", "GET", signals + "/charge-ischargingportflapopen", tok, "", 400, "VALIDATION", "INVALID_USER_ID"},
		{"command, no user", "POST", "/v3/vehicles/" + TeslaID + "/commands/charge-port/open", tok, "", 400, "VALIDATION", "INVALID_USER_ID"},
		{"unknown vehicle first", "GET", "/v3/vehicles/nope/signals", tok, "", 404, "RESOURCE_NOT_FOUND", "VEHICLE"},
		{"unknown vehicle, right user", "GET", "/v3/vehicles/nope/signals", tok, UserID, 404, "RESOURCE_NOT_FOUND", "VEHICLE"},
		// Smartcar lists no sc-user-id for GET /vehicles/{id}; a wrong one is still wrong.
		{"vehicle without user", "GET", "/v3/vehicles/" + TeslaID, tok, "", 200, "", ""},
		{"vehicle, wrong user", "GET", "/v3/vehicles/" + TeslaID, tok, "someone-else", 400, "VALIDATION", "INVALID_USER_ID"},
		{"connections ignore the user", "GET", "/v3/connections", tok, "someone-else", 200, "", ""},
		{"unknown path", "GET", "/v3/nope", tok, "", 404, "RESOURCE_NOT_FOUND", "PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.v3(t, tt.method, tt.path, tt.token, tt.user)
			if tt.status == 200 {
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.body)
				}
			} else {
				wantV3Error(t, r, tt.status, tt.typ, tt.code)
			}
			if got := e.sim.Requests(); got[len(got)-1].UserID != tt.user {
				t.Errorf("logged sc-user-id %q, sent %q", got[len(got)-1].UserID, tt.user)
			}
		})
	}
	if e.sim.ChargePortOpen(TeslaID) {
		t.Error("a refused command moved the door")
	}
}

// TestV3ErrorEnvelope pins the envelope's exact shape, nulls included.
func TestV3ErrorEnvelope(t *testing.T) {
	e := newEnv(t)
	tok := e.appToken(t)
	e.sim.InjectFault(Fault{Path: "/signals", Status: 409, RetryAfter: 3 * time.Second})
	r := e.v3(t, "GET", "/v3/vehicles/"+TeslaID+"/signals", tok, UserID)
	wantV3Error(t, r, 409, "VEHICLE_STATE", "ASLEEP")
	got := decode[struct {
		Errors []map[string]json.RawMessage `json:"errors"`
	}](t, r.body).Errors[0]
	for key, want := range map[string]string{
		"status":     `"409"`,
		"type":       `"VEHICLE_STATE"`,
		"code":       `"ASLEEP"`,
		"resolution": `{"type":null}`,
	} {
		if string(got[key]) != want {
			t.Errorf("%s = %s, want %s", key, got[key], want)
		}
	}
	for _, key := range []string{"title", "detail", "suggestedUserMessage"} {
		if len(got[key]) < 3 {
			t.Errorf("%s missing: %s", key, r.body)
		}
	}
	if ra := r.header.Get("Retry-After"); ra != "3" {
		t.Errorf("Retry-After %q", ra)
	}

	// A permission error has a null code and a resolution.
	e.sim.SetPermissions(TeslaID, "read_vehicle_info")
	r = e.v3(t, "POST", "/v3/vehicles/"+TeslaID+"/commands/charge-port/open", tok, UserID)
	wantV3Error(t, r, 403, "PERMISSION", "")
	if !strings.Contains(string(r.body), `"code":null`) || !strings.Contains(string(r.body), `"resolution":{"type":"REAUTHENTICATE"}`) {
		t.Errorf("403 envelope %s", r.body)
	}
}

func TestV3Connections(t *testing.T) {
	e := newEnv(t)
	tok := e.appToken(t)
	const userB = "user-b"
	added := []Vehicle{
		{ID: "v3", Make: "TESLA", Model: "Model S", Year: 2019},
		{ID: "v4", UserID: userB, Make: "KIA", Model: "EV6", Year: 2023},
		{ID: "v5", UserID: UserID, Make: "TESLA", Model: "Model X", Year: 2020},
		{ID: "v6", UserID: userB, Make: "BMW", Model: "i4", Year: 2022},
		{ID: "v7", UserID: userB, Make: "TESLA", Model: "Model Y", Year: 2024},
	}
	for _, v := range added {
		e.sim.AddVehicle(v, []string{"read_vehicle_info"})
	}
	all := []string{TeslaID, OtherID, "v3", "v4", "v5", "v6", "v7"}

	// get fetches a page by its absolute URL, as a client follows links.
	get := func(t *testing.T, u string) connectionsWire {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t), "GET", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", bearerHeader(tok))
		r := e.send(t, req)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", u, r.status, r.body)
		}
		return decode[connectionsWire](t, r.body)
	}
	// walk follows links.next from first to the end.
	walk := func(t *testing.T, first string, size int) (ids []string, pages int) {
		t.Helper()
		next := &first
		for next != nil {
			p := get(t, *next)
			pages++
			if p.Links.Self != *next || p.Meta.PageNumber != pages || p.Meta.PageSize != size || len(p.Data) > size {
				t.Errorf("page %d: links %+v meta %+v, %d items", pages, p.Links, p.Meta, len(p.Data))
			}
			for _, c := range p.Data {
				ids = append(ids, c.Relationships.Vehicle.Data.ID)
			}
			next = p.Links.Next
			if next != nil && !strings.HasPrefix(*next, e.srv.URL+"/v3/connections?") {
				t.Fatalf("links.next %q: not absolute on the request's host", *next)
			}
		}
		return ids, pages
	}

	t.Run("pages of 3 to the end", func(t *testing.T) {
		first := e.srv.URL + "/v3/connections?page%5Bnumber%5D=1&page%5Bsize%5D=3"
		ids, pages := walk(t, first, 3)
		if !slices.Equal(ids, all) || pages != 3 {
			t.Errorf("ids %v in %d pages, want %v in 3", ids, pages, all)
		}
		if p := get(t, first); p.Meta.TotalCount != 7 {
			t.Errorf("totalCount %d", p.Meta.TotalCount)
		}
	})
	t.Run("one user", func(t *testing.T) {
		ids, pages := walk(t, e.srv.URL+"/v3/connections?filter%5BuserId%5D="+userB+"&page%5Bnumber%5D=1&page%5Bsize%5D=2", 2)
		if want := []string{"v4", "v6", "v7"}; !slices.Equal(ids, want) || pages != 2 {
			t.Errorf("ids %v in %d pages, want %v in 2", ids, pages, want)
		}
	})
	t.Run("defaults and literal brackets", func(t *testing.T) {
		p := get(t, e.srv.URL+"/v3/connections")
		if len(p.Data) != 7 || p.Meta.PageSize != 10 || p.Meta.PageNumber != 1 || p.Links.Next != nil {
			t.Errorf("default page: meta %+v next %v, %d items", p.Meta, p.Links.Next, len(p.Data))
		}
		if p := get(t, e.srv.URL+"/v3/connections?page[size]=5&page[number]=2"); len(p.Data) != 2 || p.Links.Next != nil {
			t.Errorf("page 2 of 5: %d items, next %v", len(p.Data), p.Links.Next)
		}
		if p := get(t, e.srv.URL+"/v3/connections?page[number]=9"); len(p.Data) != 0 || p.Data == nil || p.Meta.TotalCount != 7 || p.Links.Next != nil {
			t.Errorf("page past the end: %+v", p)
		}
	})
	t.Run("a connection", func(t *testing.T) {
		c := get(t, e.srv.URL+"/v3/connections").Data[0]
		a := c.Attributes
		created, err := time.Parse(time.RFC3339, a.CreatedAt)
		if c.Type != "connection" || c.ID != "conn-"+TeslaID || a.Vehicle.Make != "TESLA" || a.Vehicle.Model != "Model 3" ||
			a.Vehicle.Year != 2021 || !slices.Equal(a.Permissions, []string{"read_vehicle_info", "read_charge", "control_charge"}) ||
			err != nil || !created.Equal(e.clock.Now()) ||
			c.Relationships.Vehicle.Data != (idWire{"vehicle", TeslaID}) || c.Relationships.User.Data != (idWire{"user", UserID}) {
			t.Errorf("connection %+v (createdAt: %v)", c, err)
		}
	})
	t.Run("bad paging", func(t *testing.T) {
		for _, q := range []string{"page[size]=0", "page[size]=51", "page[size]=x", "page[number]=0", "page[number]=-1", "page[number]="} {
			wantV3Error(t, e.v3(t, "GET", "/v3/connections?"+q, tok, ""), 400, "VALIDATION", "PARAMETER")
		}
		if r := e.v3(t, "GET", "/v3/connections?page[size]=50&page[number]=9223372036854775807", tok, ""); r.status != 200 {
			t.Errorf("huge page number: %d %s", r.status, r.body)
		}
	})
	t.Run("removed vehicles leave", func(t *testing.T) {
		e.sim.RemoveVehicle("v4")
		if p := get(t, e.srv.URL+"/v3/connections?filter[userId]="+userB); p.Meta.TotalCount != 2 {
			t.Errorf("after RemoveVehicle: %+v", p.Meta)
		}
	})
}

func TestV3Vehicle(t *testing.T) {
	e := newEnv(t)
	tok := e.appToken(t)
	r := e.v3(t, "GET", "/v3/vehicles/"+OtherID, tok, UserID)
	v := decode[vehicleWire](t, r.body)
	if r.status != 200 || v.Data.Type != "vehicle" || v.Data.ID != OtherID || v.Data.Attributes.Make != "FORD" ||
		v.Data.Attributes.Model != "Mustang Mach-E" || v.Data.Attributes.Year != 2022 {
		t.Errorf("%d %s", r.status, r.body)
	}
	e.sim.SetPermissions(OtherID, "read_charge")
	wantV3Error(t, e.v3(t, "GET", "/v3/vehicles/"+OtherID, tok, UserID), 403, "PERMISSION", "")
}

func TestV3Signals(t *testing.T) {
	codes := []string{
		"charge-ischargingportflapopen", "charge-ischargingcableconnected", "charge-ischargingcablelatched",
		"charge-detailedchargingstatus", "charge-chargelimits", "charge-energyadded",
	}
	tests := []struct {
		name    string
		vehicle string
		alt     bool
		plugged bool
		bodies  []string // in codes' order
	}{
		{"tesla unplugged", TeslaID, false, false, []string{
			`{"value":false}`, `{"value":false}`, `{"value":false}`, `{"value":"NOT_CHARGING"}`,
			`{"activeLimit":80,"values":[{"type":"GLOBAL","limit":80}]}`, `{"value":0,"unit":"kWh"}`,
		}},
		{"tesla plugged in", TeslaID, false, true, []string{
			`{"value":true}`, `{"value":true}`, `{"value":true}`, `{"value":"CHARGING"}`,
			`{"activeLimit":80,"values":[{"type":"GLOBAL","limit":80}]}`, `{"value":4.2,"unit":"kWh"}`,
		}},
		{"ford plugged in: reads are make-agnostic", OtherID, false, true, []string{
			`{"value":true}`, `{"value":true}`, `{"value":true}`, `{"value":"CHARGING"}`,
			`{"activeLimit":80,"values":[{"type":"GLOBAL","limit":80}]}`, `{"value":4.2,"unit":"kWh"}`,
		}},
		{"alternative bodies", TeslaID, true, true, []string{
			`{"isOpen":true}`, `{"value":true}`, `{"value":true}`, `{"value":"CHARGING"}`,
			`{"values":[{"type":"GLOBAL","limit":80},{"type":"LOCATION","limit":90}]}`, `{"value":4.2,"unit":"kWh"}`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tok := e.appToken(t)
			e.sim.SetAltBodies(tt.alt)
			if tt.plugged {
				e.clock.Advance(time.Minute) // the car's update is older than the read
				e.sim.SetPluggedIn(tt.vehicle, true)
				e.clock.Advance(time.Minute)
			}
			updated := e.clock.Now().Add(-time.Minute)
			path := "/v3/vehicles/" + tt.vehicle + "/signals"
			r := e.v3(t, "GET", path, tok, UserID)
			if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s", r.status, r.body)
			}
			list := decode[signalsWire](t, r.body)
			if len(list.Data) != len(codes) {
				t.Fatalf("%d signals: %s", len(list.Data), r.body)
			}
			for i, s := range list.Data {
				a := s.Attributes
				if s.ID != codes[i] || s.Type != "signal" || a.Code != codes[i] || a.Name == "" || a.Group != "Charge" ||
					a.Status.Value != "SUCCESS" || a.Status.Error != nil || string(a.Body) != tt.bodies[i] ||
					s.Links.Self != "/vehicles/"+tt.vehicle+"/signals/"+codes[i] {
					t.Errorf("signal %d: %+v body %s, want %s %s", i, s, a.Body, codes[i], tt.bodies[i])
				}
				if want := strconv.FormatInt(e.clock.Now().UnixMilli(), 10); string(s.Meta.RetrievedAt) != want {
					t.Errorf("%s retrievedAt %s, want %s", s.ID, s.Meta.RetrievedAt, want)
				}
				wantOEM := strconv.FormatInt(updated.UnixMilli(), 10)
				if tt.alt {
					wantOEM = `"` + updated.UTC().Format("2006-01-02T15:04:05.000Z") + `"`
				}
				if tt.plugged && string(s.Meta.OEMUpdatedAt) != wantOEM {
					t.Errorf("%s oemUpdatedAt %s, want %s", s.ID, s.Meta.OEMUpdatedAt, wantOEM)
				}
				// The one-signal endpoint answers the same signal, bare.
				one := e.v3(t, "GET", path+"/"+codes[i], tok, UserID)
				if one.status != 200 {
					t.Fatalf("GET %s: %d %s", codes[i], one.status, one.body)
				}
				if got := decode[signalWire](t, one.body); string(got.Attributes.Body) != tt.bodies[i] || got.ID != codes[i] ||
					string(got.Meta.RetrievedAt) != string(s.Meta.RetrievedAt) {
					t.Errorf("GET %s = %s", codes[i], one.body)
				}
			}
		})
	}

	t.Run("unknown code", func(t *testing.T) {
		e := newEnv(t)
		wantV3Error(t, e.v3(t, "GET", "/v3/vehicles/"+TeslaID+"/signals/charge-nope", e.appToken(t), UserID), 404, "RESOURCE_NOT_FOUND", "SIGNAL")
	})
}

func TestV3SignalError(t *testing.T) {
	e := newEnv(t)
	tok := e.appToken(t)
	e.sim.SetChargePortOpen(TeslaID, true)
	e.sim.SetSignalError(TeslaID, "charge-ischargingportflapopen", "VEHICLE_STATE", "ASLEEP")
	e.sim.SetSignalError(TeslaID, "charge-energyadded", "UPSTREAM", "")
	byCode := func() map[string]signalWire {
		m := map[string]signalWire{}
		for _, s := range decode[signalsWire](t, e.v3(t, "GET", "/v3/vehicles/"+TeslaID+"/signals", tok, UserID).body).Data {
			m[s.ID] = s
		}
		return m
	}
	got := byCode()
	door := got["charge-ischargingportflapopen"].Attributes
	if door.Status.Value != "ERROR" || door.Status.Error == nil || door.Status.Error.Type != "VEHICLE_STATE" ||
		door.Status.Error.Code == nil || *door.Status.Error.Code != "ASLEEP" || string(door.Body) != `{"value":true}` {
		t.Errorf("door signal with an error: %+v body %s (want the stale body kept)", door.Status, door.Body)
	}
	if energy := got["charge-energyadded"].Attributes; energy.Status.Error == nil || energy.Status.Error.Code != nil {
		t.Errorf("energy signal with a code-less error: %+v", energy.Status)
	}
	if plug := got["charge-ischargingcableconnected"].Attributes; plug.Status.Value != "SUCCESS" {
		t.Errorf("unaffected signal: %+v", plug.Status)
	}
	one := decode[signalWire](t, e.v3(t, "GET", "/v3/vehicles/"+TeslaID+"/signals/charge-ischargingportflapopen", tok, UserID).body)
	if one.Attributes.Status.Value != "ERROR" {
		t.Errorf("one signal: %+v", one.Attributes.Status)
	}
	e.sim.SetSignalError(TeslaID, "charge-ischargingportflapopen", "", "")
	if s := byCode()["charge-ischargingportflapopen"].Attributes.Status; s.Value != "SUCCESS" || s.Error != nil {
		t.Errorf("after clearing: %+v", s)
	}
}

func TestV3NoData(t *testing.T) {
	e := newEnv(t)
	tok := e.appToken(t)
	list := "/v3/vehicles/" + TeslaID + "/signals"
	one := list + "/charge-ischargingportflapopen"

	e.sim.SetNoData(TeslaID, 404)
	wantV3Error(t, e.v3(t, "GET", list, tok, UserID), 404, "RESOURCE_NOT_FOUND", "SIGNAL")
	wantV3Error(t, e.v3(t, "GET", one, tok, UserID), 404, "RESOURCE_NOT_FOUND", "SIGNAL")

	e.sim.SetNoData(TeslaID, 200)
	if r := e.v3(t, "GET", list, tok, UserID); r.status != 200 || strings.TrimSpace(string(r.body)) != `{"data":[]}` {
		t.Errorf("empty: %d %s", r.status, r.body)
	}
	wantV3Error(t, e.v3(t, "GET", one, tok, UserID), 404, "RESOURCE_NOT_FOUND", "SIGNAL")
	if r := e.v3(t, "GET", "/v3/vehicles/"+OtherID+"/signals", tok, UserID); r.status != 200 || len(decode[signalsWire](t, r.body).Data) != 6 {
		t.Errorf("another vehicle: %d %s", r.status, r.body)
	}

	e.sim.SetNoData(TeslaID, 0)
	if r := e.v3(t, "GET", list, tok, UserID); r.status != 200 || len(decode[signalsWire](t, r.body).Data) != 6 {
		t.Errorf("back to normal: %d %s", r.status, r.body)
	}
}

func TestV3SignalsWithoutReadCharge(t *testing.T) {
	e := newEnv(t)
	tok := e.appToken(t)
	e.sim.SetPermissions(TeslaID, "read_vehicle_info", "control_charge")
	r := e.v3(t, "GET", "/v3/vehicles/"+TeslaID+"/signals", tok, UserID)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, s := range decode[signalsWire](t, r.body).Data {
		st := s.Attributes.Status
		if st.Value != "ERROR" || st.Error == nil || st.Error.Type != "PERMISSION" || s.Attributes.Body != nil {
			t.Errorf("%s: status %+v body %s, want ERROR PERMISSION without a body", s.ID, st, s.Attributes.Body)
		}
	}
}

// door posts a v3 charge port command for the vehicle.
func (e *env) v3door(t *testing.T, tok, id, action string) response {
	t.Helper()
	return e.v3(t, "POST", "/v3/vehicles/"+id+"/commands/charge-port/"+action, tok, UserID)
}

func TestV3DoorCommand(t *testing.T) {
	t.Run("open and close", func(t *testing.T) {
		e := newEnv(t)
		tok := e.appToken(t)
		for _, tt := range []struct {
			action string
			open   bool
		}{{"open", true}, {"close", false}} {
			r := e.v3door(t, tok, TeslaID, tt.action)
			doc := decode[commandWire](t, r.body)
			a := doc.Data.Attributes
			if r.status != 200 || r.header.Get("Content-Type") != "application/json" || doc.Data.Type != "command-execution" ||
				doc.Data.ID == "" || a.Command != "charge-port/"+tt.action || a.Status.Value != "SUCCESS" || a.Status.Error != nil ||
				a.CreatedAt == "" || a.CompletedAt == nil {
				t.Errorf("%s: %d %s", tt.action, r.status, r.body)
			}
			if e.sim.ChargePortOpen(TeslaID) != tt.open {
				t.Errorf("after %s the door is open: %v", tt.action, !tt.open)
			}
		}
	})

	t.Run("waits for the latency", func(t *testing.T) {
		e := newEnv(t)
		release := e.gate()
		tok := e.appToken(t)
		done := make(chan response, 1)
		go func() { done <- e.v3door(t, tok, TeslaID, "open") }()
		if _, err := e.sim.WaitRequest(ctxT(t), func(r Request) bool { return strings.HasSuffix(r.Path, "/open") }); err != nil {
			t.Fatal(err)
		}
		if e.sim.ChargePortOpen(TeslaID) {
			t.Error("door moved before the latency ended")
		}
		close(release)
		if r := <-done; r.status != 200 || !e.sim.ChargePortOpen(TeslaID) {
			t.Errorf("%d %s, door open %v", r.status, r.body, e.sim.ChargePortOpen(TeslaID))
		}
	})

	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name, vehicle, action string
			setup                 func(*Simulator)
			status                int
			typ, code             string
		}{
			{"non-Tesla", OtherID, "open", nil, 501, "COMPATIBILITY", "MAKE_NOT_COMPATIBLE"},
			{"no control_charge", TeslaID, "open", func(s *Simulator) { s.SetPermissions(TeslaID, "read_charge") }, 403, "PERMISSION", ""},
			{"close while plugged in", TeslaID, "close", func(s *Simulator) { s.SetPluggedIn(TeslaID, true) }, 409, "VEHICLE_STATE", "CHARGING_PLUG_CONNECTED"},
			{"unknown action", TeslaID, "toggle", nil, 404, "RESOURCE_NOT_FOUND", "PATH"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, func(o *Options) { o.Async = true }) // refusals answer at once, even async
				tok := e.appToken(t)
				if tt.setup != nil {
					tt.setup(e.sim)
				}
				before := e.sim.ChargePortOpen(tt.vehicle)
				wantV3Error(t, e.v3door(t, tok, tt.vehicle, tt.action), tt.status, tt.typ, tt.code)
				if e.sim.ChargePortOpen(tt.vehicle) != before {
					t.Error("a refused command moved the door")
				}
			})
		}
	})

	t.Run("complete on cancel", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Latency = time.Hour; o.CompleteOnCancel = true })
		tok := e.appToken(t)
		ctx, cancel := context.WithCancel(ctxT(t))
		go func() {
			e.sim.WaitRequest(ctx, func(r Request) bool { return strings.HasSuffix(r.Path, "/open") })
			cancel()
		}()
		req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/v3/vehicles/"+TeslaID+"/commands/charge-port/open", nil)
		req.Header.Set("Authorization", bearerHeader(tok))
		req.Header.Set("sc-user-id", UserID)
		if _, err := e.srv.Client().Do(req); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.sim.WaitRequest(ctxT(t), func(r Request) bool { return r.Status == 499 }); err != nil {
			t.Fatal(err)
		}
		if !e.sim.ChargePortOpen(TeslaID) {
			t.Error("door did not move although the car completed the command")
		}
	})
}

// streamDoor starts an async door command and returns the open response.
func streamDoor(t *testing.T, e *env, tok, action string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), "POST", e.srv.URL+"/v3/vehicles/"+TeslaID+"/commands/charge-port/"+action, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearerHeader(tok))
	req.Header.Set("sc-user-id", UserID)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("async command: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, bufio.NewReader(resp.Body)
}

// nextDoc reads one newline-terminated document of the stream.
func nextDoc(t *testing.T, br *bufio.Reader) commandWire {
	t.Helper()
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading the stream: %v (got %q)", err, line)
	}
	return decode[commandWire](t, line)
}

func TestV3AsyncDoor(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Async = true })
	release := e.gate()
	tok := e.appToken(t)

	_, br := streamDoor(t, e, tok, "open")
	// The PENDING document arrives while the command is still held.
	pending := nextDoc(t, br)
	a := pending.Data.Attributes
	if a.Status.Value != "PENDING" || a.CompletedAt != nil || a.Command != "charge-port/open" || pending.Data.ID == "" {
		t.Errorf("first document %+v", pending)
	}
	if e.sim.ChargePortOpen(TeslaID) {
		t.Error("door moved before the latency ended")
	}
	close(release)
	final := nextDoc(t, br)
	if f := final.Data.Attributes; f.Status.Value != "SUCCESS" || f.CompletedAt == nil || final.Data.ID != pending.Data.ID {
		t.Errorf("final document %+v", final)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the final document: %q, %v", rest, err)
	}
	if !e.sim.ChargePortOpen(TeslaID) {
		t.Error("door closed after a successful open")
	}
	if r, _ := e.sim.WaitRequest(ctxT(t), func(r Request) bool { return r.Status != 0 && strings.HasSuffix(r.Path, "/open") }); r.Status != 202 {
		t.Errorf("logged status %d", r.Status)
	}
}

func TestV3CommandFailedInBody(t *testing.T) {
	fault := Fault{Method: "POST", Path: "/commands/charge-port/open", Status: 200, Type: "VEHICLE_STATE", Code: "UNREACHABLE"}
	checkFailed := func(t *testing.T, doc commandWire) {
		t.Helper()
		st := doc.Data.Attributes.Status
		if st.Value != "FAILED" || st.Error == nil || st.Error.Type != "VEHICLE_STATE" || st.Error.Code == nil ||
			*st.Error.Code != "UNREACHABLE" || st.Error.Detail == "" || doc.Data.Attributes.CompletedAt == nil {
			t.Errorf("failed command %+v", doc)
		}
	}

	t.Run("sync", func(t *testing.T) {
		e := newEnv(t)
		tok := e.appToken(t)
		e.sim.InjectFault(fault)
		r := e.v3door(t, tok, TeslaID, "open")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		checkFailed(t, decode[commandWire](t, r.body))
		if e.sim.ChargePortOpen(TeslaID) {
			t.Error("a FAILED command moved the door")
		}
		// The fault was for one command.
		if r := e.v3door(t, tok, TeslaID, "open"); decode[commandWire](t, r.body).Data.Attributes.Status.Value != "SUCCESS" {
			t.Errorf("next command: %s", r.body)
		}
	})

	t.Run("async", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Async = true })
		release := e.gate()
		tok := e.appToken(t)
		e.sim.InjectFault(fault)
		_, br := streamDoor(t, e, tok, "open")
		if d := nextDoc(t, br); d.Data.Attributes.Status.Value != "PENDING" {
			t.Errorf("first document %+v", d)
		}
		close(release)
		checkFailed(t, nextDoc(t, br))
		if e.sim.ChargePortOpen(TeslaID) {
			t.Error("a FAILED command moved the door")
		}
	})

	t.Run("still authenticated", func(t *testing.T) {
		e := newEnv(t)
		e.sim.InjectFault(fault)
		wantV3Error(t, e.v3door(t, "not-a-token", TeslaID, "open"), 401, "AUTHENTICATION", "")
	})
}

// connectURL is a v3 Connect URL for the test application.
func connectURL(e *env, clientID, state string) string {
	q := url.Values{
		"client_id":     {clientID},
		"redirect_uri":  {testRedirectURL},
		"response_type": {"code"},
		"scope":         {"read_vehicle_info read_charge control_charge"},
		"mode":          {"live"},
	}
	if state != "" {
		q.Set("state", state)
	}
	return e.srv.URL + "/oauth/authorize?" + q.Encode()
}

// authorize follows nothing: it returns the status and redirect query.
func authorize(t *testing.T, u string) (int, url.Values) {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirectURL {
		t.Errorf("redirected to %s", got)
	}
	return resp.StatusCode, loc.Query()
}

func TestV3Connect(t *testing.T) {
	userConnections := func(t *testing.T, e *env, tok, user string) connectionsWire {
		t.Helper()
		r := e.v3(t, "GET", "/v3/connections?filter[userId]="+url.QueryEscape(user), tok, "")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		return decode[connectionsWire](t, r.body)
	}

	t.Run("fresh connection", func(t *testing.T) {
		e := newEnv(t)
		tok := e.appToken(t)
		status, q := authorize(t, connectURL(e, testApplicationID, "st4te"))
		user := q.Get("user_id")
		if status != http.StatusFound || user == "" || user == UserID || q.Get("state") != "st4te" || q.Has("code") {
			t.Fatalf("redirect %d %v", status, q)
		}
		got := userConnections(t, e, tok, user)
		if len(got.Data) != 1 {
			t.Fatalf("connections of %s: %+v", user, got)
		}
		c := got.Data[0]
		id := c.Relationships.Vehicle.Data.ID
		if v := c.Attributes.Vehicle; v.Make != "TESLA" || v.Model != "Model Y" || v.Year != 2024 || id == TeslaID || id == "" ||
			!slices.Equal(c.Attributes.Permissions, []string{"read_vehicle_info", "read_charge", "control_charge"}) {
			t.Errorf("connection %+v", c)
		}
		// The new vehicle answers for its own user.
		if r := e.v3(t, "GET", "/v3/vehicles/"+id+"/signals", tok, user); r.status != 200 {
			t.Errorf("signals of the new vehicle: %d %s", r.status, r.body)
		}
		// Another Connect is another user.
		if _, q2 := authorize(t, connectURL(e, testApplicationID, "")); q2.Get("user_id") == user || q2.Has("state") {
			t.Errorf("second Connect %v", q2)
		}
	})

	t.Run("queued connection", func(t *testing.T) {
		e := newEnv(t)
		tok := e.appToken(t)
		e.sim.QueueConnect(Vehicle{ID: "queued-car", UserID: "queued-user", Make: "FORD", Model: "F-150 Lightning", Year: 2023}, []string{"read_charge"})
		e.sim.QueueConnect(Vehicle{ID: "second-car", Make: "TESLA", Model: "Model 3", Year: 2022}, []string{"read_vehicle_info"})
		if _, q := authorize(t, connectURL(e, testApplicationID, "a")); q.Get("user_id") != "queued-user" {
			t.Fatalf("first Connect %v", q)
		}
		got := userConnections(t, e, tok, "queued-user")
		if len(got.Data) != 1 || got.Data[0].Relationships.Vehicle.Data.ID != "queued-car" ||
			!slices.Equal(got.Data[0].Attributes.Permissions, []string{"read_charge"}) {
			t.Errorf("queued connection %+v", got.Data)
		}
		// A queued vehicle without a user belongs to UserID.
		if _, q := authorize(t, connectURL(e, testApplicationID, "b")); q.Get("user_id") != UserID {
			t.Fatalf("second Connect %v", q)
		}
		if got := userConnections(t, e, tok, UserID); got.Meta.TotalCount != 3 {
			t.Errorf("UserID's connections %+v", got.Meta)
		}
	})

	t.Run("grant without Connect", func(t *testing.T) {
		e := newEnv(t)
		tok := e.appToken(t)
		e.sim.Grant(Vehicle{ID: "granted", UserID: "phone-user", Make: "TESLA", Model: "Model Y", Year: 2024}, []string{"read_charge"})
		if got := userConnections(t, e, tok, "phone-user"); len(got.Data) != 1 || got.Data[0].ID != "conn-granted" {
			t.Errorf("granted connection %+v", got.Data)
		}
	})

	t.Run("denied", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.DenyConnect = true })
		tok := e.appToken(t)
		_, q := authorize(t, connectURL(e, testApplicationID, "st4te"))
		if q.Get("error") != "access_denied" || q.Get("state") != "st4te" || q.Has("user_id") {
			t.Errorf("denied redirect %v", q)
		}
		if got := userConnections(t, e, tok, ""); got.Meta.TotalCount != 2 {
			t.Errorf("a denied Connect connected something: %+v", got.Meta)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		e := newEnv(t)
		for name, u := range map[string]string{
			"unknown client":  connectURL(e, "nobody", ""),
			"v3 api client":   connectURL(e, testAPIClientID, ""),
			"bad redirect":    strings.Replace(connectURL(e, testApplicationID, ""), url.QueryEscape(testRedirectURL), "ftp%3A%2F%2Fx", 1),
			"bad mode":        strings.Replace(connectURL(e, testApplicationID, ""), "mode=live", "mode=nope", 1),
			"bad response ty": strings.Replace(connectURL(e, testApplicationID, ""), "response_type=code", "response_type=token", 1),
		} {
			if status, _ := authorize(t, u); status != http.StatusBadRequest {
				t.Errorf("%s: %d, want 400", name, status)
			}
		}
	})
}
