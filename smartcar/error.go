package smartcar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
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
		return "Smartcar refused the login (the refresh token is no longer valid): connect again (Connect a car on the web page, or smartcar2mqtt auth); a running daemon picks up the new login by itself"
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
const V2RetiredAdvice = "Smartcar has retired API v2.0 for this application. Move to API v3: in the Smartcar dashboard create API credentials (Configuration → API Credentials; the client id starts with client_), set SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET to them and SMARTCAR_APPLICATION_ID to the Application ID, restart, and connect the car once (Connect a car on the web page, or smartcar2mqtt auth). Your Home Assistant entities stay as they are"

// IsV2Retired reports whether err says Smartcar no longer serves API v2.0 to
// this application.
func IsV2Retired(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == TypeAPIRetired
}

// Types the daemon gives failures that are not Smartcar's own errors, so
// that every failure reads TYPE:CODE: Smartcar's are looked up in its error
// reference, these in the Home Assistant guide (docs/home-assistant.md).
const (
	TypeNetwork  = "NETWORK"  // no answer: the connection failed
	TypeTimeout  = "TIMEOUT"  // no answer within the time allowed
	TypeCanceled = "CANCELED" // the daemon stopped before the answer
	TypeResponse = "RESPONSE" // an answer that could not be read
	TypeCommand  = "COMMAND"  // a door command that did not finish (also v3's failed command without details)
	TypeLogin    = "LOGIN"    // no login to call Smartcar with
	TypeLocal    = "LOCAL"    // this machine, not Smartcar, failed
	TypeHTTP     = "HTTP"     // an error status without Smartcar's body; the code is the status
	TypeInternal = "INTERNAL" // a failure Describe does not know

	// CodeOutcomeUnknown marks a door command that may or may not have
	// reached the car; its type says why nobody knows.
	CodeOutcomeUnknown = "OUTCOME_UNKNOWN"

	// CodeUnspecified completes a Smartcar error that came without a code.
	CodeUnspecified = "UNSPECIFIED"
)

// Codes of the daemon's own failure types.
const (
	codeDNS               = "DNS"
	codeConnectionRefused = "CONNECTION_REFUSED"
	codeUnreachable       = "UNREACHABLE"
	codeTLS               = "TLS"
	codeConnectionReset   = "CONNECTION_RESET"
	codeNetworkFailed     = "FAILED"
	codeRequest           = "REQUEST"
	codeConnect           = "CONNECT"
	codeShutdown          = "SHUTDOWN"
	codeInvalid           = "INVALID"
	codeUnfinished        = "UNFINISHED"
	codeNoToken           = "NO_TOKEN"
	codeDataDir           = "DATA_DIR"
	codeUnexpected        = "UNEXPECTED"
)

// Failure is a failed call as a person reads it in Home Assistant. Type and
// Code are never empty, and Description is a sentence: it never holds a URL,
// a token or Go's error syntax (the log's debug line has the error itself).
type Failure struct {
	Type        string
	Code        string
	Description string
	RequestID   string // Smartcar's, for a support request
	Resolution  string // Smartcar's resolution type, e.g. RETRY_LATER
	StatusCode  int    // 0: Smartcar did not answer
}

// Describe says what went wrong with a call that failed with err after the
// caller waited waited for it (which is what a timeout is reported as; zero
// when not known). A nil err is the zero Failure.
func Describe(err error, waited time.Duration) Failure {
	if err == nil {
		return Failure{}
	}
	var e *Error
	if errors.As(err, &e) {
		return describeError(err, e)
	}
	if f, ok := describeTransport(err, waited); ok {
		return f
	}
	var (
		syntax   *json.SyntaxError
		mismatch *json.UnmarshalTypeError
		path     *fs.PathError
		link     *os.LinkError
	)
	switch {
	case errors.Is(err, ErrNoToken):
		return Failure{Type: TypeLogin, Code: codeNoToken,
			Description: "there is no Smartcar login: connect the car once (Connect a car on the web page, or smartcar2mqtt auth); a running daemon picks the login up by itself"}
	case errors.Is(err, errUnfinishedCommand):
		return Failure{Type: TypeCommand, Code: codeUnfinished,
			Description: "Smartcar's answer ended before the command's result came"}
	case errors.As(err, &syntax), errors.As(err, &mismatch):
		return Failure{Type: TypeResponse, Code: codeInvalid,
			Description: "Smartcar answered, but not in the form its API documents, so the answer could not be read"}
	case errors.As(err, &path), errors.As(err, &link):
		// The only files a call touches are the login's, in DATA_DIR.
		return Failure{Type: TypeLocal, Code: codeDataDir,
			Description: "smartcar2mqtt could not use its files in DATA_DIR (" + osReason(err) + "): check that DATA_DIR is writable and not full"}
	}
	return Failure{Type: TypeInternal, Code: codeUnexpected,
		Description: "the call failed in a way smartcar2mqtt does not recognise; the daemon's debug log has the details"}
}

// DescribeCommand is Describe for a door command: when the command may have
// reached the car without anyone learning the result, the code is
// CodeOutcomeUnknown (the type still says what broke) and the description
// says that the door may have moved.
func DescribeCommand(err error, waited time.Duration) Failure {
	f := Describe(err, waited)
	if !OutcomeUnknown(err) {
		return f
	}
	f.Code = CodeOutcomeUnknown
	f.Description += ": the car may or may not have moved the door"
	return f
}

