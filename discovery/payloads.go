package discovery

import "time"

// LastErrorPayload is the last-error sensor's state for a failed Smartcar
// call: "TYPE:CODE" (e.g. "VEHICLE_STATE:ASLEEP", or "NETWORK:DNS" for a
// failure the daemon names itself), or "TYPE" alone when there is no code,
// which the bridge never publishes. Type and code together are what a user
// can look up (Smartcar's error reference, or the guide for the daemon's
// own), and short enough for a sensor state (Home Assistant caps states at
// 255 characters); the sentence goes in LastErrorAttrs. An empty type means
// the call did not fail: LastErrorNone.
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
	Description string `json:"description"` // a sentence, never Go's error text
	RequestID   string `json:"request_id"`  // Smartcar's, for support requests
	At          string `json:"at"`          // TimestampPayload of the failure, or of the last call that worked
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
