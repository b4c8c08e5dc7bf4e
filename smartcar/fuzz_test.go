package smartcar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// fuzzNow anchors HTTP-date Retry-After values, so runs are reproducible.
var fuzzNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fuzzTokenLike keeps the characters a bearer token is made of and prefixes
// a marker no fixed text of an error message contains, so "the secret is in
// the message" can only mean it leaked.
func fuzzTokenLike(s string) string {
	var b strings.Builder
	b.WriteString("tok_")
	for _, r := range s {
		if r == '-' || r == '_' || r == '.' || r == '~' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// FuzzNewHTTPError: newHTTPError decodes whatever a server (or a proxy in
// between) answers. It must never panic; only the two headers it documents
// (SC-Request-Id, Retry-After) may influence the result, so a credential in
// any other header cannot reach an error message; after the redaction the
// client applies, the access token is nowhere in Error(); the description is
// bounded; Retry-After never turns into a negative or wrapped-around wait.
func FuzzNewHTTPError(f *testing.F) {
	f.Add(409, "", "req-1", "abcdef0123456789", []byte(`{"type":"VEHICLE_STATE","code":"ASLEEP","description":"The vehicle is asleep.","docURL":"https://smartcar.com/docs","statusCode":409,"requestId":"r1","resolution":{"type":"RETRY_LATER"},"suggestedUserMessage":"Wake it."}`))
	f.Add(429, "30", "", "abcdef0123456789", []byte(`{"type":"RATE_LIMIT","code":"VEHICLE","description":"Too many requests","resolution":"RETRY_LATER","requestId":null}`))
	f.Add(429, "Sun, 01 Jun 2025 12:05:00 GMT", "r2", "secretsecret", []byte(`{"type":"RATE_LIMIT","code":null,"resolution":null}`))
	f.Add(400, "", "", "refresh123456", []byte(`{"error":"invalid_grant","error_description":"token tok_refresh123456 revoked"}`))
	f.Add(401, "", "", "xyz789xyz789", []byte(`{"error":"unauthorized","message":"Bearer tok_xyz789xyz789 expired"}`))
	f.Add(502, "", "", "abcdefabcdef", []byte("<html><body>Bad Gateway: Authorization: Bearer tok_abcdefabcdef</body></html>"))
	f.Add(500, "", "", "0000000000000", []byte("\x00\xff\xfe not json \u2028 at all"))
	f.Add(503, "9223372037", "", "aaaaaaaaaaaa", []byte(""))
	f.Add(429, "18446744074", "", "aaaaaaaaaaaa", []byte("{}"))
	f.Add(-1, "-5", "\n", "", []byte(`{"type":1}`))
	f.Add(999, " 1e3 ", "", "b", []byte(`{"type":"X","description":"`+strings.Repeat("\\ud800", 50)+`"}`))
	f.Fuzz(func(t *testing.T, status int, retryAfter, requestID, token string, body []byte) {
		secret := fuzzTokenLike(token)

		copied := http.Header{}
		copied.Set("Retry-After", retryAfter)
		copied.Set(RequestIDHeader, requestID)
		all := copied.Clone()
		all.Set("Authorization", "Bearer "+secret)
		all.Set("Set-Cookie", "session="+secret+"; HttpOnly")
		all.Set("WWW-Authenticate", `Bearer error="invalid_token", token="`+secret+`"`)
		all.Set("X-Echo-Token", secret)
		all.Set("Content-Type", "application/json")

		e := newHTTPError(status, all, body, fuzzNow)
		if e == nil {
			t.Fatal("newHTTPError returned nil")
		}
		// Headers it does not document make no difference at all.
		if only := newHTTPError(status, copied, body, fuzzNow); !reflect.DeepEqual(e, only) {
			t.Fatalf("uncopied headers changed the error:\nwith:    %#v\nwithout: %#v", e, only)
		}
		if e.StatusCode != status {
			t.Fatalf("StatusCode = %d, want %d", e.StatusCode, status)
		}
		msg := e.Error()
		if !strings.HasPrefix(msg, "smartcar: ") {
			t.Fatalf("Error() = %q lacks the smartcar: prefix", msg)
		}
		if e.RetryAfter < 0 {
			t.Fatalf("RetryAfter = %v for Retry-After %q: negative", e.RetryAfter, retryAfter)
		}
		if secs, err := strconv.ParseInt(strings.TrimSpace(retryAfter), 10, 64); err == nil && secs > 0 {
			// A larger delay is never a shorter wait: no overflow.
			if want := min(secs, int64(math.MaxInt64/time.Second)); int64(e.RetryAfter/time.Second) < want {
				t.Fatalf("Retry-After %q gave RetryAfter %v, shorter than the %d s asked for", retryAfter, e.RetryAfter, secs)
			}
		}

		// Description is bounded: a non-error body is cut to a snippet; an
		// error body's text is at most what the (already bounded) body held,
		// each invalid byte becoming one U+FFFD.
		var b errorBody
		if json.Unmarshal(body, &b) != nil || !b.isError() {
			if limit := len(http.StatusText(status)) + len(": ") + maxErrorSnippet; len(e.Description) > limit {
				t.Fatalf("description of a non-Smartcar body is %d bytes, over %d", len(e.Description), limit)
			}
			if strings.ContainsAny(e.Description, "\n\r\x00") {
				t.Fatalf("snippet %q is not one printable line", e.Description)
			}
		} else if len(e.Description) > 3*len(body) {
			t.Fatalf("description is %d bytes from a %d-byte body", len(e.Description), len(body))
		}

		// What do does before anyone sees the error: the access token is
		// gone, wherever the server echoed it.
		e.redact(secret)
		if strings.Contains(e.Error(), secret) {
			t.Fatalf("Error() after redaction contains the access token %q: %q", secret, e.Error())
		}
	})
}

// fuzzTokens is a TokenSource that always has the same access token.
type fuzzTokens struct{}

func (fuzzTokens) Token() (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: "fuzz-access-token", TokenType: "Bearer"}, nil
}
func (fuzzTokens) Invalidate() {}

// fuzzTransport answers every request with one canned response.
type fuzzTransport struct {
	status int
	header http.Header
	body   []byte
}

func (rt fuzzTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: rt.status,
		Header:     rt.header.Clone(),
		Body:       io.NopCloser(bytes.NewReader(rt.body)),
		Request:    r,
	}, nil
}