// sentNothing reports whether a failure happened before the request could
// leave: no name, no connection, no trusted connection, no login. Such a
// command's outcome is known: nothing happened.
func sentNothing(f Failure) bool {
	switch f.Type + ":" + f.Code {
	case TypeNetwork + ":" + codeDNS, TypeNetwork + ":" + codeConnectionRefused, TypeNetwork + ":" + codeUnreachable,
		TypeNetwork + ":" + codeTLS, TypeTimeout + ":" + codeConnect, TypeLogin + ":" + codeNoToken, TypeLocal + ":" + codeDataDir:
		return true
	}
	return false
}

// describeError words one of Smartcar's errors (or a proxy's error status).
func describeError(err error, e *Error) Failure {
	f := Failure{Type: e.Type, Code: e.Code, Description: e.Description, RequestID: e.RequestID,
		Resolution: e.Resolution, StatusCode: e.StatusCode}
	if f.Description == "" {
		f.Description = e.SuggestedUserMessage
	}
	switch {
	case f.Type == "":
		// Not Smartcar's body: a proxy or a load balancer answered, or
		// Smartcar failed before it could say more.
		f.Type, f.Code = TypeHTTP, strconv.Itoa(e.StatusCode)
		f.Description = fmt.Sprintf("Smartcar, or a proxy on the way, answered %d %s without Smartcar's error details", e.StatusCode, http.StatusText(e.StatusCode))
	case IsLoginRefused(err):
		f.Description = LoginAdvice(err)
	case errors.Is(err, ErrNoChargePortCommand):
		f.Description = ErrNoChargePortCommand.Error()
	}
	if f.Code == "" {
		f.Code = CodeUnspecified
	}
	if f.Description == "" {
		f.Description = "Smartcar gave no description"
	}
	if e.RetryAfter > 0 {
		f.Description += fmt.Sprintf(" (Smartcar asks to wait %s before the next call)", roundWait(e.RetryAfter))
	}
	return f
}

// describeTransport words a failure without an answer from Smartcar; ok is
// false for any other error.
func describeTransport(err error, waited time.Duration) (f Failure, ok bool) {
	var (
		dns *net.DNSError
		ne  net.Error
		op  *net.OpError
		ue  *url.Error
	)
	switch {
	case errors.Is(err, context.Canceled):
		return Failure{Type: TypeCanceled, Code: codeShutdown,
			Description: "smartcar2mqtt was stopping and gave up before Smartcar answered"}, true
	case errors.As(err, &dns):
		// First: a lookup that timed out is still a lookup that failed.
		return Failure{Type: TypeNetwork, Code: codeDNS,
			Description: "Smartcar's address (" + printable(dns.Name, 100, "…") + ") could not be looked up: is the internet connection (DNS) up?"}, true
	}
	if why, isTLS := tlsReason(err); isTLS {
		return Failure{Type: TypeNetwork, Code: codeTLS, Description: "the connection to Smartcar is not secure: " + why}, true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		if errors.As(err, &op) && op.Op == "dial" {
			return Failure{Type: TypeTimeout, Code: codeConnect, Description: "no connection to Smartcar could be made " + within(waited)}, true
		}
		return Failure{Type: TypeTimeout, Code: codeRequest, Description: "Smartcar did not answer " + within(waited)}, true
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Failure{Type: TypeNetwork, Code: codeConnectionRefused,
			Description: "the connection to Smartcar was refused: nothing answers at its address, or a firewall turns the connection away"}, true
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return Failure{Type: TypeNetwork, Code: codeUnreachable,
			Description: "Smartcar cannot be reached from this machine: is its network connection (route, VPN) up?"}, true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Failure{Type: TypeNetwork, Code: codeConnectionReset,
			Description: "the connection to Smartcar broke off before its answer was complete"}, true
	case errors.As(err, &op), errors.As(err, &ue):
		return Failure{Type: TypeNetwork, Code: codeNetworkFailed,
			Description: "the connection to Smartcar failed"}, true
	}
	return Failure{}, false
}

// tlsReason says why a secure connection failed; isTLS is false for other
// errors.
func tlsReason(err error) (why string, isTLS bool) {
	const advice = ". Is a proxy intercepting HTTPS, or are this machine's CA certificates missing or out of date?"
	var (
		authority x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		alert     tls.AlertError
	)
	switch {
	case errors.As(err, &authority):
		return "its certificate is signed by an authority this machine does not trust" + advice, true
	case errors.As(err, &host):
		return "its certificate is for another name" + advice, true
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "its certificate has expired, or this machine's clock is wrong", true
	case errors.As(err, &invalid), errors.As(err, &verify):
		return "its certificate could not be verified" + advice, true
	case errors.As(err, &header):
		return "the other end does not speak HTTPS: does the API URL start with the right scheme and port?", true
	case errors.As(err, &alert):
		return "Smartcar's end refused to set up a secure connection", true
	}
	return "", false
}

// osReason is the operating system's word for why a file operation failed,
// e.g. "permission denied", without the path.
func osReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var path *fs.PathError
	if errors.As(err, &path) {
		return printable(path.Err.Error(), 100, "…")
	}
	return "an unexpected error"
}

// within says how long was waited, when known.
func within(waited time.Duration) string {
	if waited <= 0 {
		return "in time"
	}
	return "within " + roundWait(waited).String()
}

// roundWait rounds a wait to what a person reads: whole seconds, or
// milliseconds under a second.
func roundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
