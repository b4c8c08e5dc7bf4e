package smartcar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"Sun, 01 Jun 2025 12:00:30 GMT", 30 * time.Second},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNewHTTPError(t *testing.T) {
	h := http.Header{}
	h.Set(RequestIDHeader, "hdr-id")
	tests := []struct {
		name string
		body string
		want Error
	}{
		{"v2 full", `{"type":"VEHICLE_STATE","code":"ASLEEP","description":"asleep","docURL":"https://d","statusCode":409,
			"requestId":"body-id","resolution":{"type":null},"suggestedUserMessage":"wake it"}`,
			Error{StatusCode: 409, Type: "VEHICLE_STATE", Code: "ASLEEP", Description: "asleep", DocURL: "https://d",
				RequestID: "body-id", SuggestedUserMessage: "wake it"}},
		{"null code, resolution object", `{"type":"AUTHENTICATION","code":null,"description":"d","docURL":null,"resolution":{"type":"REAUTHENTICATE"}}`,
			Error{StatusCode: 409, Type: "AUTHENTICATION", Description: "d", Resolution: "REAUTHENTICATE", RequestID: "hdr-id"}},
		{"resolution string", `{"type":"SERVER","code":"INTERNAL","description":"d","resolution":"RETRY_LATER"}`,
			Error{StatusCode: 409, Type: "SERVER", Code: "INTERNAL", Description: "d", Resolution: "RETRY_LATER", RequestID: "hdr-id"}},
		{"v1 style", `{"error":"monkeys","message":"yes, really"}`,
			Error{StatusCode: 409, Type: "monkeys", Description: "yes, really", RequestID: "hdr-id"}},
		{"json without error fields", `{"hello":"world"}`,
			Error{StatusCode: 409, Description: `Conflict: {"hello":"world"}`, RequestID: "hdr-id"}},
		{"empty", ``, Error{StatusCode: 409, Description: "Conflict", RequestID: "hdr-id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newHTTPError(409, h, []byte(tt.body), time.Now())
			if *got != tt.want {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{StatusCode: 409, Type: "VEHICLE_STATE", Code: "ASLEEP", Description: "zzz", RequestID: "r1"},
			"smartcar: VEHICLE_STATE:ASLEEP (409): zzz [request id r1]"},
		{Error{StatusCode: 429, Type: "RATE_LIMIT", Code: "VEHICLE", RetryAfter: time.Minute},
			"smartcar: RATE_LIMIT:VEHICLE (429) (retry after 1m0s)"},
		{Error{StatusCode: 400, Type: "OAUTH", Code: "invalid_grant", Description: "used"},
			"smartcar: OAUTH:invalid_grant (400): used"},
		{Error{StatusCode: 503, Description: "Service Unavailable"},
			"smartcar: HTTP (503): Service Unavailable"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

func TestOAuthErrorDropsRawBody(t *testing.T) {
	resp := &http.Response{StatusCode: 400, Header: http.Header{}}
	resp.Header.Set(RequestIDHeader, "rid")
	re := &oauth2.RetrieveError{
		Response:         resp,
		Body:             []byte(`{"error":"invalid_grant","error_description":"bad","echo":"refresh_token=SECRET"}`),
		ErrorCode:        "invalid_grant",
		ErrorDescription: "bad",
	}
	err := fmt.Errorf("refresh: %w", oauthError(re))
	want := Error{StatusCode: 400, Type: TypeOAuth, Code: "invalid_grant", Description: "bad", RequestID: "rid"}
	var se *Error
	if !errors.As(err, &se) || *se != want {
		t.Fatalf("got %v, want %+v", err, want)
	}
	if !IsInvalidGrant(err) {
		t.Error("IsInvalidGrant = false")
	}

	// Non-JSON token endpoint failure: status text, no body.
	re = &oauth2.RetrieveError{Response: &http.Response{StatusCode: 502, Header: http.Header{}}, Body: []byte("SECRET")}
	se = oauthError(re).(*Error)
	if se.Description != "Bad Gateway" || se.Code != "" {
		t.Errorf("got %+v", se)
	}
}

func TestPrintable(t *testing.T) {
	for _, c := range []struct {
		in    string
		limit int
		more  string
		want  string
	}{
		{"  plain text  ", 300, "…", "plain text"},
		{"red \x1b[31mflag\x1b[0m\r\nnext\tline", 300, "", "red [31mflag [0m next line"},
		{"bad \xff utf-8", 300, "", "bad utf-8"},
		{"abcdef", 4, "…", "abcd…"},
		{"abcd", 4, "…", "abcd"},
		{"ab€", 4, "…", "ab…"}, // € is 3 bytes: cut inside it, the partial rune dropped
		{"   \x00   ", 300, "…", ""},
	} {
		if got := printable(c.in, c.limit, c.more); got != c.want {
			t.Errorf("printable(%q, %d, %q) = %q, want %q", c.in, c.limit, c.more, got, c.want)
		}
	}
}

// failingTokens is a login that cannot give a token.
type failingTokens struct{ err error }

func (f failingTokens) Token() (*oauth2.Token, error) { return nil, f.err }
func (failingTokens) Invalidate()                     {}

// TestDescribeRealFailures words failures produced by real failing
// transports, as the client returns them: what a person reads must name the
// failure and must never be Go's error syntax, a URL or a token.
func TestDescribeRealFailures(t *testing.T) {
	const token = "access-Tok3n-never-shown"
	quick := []Option{WithBackoff(time.Millisecond)}

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/v3"
	ln.Close()

	// A server that never answers.
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) }) // runs first: the handlers end, then the server closes

	// A server whose certificate nobody here trusts.
	untrusted := httptest.NewUnstartedServer(http.NotFoundHandler())
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	untrusted.StartTLS()
	t.Cleanup(untrusted.Close)

	// A server that hangs up without answering.
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(hangUp.Close)

	// A server with Smartcar's answers: an error, a proxy's page, an
	// unreadable body, a command that never reports its end.
	answers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/asleep/"):
			w.Header().Set(RequestIDHeader, "req-1")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"errors":[{"status":"409","type":"VEHICLE_STATE","code":"ASLEEP","detail":"The vehicle is asleep."}]}`)
		case strings.HasPrefix(r.URL.Path, "/proxy/"):
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, `<html><body>"bad gateway"</body></html>`)
		case strings.HasPrefix(r.URL.Path, "/garbage/"):
			fmt.Fprint(w, `{"data": [`)
		case strings.HasPrefix(r.URL.Path, "/pending/"):
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprint(w, `{"data":{"attributes":{"status":{"value":"PENDING"}}}}`)
		}
	}))
	t.Cleanup(answers.Close)

	_, noDir := os.CreateTemp(filepath.Join(t.TempDir(), "gone"), "token")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	v := Vehicle{ID: "V1", Make: "TESLA"}
	read := func(c *Client, ctx context.Context) error { _, err := c.Read(ctx, v); return err }
	open := func(c *Client, ctx context.Context) error { return c.ChargePortDoor(ctx, v, Open) }
	static := &staticTokens{access: token}
	for _, tc := range []struct {
		name     string
		client   *Client
		ctx      context.Context
		call     func(*Client, context.Context) error
		command  bool
		typ      string
		code     string
		contains string
	}{
		{"closed port, read", NewV3Client(closed, static, quick...), nil, read, false, TypeNetwork, "CONNECTION_REFUSED", "refused"},
		{"closed port, command: nothing was sent", NewV3Client(closed, static, quick...), nil, open, true, TypeNetwork, "CONNECTION_REFUSED", "refused"},
		{"no answer in time, read", NewV3Client(hang.URL+"/v3", static, append(quick, WithTimeout(50*time.Millisecond))...), nil, read, false,
			TypeTimeout, "REQUEST", "did not answer within"},
		{"no answer in time, command", NewV3Client(hang.URL+"/v3", static, append(quick, WithTimeout(50*time.Millisecond))...), nil, open, true,
			TypeTimeout, CodeOutcomeUnknown, "may or may not have moved the door"},
		{"untrusted certificate, read", NewV3Client(untrusted.URL+"/v3", static, quick...), nil, read, false, TypeNetwork, "TLS", "authority"},
		{"untrusted certificate, command: nothing was sent", NewV3Client(untrusted.URL+"/v3", static, quick...), nil, open, true, TypeNetwork, "TLS", "not secure"},
		{"unresolvable name", NewV3Client("http://smartcar2mqtt-test.invalid/v3", static, quick...), nil, read, false, TypeNetwork, "DNS", "looked up"},
		{"hung up, read", NewV3Client(hangUp.URL+"/v3", static, quick...), nil, read, false, TypeNetwork, "CONNECTION_RESET", "broke off"},
		{"hung up, command", NewV3Client(hangUp.URL+"/v3", static, quick...), nil, open, true, TypeNetwork, CodeOutcomeUnknown, "may or may not"},
		{"answer ended before the command did", NewV3Client(answers.URL+"/pending", static, quick...), nil, open, true,
			TypeCommand, CodeOutcomeUnknown, "ended before"},
		{"Smartcar's own error", NewV3Client(answers.URL+"/asleep", static, quick...), nil, read, false, TypeVehicleState, "ASLEEP", "asleep"},
		{"a proxy's error page", NewV3Client(answers.URL+"/proxy", static, quick...), nil, read, false, TypeHTTP, "502", "502 Bad Gateway"},
		{"an unreadable answer", NewV3Client(answers.URL+"/garbage", static, quick...), nil, read, false, TypeResponse, "INVALID", "could not be read"},
		{"stopping", NewV3Client(answers.URL+"/asleep", static, quick...), canceled, open, true, TypeCanceled, "SHUTDOWN", "stopping"},
		{"no login", NewV3Client(answers.URL+"/asleep", failingTokens{fmt.Errorf("load token: %w", ErrNoToken)}, quick...), nil, read, false,
			TypeLogin, "NO_TOKEN", "smartcar2mqtt auth"},
		{"DATA_DIR refuses the login", NewV3Client(answers.URL+"/asleep", failingTokens{fmt.Errorf("persist refreshed token: save token: %w", noDir)}, quick...), nil, open, true,
			TypeLocal, "DATA_DIR", "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = ctxT(t)
			}
			start := time.Now()
			err := tc.call(tc.client, ctx)
			if err == nil {
				t.Fatal("the call did not fail")
			}
			describe := Describe
			if tc.command {
				describe = DescribeCommand
			}
			f := describe(err, time.Since(start))
			t.Logf("%s:%s %q\n  from %v", f.Type, f.Code, f.Description, err)
			if f.Type != tc.typ || f.Code != tc.code {
				t.Errorf("%s:%s, want %s:%s (from %v)", f.Type, f.Code, tc.typ, tc.code, err)
			}
			if !strings.Contains(f.Description, tc.contains) {
				t.Errorf("description %q does not say %q", f.Description, tc.contains)
			}
			checkSentence(t, f.Description, token)
		})
	}
}

// checkSentence fails when a description is not fit for a person: Go's error
// syntax, a URL, a token.
func checkSentence(t *testing.T, s string, secrets ...string) {
	t.Helper()
	for _, bad := range append([]string{`"`, "dial tcp", "Post ", "Get ", "://", "%!", "context deadline exceeded"}, secrets...) {
		if strings.Contains(s, bad) {
			t.Errorf("description %q contains %q", s, bad)
		}
	}
	if s == "" {
		t.Error("empty description")
	}
}

// TestDescribeUnreachable: a network without a route cannot be made on
// demand, so the error is built as the dialer builds it.
func TestDescribeUnreachable(t *testing.T) {
	err := fmt.Errorf("read charge state of V1: %w", &url.Error{Op: "Get", URL: "https://vehicle.api.smartcar.com/v3/vehicles/V1/signals",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}})
	f := DescribeCommand(err, time.Second)
	if f.Type != TypeNetwork || f.Code != "UNREACHABLE" {
		t.Errorf("%s:%s, want NETWORK:UNREACHABLE", f.Type, f.Code)
	}
	checkSentence(t, f.Description)
}

// TestDescribeTimeoutSaysHowLong: the wait is what a person can compare with
// SMARTCAR_TIMEOUT.
func TestDescribeTimeoutSaysHowLong(t *testing.T) {
	err := fmt.Errorf("open charge port of V1: %w", &url.Error{Op: "Post", URL: "https://x/v3", Err: context.DeadlineExceeded})
	for waited, want := range map[time.Duration]string{
		5*time.Minute + 10*time.Second + 3*time.Millisecond: "Smartcar did not answer within 5m10s: the car may or may not have moved the door",
		51 * time.Millisecond:                               "Smartcar did not answer within 51ms: the car may or may not have moved the door",
		0:                                                   "Smartcar did not answer in time: the car may or may not have moved the door",
	} {
		if got := DescribeCommand(err, waited).Description; got != want {
			t.Errorf("after %s: %q, want %q", waited, got, want)
		}
	}
}

// TestDescribeSmartcarErrors: Smartcar's own errors keep their words, and
// always come with a code.
func TestDescribeSmartcarErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Failure
	}{
		{&Error{StatusCode: 409, Type: TypeVehicleState, Code: "ASLEEP", Description: "asleep", RequestID: "r1", Resolution: "RETRY_LATER"},
			Failure{Type: TypeVehicleState, Code: "ASLEEP", Description: "asleep", RequestID: "r1", Resolution: "RETRY_LATER", StatusCode: 409}},
		{&Error{StatusCode: 500, Type: TypeServer, SuggestedUserMessage: "Try again later."},
			Failure{Type: TypeServer, Code: CodeUnspecified, Description: "Try again later.", StatusCode: 500}},
		{&Error{StatusCode: 503, Description: "Service Unavailable: <html>"},
			Failure{Type: TypeHTTP, Code: "503", Description: "Smartcar, or a proxy on the way, answered 503 Service Unavailable without Smartcar's error details", StatusCode: 503}},
		{&Error{StatusCode: 429, Type: TypeRateLimit, Code: "VEHICLE", Description: "Too many requests.", RetryAfter: 90 * time.Second},
			Failure{Type: TypeRateLimit, Code: "VEHICLE", Description: "Too many requests. (Smartcar asks to wait 1m30s before the next call)", StatusCode: 429}},
		{fmt.Errorf("refresh access token: %w", &Error{StatusCode: 400, Type: TypeOAuth, Code: CodeInvalidGrant, Description: "bad"}),
			Failure{Type: TypeOAuth, Code: CodeInvalidGrant, Description: LoginAdvice(&Error{Type: TypeOAuth, Code: CodeInvalidGrant}), StatusCode: 400}},
		{fmt.Errorf("%w: %w", ErrNoChargePortCommand, &Error{StatusCode: 404, Type: TypeResourceNotFound, Code: "PATH", Description: "Not found."}),
			Failure{Type: TypeResourceNotFound, Code: "PATH", Description: ErrNoChargePortCommand.Error(), StatusCode: 404}},
		{errors.New("something new"),
			Failure{Type: TypeInternal, Code: "UNEXPECTED", Description: "the call failed in a way smartcar2mqtt does not recognise; the daemon's debug log has the details"}},
		{nil, Failure{}},
	} {
		if got := Describe(tc.err, time.Second); got != tc.want {
			t.Errorf("Describe(%v)\n got %+v\nwant %+v", tc.err, got, tc.want)
		}
	}
}