// FuzzTeslaChargeDecode feeds arbitrary 200 bodies of v2.0's tesla/charge to
// Client.Read, through the client's own request and decode path. Truncated
// JSON, huge numbers and wrong types must give an error (and a zero
// ChargeState) or nil fields, never a panic; each field read must agree with
// the body, the charge limit in percent.
func FuzzTeslaChargeDecode(f *testing.F) {
	f.Add([]byte(`{"chargePortOpen":true,"chargePortLatch":"ENGAGED","isPluggedIn":true,"state":"CHARGING","socLimit":0.8,"energyAdded":12.3,"amperage":16,"amperageRequested":16,"amperageMax":32,"voltage":230,"wattage":11,"chargeRate":60,"timeToComplete":95,"chargerPhases":3,"isFastChargerPresent":false,"fastChargerType":"<invalid>"}`))
	f.Add([]byte(`{"chargePortOpen":null,"state":null,"socLimit":null}`))
	f.Add([]byte(`{"chargePortOpen":tr`))
	f.Add([]byte(`{"socLimit":1e309}`))
	f.Add([]byte(`{"socLimit":57}`))
	f.Add([]byte(`{"chargePortOpen":"true","isPluggedIn":1}`))
	f.Add([]byte(`{"CHARGEPORTOPEN":true,"chargePortOpen":false}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(" \n"))
	f.Add([]byte(`{"state":"\ud800\xff"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		hdr := http.Header{}
		hdr.Set(RequestIDHeader, "fuzz-req")
		hdr.Set("Content-Type", "application/json")
		c := NewV2Client("http://smartcar.invalid/v2.0", fuzzTokens{},
			WithHTTPClient(&http.Client{Transport: fuzzTransport{status: http.StatusOK, header: hdr, body: body}}),
			WithBackoff(0), WithMaxRetryWait(0))
		ch, err := c.Read(context.Background(), Vehicle{ID: "V1"})
		if err != nil {
			if !reflect.DeepEqual(ch, ChargeState{}) {
				t.Fatalf("Read returned %+v together with error %v", ch, err)
			}
			if json.Valid(body) && bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
				// A well-formed object may still be refused, but only for a
				// value that does not fit its field.
				var ute *json.UnmarshalTypeError
				if !errors.As(err, &ute) {
					t.Fatalf("valid JSON object refused with %v", err)
				}
			}
			return
		}
		if ch.RequestID != "fuzz-req" {
			t.Fatalf("RequestID = %q, want the SC-Request-Id header", ch.RequestID)
		}
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) > 0 && !json.Valid(trimmed) {
			t.Fatalf("invalid JSON %q accepted as %+v", body, ch)
		}
		// Each field agrees with the body when the body names it once and
		// plainly (ASCII keys, no duplicates under case folding).
		var m map[string]any
		if json.Unmarshal(trimmed, &m) != nil || m == nil {
			return
		}
		folded := map[string]any{}
		for k, v := range m {
			for _, r := range k {
				if r >= 0x80 {
					return
				}
			}
			if _, dup := folded[strings.ToLower(k)]; dup {
				return
			}
			folded[strings.ToLower(k)] = v
		}
		agree := func(name string, got any) {
			v, named := folded[strings.ToLower(name)]
			rv := reflect.ValueOf(got)
			switch {
			case !named || v == nil:
				if !rv.IsNil() {
					t.Fatalf("%s is %v in the body but %v in the state", name, v, rv.Elem())
				}
			case rv.IsNil():
				t.Fatalf("%s is %v in the body but unknown in the state", name, v)
			case !reflect.DeepEqual(rv.Elem().Interface(), v):
				t.Fatalf("%s: body %v, state %v", name, v, rv.Elem())
			}
		}
		agree("chargePortOpen", ch.DoorOpen)
		agree("isPluggedIn", ch.PluggedIn)
		agree("chargePortLatch", ch.Latch)
		agree("state", ch.Charging)
		agree("energyAdded", ch.EnergyAdded)
		if l, ok := folded["soclimit"].(float64); ok {
			if ch.LimitPercent == nil || *ch.LimitPercent != PercentFromFraction(l) {
				t.Fatalf("socLimit %v read as %v", l, ch.LimitPercent)
			}
		} else if ch.LimitPercent != nil {
			t.Fatalf("no socLimit, but a limit of %v", *ch.LimitPercent)
		}
	})
}

