package smartcar

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/oauth2"
)

// Error types Smartcar documents for v2.0, plus TypeOAuth for failures of the
// token endpoint. Callers branch on these, so they are named once here.
const (
	TypeAuthentication   = "AUTHENTICATION"
	TypePermission       = "PERMISSION"
	TypeVehicleState     = "VEHICLE_STATE"
	TypeRateLimit        = "RATE_LIMIT"
	TypeServer           = "SERVER"
	TypeUpstream         = "UPSTREAM"
	TypeCompatibility    = "COMPATIBILITY"
	TypeResourceNotFound = "RESOURCE_NOT_FOUND"
	TypeValidation       = "VALIDATION"
	TypeOAuth            = "OAUTH"

	// CodeInvalidGrant is the OAuth error for a dead refresh token: the user
	// must run Connect again.
	CodeInvalidGrant = "invalid_grant"
)

// RequestIDHeader carries Smartcar's request id on every response.
const RequestIDHeader = "SC-Request-Id"

// Error is Smartcar's v2.0 error body, or the OAuth {error, error_description}
// body of the token endpoint. It never carries a token or secret: it is built
// from named fields only, never from a raw request.
type Error struct {
	StatusCode           int
	Type                 string // e.g. VEHICLE_STATE, RATE_LIMIT; "OAUTH" for token endpoint errors
	Code                 string // e.g. ASLEEP; for OAuth errors the `error` field, e.g. invalid_grant
	Description          string
	Resolution           string // resolution.type, e.g. RETRY_LATER, REAUTHENTICATE
	SuggestedUserMessage string
	DocURL               string
	RequestID            string        // body requestId, else SC-Request-Id header
	RetryAfter           time.Duration // from the Retry-After header (429)
}

// Error renders "smartcar: TYPE:CODE (status): description [request id …]".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("smartcar: ")
	if e.Type != "" {
		b.WriteString(e.Type)
	} else {
		b.WriteString("HTTP")
	}
	if e.Code != "" {
		b.WriteString(":")
		b.WriteString(e.Code)
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (%d)", e.StatusCode)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.RequestID != "" {
		b.WriteString(" [request id ")
		b.WriteString(e.RequestID)
		b.WriteString("]")
	}
	return b.String()
}

// IsInvalidGrant reports whether err says the refresh token is dead, the one
// failure no retry can fix: the user has to re-authorize.
func IsInvalidGrant(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == TypeOAuth && e.Code == CodeInvalidGrant
}

// errorBody is the wire shape of a v2.0 error. Code and resolution.type are
// documented as nullable, and resolution has been a bare string in older
// responses, so it is decoded leniently.
type errorBody struct {
	Type                 string          `json:"type"`
	Code                 *string         `json:"code"`
	Description          string          `json:"description"`
	DocURL               *string         `json:"docURL"`
	StatusCode           int             `json:"statusCode"`
	RequestID            string          `json:"requestId"`
	Resolution           json.RawMessage `json:"resolution"`
	SuggestedUserMessage string          `json:"suggestedUserMessage"`

	// v1 / OAuth style bodies.
	Err              string `json:"error"`
	Message          string `json:"message"`
	ErrorDescription string `json:"error_description"`
}

// maxErrorSnippet bounds how much of a non-JSON error body reaches an error
// string: enough to recognise a proxy's page, not enough to flood a log.
const maxErrorSnippet = 200

// newHTTPError builds the *Error for a non-2xx response from its status,
// headers and (already read) body. now anchors an HTTP-date Retry-After.
func newHTTPError(status int, h http.Header, body []byte, now time.Time) *Error {
	e := &Error{
		StatusCode: status,
		RequestID:  h.Get(RequestIDHeader),
		RetryAfter: parseRetryAfter(h.Get("Retry-After"), now),
	}
	var b errorBody
	if err := json.Unmarshal(body, &b); err != nil || !b.isError() {
		// Not Smartcar's body (a proxy, a load balancer): keep what can be
		// said safely.
		e.Description = http.StatusText(status)
		if s := printable(string(body), maxErrorSnippet, ""); s != "" {
			e.Description += ": " + s
		}
		return e
	}
	e.fill(b)
	return e
}

// isError reports whether b looks like an error body at all.
func (b errorBody) isError() bool { return b.Type != "" || b.Err != "" }

// fill copies the decoded body into e; body fields win over headers.
func (e *Error) fill(b errorBody) {
	if b.Type != "" {
		e.Type = b.Type
		e.Description = b.Description
		e.SuggestedUserMessage = b.SuggestedUserMessage
		e.Resolution = resolutionType(b.Resolution)
		if b.Code != nil {
			e.Code = *b.Code
		}
		if b.DocURL != nil {
			e.DocURL = *b.DocURL
		}
	} else {
		e.Type = b.Err
		e.Description = b.Message
		if b.ErrorDescription != "" {
			e.Description = b.ErrorDescription
		}
	}
	if b.RequestID != "" {
		e.RequestID = b.RequestID
	}
}

// redact removes secret from every free-text field. Smartcar never echoes a
// token, but a misconfigured proxy in between might.
func (e *Error) redact(secret string) {
	if secret == "" {
		return
	}
	for _, f := range []*string{&e.Description, &e.SuggestedUserMessage, &e.Type, &e.Code, &e.Resolution, &e.DocURL, &e.RequestID} {
		*f = strings.ReplaceAll(*f, secret, "[REDACTED]")
	}
}

// resolutionType accepts {"type": "..."} (current), "..." (older) or null.
func resolutionType(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var obj struct {
		Type *string `json:"type"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Type != nil {
		return *obj.Type
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// printable makes text from a server fit for one log or terminal line: at
// most limit bytes of it (more is appended when it was cut), valid UTF-8, no
// control characters (so no escape sequences), each run of white space one
// space.
func printable(s string, limit int, more string) string {
	s = strings.TrimSpace(s)
	cut := len(s) > limit
	if cut {
		s = s[:limit] // a rune split here is invalid UTF-8, dropped below
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.ToValidUTF8(s, ""))
	s = strings.Join(strings.Fields(s), " ")
	if cut && s != "" {
		s += more
	}
	return s
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date
// (RFC 9110 §10.2.3). Anything else, or a time in the past, is zero.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(math.MaxInt64/time.Second) {
			return math.MaxInt64 // saturate as Time.Sub does for a date: never wrap to a short wait
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// oauthError turns a token endpoint failure into *Error. The raw response
// body is deliberately dropped: oauth2.RetrieveError.Error() prints it, and a
// token endpoint is exactly where a body may echo a credential.
//
// secrets (the refresh token or code that was sent, the client secret) are
// removed from the server's free text, so they cannot reach a log line.
func oauthError(err error, secrets ...string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	e := &Error{
		Type:        TypeOAuth,
		Code:        re.ErrorCode,
		Description: re.ErrorDescription,
	}
	if re.Response != nil {
		e.StatusCode = re.Response.StatusCode
		e.RequestID = re.Response.Header.Get(RequestIDHeader)
		if e.Description == "" && e.Code == "" {
			e.Description = http.StatusText(re.Response.StatusCode)
		}
	}
	for _, secret := range secrets {
		e.redact(secret)
	}
	return e
}
