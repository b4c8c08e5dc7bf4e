package smartcarsim

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// defaultFault maps a status to the error Smartcar documents for it.
func defaultFault(status int) (typ, code string) {
	switch status {
	case http.StatusBadRequest:
		return "VALIDATION", "INVALID_INPUT_FORMAT"
	case http.StatusUnauthorized:
		return "AUTHENTICATION", ""
	case http.StatusForbidden:
		return "PERMISSION", ""
	case http.StatusNotFound:
		return "RESOURCE_NOT_FOUND", "PATH"
	case http.StatusConflict:
		return "VEHICLE_STATE", "ASLEEP"
	case http.StatusTooManyRequests:
		return "RATE_LIMIT", "VEHICLE"
	case http.StatusNotImplemented:
		return "COMPATIBILITY", "MAKE_NOT_COMPATIBLE"
	case http.StatusBadGateway:
		return "UPSTREAM", "UNKNOWN_ISSUE"
	default:
		return "SERVER", "INTERNAL"
	}
}

// description is the simulator's wording for the errors it serves, keyed
// by "TYPE:CODE", falling back to "TYPE".
func description(typ, code string) string {
	switch typ + ":" + code {
	case "RESOURCE_NOT_FOUND:PATH":
		return "No such resource. Check the path."
	case "RESOURCE_NOT_FOUND:VEHICLE":
		return "No vehicle with this id is connected to the application."
	case "RESOURCE_NOT_FOUND:SIGNAL":
		return "The vehicle has no data for this signal."
	case "RESOURCE_NOT_FOUND:VERSION":
		return "Smartcar API v2.0 is retired. Use API v3."
	case "VALIDATION:INVALID_INPUT_FORMAT":
		return "The request body is not valid for this endpoint."
	case "VALIDATION:PARAMETER":
		return "A query parameter is missing or out of range."
	case "VALIDATION:INVALID_USER_ID":
		return "The sc-user-id header is missing or does not name the user who connected this vehicle."
	case "VEHICLE_STATE:ASLEEP":
		return "The vehicle is asleep and cannot perform the request right now."
	case "VEHICLE_STATE:UNREACHABLE":
		return "The vehicle cannot be reached right now."
	case "VEHICLE_STATE:CHARGING_PLUG_CONNECTED":
		return "The charging cable is plugged in, so the vehicle cannot do this."
	case "RATE_LIMIT:VEHICLE":
		return "Too many requests for this vehicle. See the Retry-After header."
	case "RATE_LIMIT:SMARTCAR_API":
		return "The application exceeded its rate limit. Retry later."
	case "SERVER:INTERNAL":
		return "Smartcar had an internal error."
	case "UPSTREAM:UNKNOWN_ISSUE":
		return "The manufacturer's service failed in an unexpected way."
	case "UPSTREAM:NO_RESPONSE":
		return "The manufacturer's service did not answer."
	case "COMPATIBILITY:MAKE_NOT_COMPATIBLE":
		return "This feature is not available for the vehicle's make."
	}
	switch typ {
	case "AUTHENTICATION":
		return "The access token is missing, malformed, invalid or expired."
	case "PERMISSION":
		return "The user did not grant the permission this endpoint needs."
	}
	if code == "" {
		return "Simulated " + typ + " error."
	}
	return "Simulated " + typ + ":" + code + " error."
}

// title is the v3 envelope's short summary of an error type.
func title(typ string) string {
	switch typ {
	case "AUTHENTICATION":
		return "Authentication failed"
	case "PERMISSION":
		return "Permission not granted"
	case "RESOURCE_NOT_FOUND":
		return "Resource not found"
	case "VALIDATION":
		return "Invalid request"
	case "VEHICLE_STATE":
		return "Vehicle state prevents the request"
	case "RATE_LIMIT":
		return "Rate limit exceeded"
	case "SERVER":
		return "Server error"
	case "UPSTREAM":
		return "Manufacturer error"
	case "COMPATIBILITY":
		return "Not supported for this vehicle"
	}
	return "Error"
}

// resolution is resolution.type for an error type; "" sends null.
func resolution(typ string) string {
	switch typ {
	case "RATE_LIMIT", "UPSTREAM", "SERVER":
		return "RETRY_LATER"
	case "PERMISSION":
		return "REAUTHENTICATE"
	}
	return ""
}