// FuzzParseSignals feeds arbitrary /signals bodies to ParseSignals: never a
// panic; a signal marked ERROR never yields a value; a body that is not JSON
// is an error.
func FuzzParseSignals(f *testing.F) {
	f.Add([]byte(`{"data":[{"attributes":{"code":"charge-ischargingportflapopen","status":{"value":"SUCCESS"},"body":{"value":true}},"meta":{"oemUpdatedAt":1752104118549}}]}`))
	f.Add([]byte(`{"data":[{"attributes":{"code":"charge-ischargingportflapopen","status":{"value":"ERROR","error":{"type":"VEHICLE_STATE"}},"body":{"isOpen":true}}}]}`))
	f.Add([]byte(`{"data":[{"attributes":{"code":"charge-chargelimits","status":{"value":"SUCCESS"},"body":{"values":[{"type":"GLOBAL","limit":80}]}},"meta":{"oemUpdatedAt":"2026-11-30T10:00:00Z"}}]}`))
	f.Add([]byte(`{"data":[{"attributes":{"code":"charge-energyadded","body":{"value":1500,"unit":"Wh"}}}]}`))
	f.Add([]byte(`{"data":[]}`))
	f.Add([]byte(`{"data":[{"attributes":{"code":"charge-ischargingcablelatched","body":{"value":"yes"}}}]}`))
	f.Add([]byte(`{"data":`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := ParseSignals(body)
		if err != nil {
			if json.Valid(body) && bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
				var ute *json.UnmarshalTypeError
				if !errors.As(err, &ute) {
					t.Fatalf("valid JSON object refused with %v", err)
				}
			}
			return
		}
		var doc struct {
			Data []struct {
				Attributes struct {
					Status struct{ Value string } `json:"status"`
				} `json:"attributes"`
			} `json:"data"`
		}
		if json.Unmarshal(body, &doc) == nil && len(doc.Data) > 0 {
			allFailed := true
			for _, d := range doc.Data {
				allFailed = allFailed && strings.EqualFold(d.Attributes.Status.Value, "ERROR")
			}
			if allFailed && (st.DoorOpen != nil || st.PluggedIn != nil || st.Latch != nil || st.Charging != nil || st.LimitPercent != nil || st.EnergyAdded != nil) {
				t.Fatalf("every signal failed, yet %+v", st)
			}
		}
	})
}

