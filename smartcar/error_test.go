package smartcar

import (
	"errors"
	"fmt"
	"net/http"
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
