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

// Error types Smartcar documents (the same in v2.0 and v3), plus TypeOAuth for
// failures of the token endpoint. Callers branch on these, so they are named
// once here.
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
	// CodeInvalidClient is the OAuth error for a client id or secret the
	// token endpoint does not accept.
	CodeInvalidClient = "invalid_client"
	// CodeUnauthorizedClient is the OAuth error for a client not allowed to
	// use the grant it asked for (e.g. v2 credentials on the v3 endpoint).
	CodeUnauthorizedClient = "unauthorized_client"
)

// RequestIDHeader carries Smartcar's request id on every response.
const RequestIDHeader = "SC-Request-Id"

// Error is a Smartcar error: the v2.0 error body, the first error of v3's
// envelope, or the OAuth {error, error_description} body of a token endpoint. It never carries a token or secret: it is built
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

// IsInvalidGrant reports whether err says the refresh token is dead: the
// user has to re-authorize.
func IsInvalidGrant(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == TypeOAuth && e.Code == CodeInvalidGrant
}

// IsLoginRefused reports whether err says Smartcar refused the login itself,
// which no retry fixes: a dead refresh token (v2.0), or API credentials the
// token endpoint does not accept (either generation).
func IsLoginRefused(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Type != TypeOAuth {
		return false
	}
	switch e.Code {
	case CodeInvalidGrant, CodeInvalidClient, CodeUnauthorizedClient:
		return true
	}
	return false
}

// LoginAdvice says, for a refused login, what the user must do.
func LoginAdvice(err error) string {
	if IsInvalidGrant(err) {
		return "Smartcar refused the login (the refresh token is no longer valid): run `smartcar2mqtt auth` to log in again; a running daemon picks up the new login by itself"
	}
	return "Smartcar refused the API credentials: check SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET against the Smartcar dashboard (API v3: Configuration → API Credentials), then restart"
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
	if env, ok := parseEnvelope(body); ok {
		e.fillV3(env)
		return e
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

// v3Error is one entry of API v3's error envelope,
// {"errors":[{"status","type","code","title","detail","resolution","suggestedUserMessage"}]}.
type v3Error struct {
	Status               json.RawMessage `json:"status"` // a string in the docs; a number is accepted
	Type                 string          `json:"type"`
	Code                 *string         `json:"code"`
	Title                string          `json:"title"`
	Detail               string          `json:"detail"`
	Resolution           json.RawMessage `json:"resolution"`
	SuggestedUserMessage string          `json:"suggestedUserMessage"`
	DocURL               *string         `json:"docURL"`
}

// parseEnvelope reads API v3's error envelope; ok is false for any other body.
func parseEnvelope(body []byte) (v3Error, bool) {
	var env struct {
		Errors []v3Error `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Errors) == 0 || env.Errors[0].Type == "" {
		return v3Error{}, false
	}
	return env.Errors[0], true
}

// fillV3 copies the first error of a v3 envelope into e.
func (e *Error) fillV3(v v3Error) {
	e.Type = v.Type
	if v.Code != nil {
		e.Code = *v.Code
	}
	e.Description = v.Detail
	if e.Description == "" {
		e.Description = v.Title
	}
	e.Resolution = resolutionType(v.Resolution)
	e.SuggestedUserMessage = v.SuggestedUserMessage
	if v.DocURL != nil {
		e.DocURL = *v.DocURL
	}
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

// ErrNoChargePortCommand says Smartcar has no charge port command for the
// vehicle (API v3 answers 404 on the command's path, or 501 COMPATIBILITY;
// v2.0 answers 501): asking again can only fail the same way. It is wrapped
// together with Smartcar's *Error.
var ErrNoChargePortCommand = errors.New("Smartcar offers no charge port command for this vehicle")

// TypeAPIRetired is the *Error type the client gives a v2.0 answer meaning
// Smartcar has switched API v2.0 off for this application (410 Gone, or 404
// on a path that worked before). It is the daemon's own classification, not
// a type Smartcar sends.
const TypeAPIRetired = "API_RETIRED"

// V2RetiredAdvice is what a user whose app lost API v2.0 must do.
const V2RetiredAdvice = "Smartcar has retired API v2.0 for this application. Move to API v3: in the Smartcar dashboard create API credentials (Configuration → API Credentials; the client id starts with client_), set SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET to them and SMARTCAR_APPLICATION_ID to the Application ID, restart, and run smartcar2mqtt auth once. Your Home Assistant entities stay as they are"

// IsV2Retired reports whether err says Smartcar no longer serves API v2.0 to
// this application.
func IsV2Retired(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == TypeAPIRetired
}