// FuzzCommandOutcome feeds arbitrary 200 and 202 bodies of a v3 door command
// to commandOutcome: never a panic, and success only with a final SUCCESS (or
// an empty 200).
func FuzzCommandOutcome(f *testing.F) {
	f.Add(200, []byte(`{"data":{"type":"command-execution","attributes":{"status":{"value":"SUCCESS"}}}}`))
	f.Add(202, []byte("{\"data\":{\"attributes\":{\"status\":{\"value\":\"PENDING\"}}}}\n{\"data\":{\"attributes\":{\"status\":{\"value\":\"FAILED\",\"error\":{\"type\":\"VEHICLE_STATE\",\"code\":\"ASLEEP\"}}}}}\n"))
	f.Add(202, []byte("data: {\"data\":{\"attributes\":{\"status\":{\"value\":\"PENDING\"}}}}\n\ndata: {\"data\":{\"attributes\":{\"status\":{\"value\":\"SUCCESS\"}}}}\n\n"))
	f.Add(202, []byte(`{"data":{"attributes":{"status":{"value":"PENDING"}}}}{"data":{"attr`))
	f.Add(200, []byte(``))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		err := commandOutcome(response{status: status, requestID: "r", body: body})
		if err == nil && len(bytes.TrimSpace(body)) > 0 && !bytes.Contains(bytes.ToUpper(body), []byte("SUCCE")) {
			t.Fatalf("success without SUCCESS in %q", body)
		}
	})
}

// FuzzTokenStoreLoad writes arbitrary bytes as DATA_DIR/token.json.
// LoadObtained must give an error or a token with a refresh token (a file
// without one is ErrNoToken), never quote the refresh token in an error, and
// what it loads must save and load back unchanged.
func FuzzTokenStoreLoad(f *testing.F) {
	f.Add([]byte(`{"access_token":"at","token_type":"Bearer","refresh_token":"rt","expiry":"2025-06-01T12:00:00Z","obtained_at":"2025-05-01T00:00:00Z"}`))
	f.Add([]byte(`{"refresh_token":"rt"}`))
	f.Add([]byte(`{"access_token":"at"}`))
	f.Add([]byte(`{"refresh_token":""}`))
	f.Add([]byte(`{"refresh_token":"rt","expiry":"not a time"}`))
	f.Add([]byte(`{"refresh_token":"rt","expiry":"0000-01-01T00:00:00+01:00"}`))
	f.Add([]byte(`{"refresh_token":"rt","expiry":"9999-12-31T23:59:59-01:00"}`))
	f.Add([]byte(`{"refresh_token":42}`))
	f.Add([]byte(`{"refresh_token":"rt",`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(""))
	f.Add([]byte("\xff\xfe\x00"))
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		s := NewTokenStore(dir)
		if err := os.WriteFile(s.Path(), content, 0o600); err != nil {
			t.Fatal(err)
		}
		tok, obtained, err := s.LoadObtained()
		if err != nil {
			if tok != nil || !obtained.IsZero() {
				t.Fatalf("LoadObtained returned %+v, %v together with error %v", tok, obtained, err)
			}
		} else if tok == nil || tok.RefreshToken == "" {
			t.Fatalf("LoadObtained returned %+v without an error", tok)
		}

		// An error never quotes the refresh token, whatever follows it in
		// the file.
		const marker = "rt_FUZZ_SECRET_7f3a9c"
		if !bytes.Contains(content, []byte("FUZZ_SECRET")) {
			withSecret := append([]byte(`{"refresh_token":"`+marker+`",`), content...)
			if err := os.WriteFile(s.Path(), withSecret, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Load(); err != nil && strings.Contains(err.Error(), "FUZZ_SECRET") {
				t.Fatalf("error quotes the refresh token: %v", err)
			}
		}

		if err != nil {
			return
		}
		// What loads, saves and loads back the same (a time whose UTC year
		// is outside JSON's 0-9999 cannot be written back, and says so).
		if err := s.SaveObtained(tok, obtained); err != nil {
			if fuzzYearInRange(tok.Expiry) && fuzzYearInRange(obtained) {
				t.Fatalf("SaveObtained of a loaded token: %v", err)
			}
			return
		}
		back, backObtained, err := s.LoadObtained()
		if err != nil {
			t.Fatalf("load after save: %v", err)
		}
		if back.AccessToken != tok.AccessToken || back.TokenType != tok.TokenType ||
			back.RefreshToken != tok.RefreshToken || !back.Expiry.Equal(tok.Expiry) || !backObtained.Equal(obtained) {
			t.Fatalf("save and load changed the token:\n%+v %v\n%+v %v", tok, obtained, back, backObtained)
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
			t.Fatalf("after save the store directory holds %d entries (%v), want only %s", len(entries), err, TokenFile)
		}
	})
}

func fuzzYearInRange(t time.Time) bool {
	y := t.UTC().Year()
	return 0 <= y && y <= 9999
}
