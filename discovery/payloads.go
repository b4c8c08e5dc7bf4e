package discovery

import "time"

// LastErrorPayload is the last-error sensor's state for a failed Smartcar
// call: "TYPE:CODE" (e.g. "VEHICLE_STATE:ASLEEP"), or "TYPE" when Smartcar
// gave no code. Type and code together are what a user can search
// Smartcar's error reference for, and short enough for a sensor state
// (Home Assistant caps states at 255 characters); the rest goes in
// LastErrorAttrs. An empty type means the call did not fail:
// LastErrorNone.
func LastErrorPayload(errType, code string) string {
	switch {
	case errType == "":
		return LastErrorNone
	case code == "":
		return errType
	default:
		return errType + ":" + code
	}
}

// LastErrorAttrs is the JSON published at Topics.LastErrorAttributes and
// shown as the last-error sensor's attributes.
type LastErrorAttrs struct {
	Description string `json:"description"`
	RequestID   string `json:"request_id"` // Smartcar's, for support requests
	At          string `json:"at"`         // TimestampPayload of the failure
}

// TimestampPayload formats t for a timestamp sensor: RFC 3339 in UTC, which
// Home Assistant parses and shows in the user's zone. The zero time means
// "never" and becomes PayloadNone, Home Assistant's "unknown".
func TimestampPayload(t time.Time) string {
	if t.IsZero() {
		return PayloadNone
	}
	return t.UTC().Format(time.RFC3339)
}