// suggestedUserMessage is only sent for the errors a user can wait out.
func suggestedUserMessage(typ string) string {
	switch typ {
	case "VEHICLE_STATE", "RATE_LIMIT", "UPSTREAM":
		return "Your car is temporarily unable to connect. Please try again later."
	}
	return ""
}

// nullable is nil for "", which the error bodies send as null.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// resolutionBody is {"type": …} in both error shapes; a nil Type is null.
type resolutionBody struct {
	Type *string `json:"type"`
}

// v2ErrorBody is Smartcar's v2.0 error shape, nulls included.
type v2ErrorBody struct {
	Type                 string         `json:"type"`
	Code                 *string        `json:"code"`
	Description          string         `json:"description"`
	DocURL               string         `json:"docURL"`
	StatusCode           int            `json:"statusCode"`
	RequestID            string         `json:"requestId"`
	Resolution           resolutionBody `json:"resolution"`
	SuggestedUserMessage string         `json:"suggestedUserMessage,omitempty"`
}

func writeV2Error(w http.ResponseWriter, r *http.Request, status int, typ, code string, retryAfter time.Duration) {
	doc := "https://smartcar.com/docs/errors/api-errors/" + docSlug(typ) + "-errors"
	if code != "" {
		doc += "#" + docSlug(code)
	}
	setRetryAfter(w, retryAfter)
	writeJSON(w, status, v2ErrorBody{
		Type:                 typ,
		Code:                 nullable(code),
		Description:          description(typ, code),
		DocURL:               doc,
		StatusCode:           status,
		RequestID:            requestID(r),
		Resolution:           resolutionBody{Type: nullable(resolution(typ))},
		SuggestedUserMessage: suggestedUserMessage(typ),
	})
}

func docSlug(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "-")) }

// v3ErrorBody is API v3's error envelope: JSON:API error objects.
type v3ErrorBody struct {
	Errors []v3Error `json:"errors"`
}

type v3Error struct {
	Status               string         `json:"status"` // the HTTP status, as a string
	Type                 string         `json:"type"`
	Code                 *string        `json:"code"`
	Title                string         `json:"title"`
	Detail               string         `json:"detail"`
	Resolution           resolutionBody `json:"resolution"`
	SuggestedUserMessage string         `json:"suggestedUserMessage,omitempty"`
}

func writeV3Error(w http.ResponseWriter, status int, typ, code string, retryAfter time.Duration) {
	setRetryAfter(w, retryAfter)
	writeJSON(w, status, v3ErrorBody{Errors: []v3Error{{
		Status:               strconv.Itoa(status),
		Type:                 typ,
		Code:                 nullable(code),
		Title:                title(typ),
		Detail:               description(typ, code),
		Resolution:           resolutionBody{Type: nullable(resolution(typ))},
		SuggestedUserMessage: suggestedUserMessage(typ),
	}}})
}

// oauthErrorBody is RFC 6749's error response, which both token endpoints
// and Connect's redirect use.
type oauthErrorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, oauthErrorBody{Error: code, Description: desc})
}

// isTokenPath reports whether a path is one of the OAuth token endpoints,
// whose errors are OAuth bodies whatever the fault.
func isTokenPath(path string) bool { return path == "/oauth/token" || path == "/oauth2/token" }

func writeFault(w http.ResponseWriter, r *http.Request, f Fault) {
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	switch {
	case f.RawBody != "":
		setRetryAfter(w, f.RetryAfter)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		io.WriteString(w, f.RawBody)
	case f.Type == "OAUTH" || isTokenPath(r.URL.Path):
		setRetryAfter(w, f.RetryAfter)
		code := f.Code
		switch {
		case code != "":
		case f.Type == "OAUTH":
			code = "invalid_grant" // what an OAUTH fault always meant
		default:
			code = defaultOAuthCode(status)
		}
		writeOAuthError(w, status, code, "injected fault")
	default:
		typ, code := f.Type, f.Code
		if typ == "" {
			typ, code = defaultFault(status)
		}
		if strings.HasPrefix(r.URL.Path, "/v3/") {
			writeV3Error(w, status, typ, code, f.RetryAfter)
		} else {
			writeV2Error(w, r, status, typ, code, f.RetryAfter)
		}
	}
}

// defaultOAuthCode is the RFC 6749 error code a token endpoint answers a
// status with.
func defaultOAuthCode(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_client"
	case status == http.StatusServiceUnavailable:
		return "temporarily_unavailable"
	case status >= 500:
		return "server_error"
	}
	return "invalid_grant"
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
