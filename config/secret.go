package config

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// redacted is what every printing path shows instead of a set secret.
const redacted = "[redacted]"

// Secret holds a credential (client secret, refresh token, password).
//
// Every way Go prints or serialises a value (fmt verbs including %#v, JSON,
// text marshalling, slog) shows "[redacted]" for a set secret and "" for an
// unset one, so a Config can be logged or dumped whole without leaking
// anything, while "is it set at all?" stays visible for debugging. Code
// that must use the value calls Reveal, which makes each use easy to find.
type Secret string

// Reveal returns the secret's value, for handing to the one place that needs
// it (an HTTP Basic header, an MQTT CONNECT). Never log what it returns.
func (s Secret) Reveal() string { return string(s) }

// String redacts.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts, so %#v of a Config is safe too.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format redacts for every verb (%s, %v, %q, %x, ...): without it %x or %q
// would print the underlying string.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, s.GoString())
		return
	}
	_, _ = io.WriteString(f, s.String())
}

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText redacts for text encoders. (encoding/json writes a map key of
// any string kind verbatim, bypassing MarshalText: never key a map by Secret.)
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue redacts for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
