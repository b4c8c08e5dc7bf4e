package bridge

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// parseCommand turns a cover command payload into an action: OPEN or CLOSE, trimmed
// and case-insensitive. Anything else is an error, and no Smartcar call.
// It allocates nothing for a valid command: a flood of them costs no garbage.
func parseCommand(payload []byte) (smartcar.Action, error) {
	p := bytes.TrimSpace(payload)
	switch {
	case bytes.EqualFold(p, []byte(smartcar.Open)):
		return smartcar.Open, nil
	case bytes.EqualFold(p, []byte(smartcar.Close)):
		return smartcar.Close, nil
	default:
		return "", fmt.Errorf("command %s is not OPEN or CLOSE", quoteForLog(payload))
	}
}

// route is what a message on one of the daemon's topics asks for.
type route struct {
	vehicleID string
	kind      routeKind
}

type routeKind int

const (
	routeNone routeKind = iota
	routeCommand
	routeRefresh
)

// parseTopic recognises base/<vehicle>/charge_port/set and base/<vehicle>/refresh.
func parseTopic(base, topic string) route {
	rest, ok := strings.CutPrefix(topic, base)
	if !ok {
		return route{}
	}
	if rest, ok = strings.CutPrefix(rest, "/"); !ok {
		return route{}
	}
	id, kind, ok := strings.Cut(rest, "/")
	if !ok || id == "" {
		return route{}
	}
	switch kind {
	case "charge_port/set":
		return route{vehicleID: id, kind: routeCommand}
	case "refresh":
		return route{vehicleID: id, kind: routeRefresh}
	}
	return route{}
}

// quoteForLog shows a payload safely in a log line: quoted, and cut short, since it
// comes from anyone who can publish to the broker. The cut counts the quoted
// text, escapes included: a payload of invalid bytes quotes to four times its size.
func quoteForLog(payload []byte) string {
	const max = 64
	var quoted []byte
	for i := 0; i < len(payload); {
		_, n := utf8.DecodeRune(payload[i:])
		q := strconv.Quote(string(payload[i : i+n])) // one rune or one invalid byte
		if len(quoted)+len(q)-2 > max {
			return fmt.Sprintf("\"%s\"… (%d bytes)", quoted, len(payload))
		}
		quoted = append(quoted, q[1:len(q)-1]...)
		i += n
	}
	return `"` + string(quoted) + `"`
}
