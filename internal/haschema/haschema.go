// Package haschema checks MQTT discovery messages against the rules Home
// Assistant applies when it receives them, so tests can catch a payload Home
// Assistant would reject (or silently ignore) without running Home Assistant.
//
// Validate mirrors Home Assistant: what it rejects, Validate rejects; where
// it coerces (a number where a string is wanted) or silently drops unknown
// entity options, Validate accepts. ValidateStrict additionally rejects what
// Home Assistant would accept but is almost certainly a mistake in a payload
// we generate: unknown or misspelt options, values of the wrong JSON type,
// both the short and the long form of one key, and habits that give users
// surprising entities (see habits.go: default_entity_id not of the form
// <platform>.<slug>, the deprecated object_id, missing or device-prefixed
// names, enum sensors without options, energy sensors without a state
// class, entity category config on sensors).
//
// It is a test helper: production code does not import it.
package haschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Error lists every problem found in one message.
type Error struct {
	Topic    string
	Problems []string
}

func (e *Error) Error() string {
	return fmt.Sprintf("discovery message on %q: %d problem(s):\n  - %s",
		e.Topic, len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

// Validate checks one discovery message (topic and retained payload) the way
// Home Assistant would. An empty payload is a valid removal. The error, if
// any, is an *Error listing every problem.
func Validate(topic string, payload []byte) error {
	return validate(topic, payload, false)
}

// ValidateStrict is Validate plus the checks for mistakes Home Assistant
// would let through silently (see the package comment).
func ValidateStrict(topic string, payload []byte) error {
	return validate(topic, payload, true)
}

// checker accumulates problems, so one run reports all of them.
type checker struct {
	strict   bool
	problems []string
}

func (c *checker) addf(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	c.problems = append(c.problems, msg)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func validate(topic string, payload []byte, strict bool) error {
	c := &checker{strict: strict}
	component, ok := c.discoveryTopic(topic)
	if ok && len(payload) > 0 {
		c.payload(component, payload)
	}
	if len(c.problems) == 0 {
		return nil
	}
	return &Error{Topic: topic, Problems: c.problems}
}

// Home Assistant's discovery topic grammar, after the prefix:
// <component>/[<node_id>/]<object_id>/config.
func isObjectID(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

// discoveryTopic checks the topic and returns the component it names
// ("device" for device-based discovery). Validate does not know the
// configured prefix, so it assumes a one-level prefix (Home Assistant's
// default "homeassistant") and falls back to longer prefixes when the
// one-level reading names no known component.
func (c *checker) discoveryTopic(topic string) (string, bool) {
	if !c.topic("topic", topic, true) {
		return "", false
	}
	parts := strings.Split(topic, "/")
	n := len(parts)
	if n < 4 || parts[n-1] != "config" {
		c.addf("topic", "must be <prefix>/<component>/[<node_id>/]<object_id>/config")
		return "", false
	}
	known := func(comp string) bool { return comp == "device" || supportedComponents[comp] }
	// (component index, has node id) readings, most likely first.
	readings := [][2]int{{1, 0}, {1, 1}, {n - 3, 0}, {n - 4, 1}}
	for _, r := range readings {
		ci, node := r[0], r[1] == 1
		if ci < 1 || ci != n-3-r[1] || !known(parts[ci]) {
			continue
		}
		if strings.Join(parts[:ci], "") == "" {
			c.addf("topic", "discovery prefix is empty")
			return "", false
		}
		ok := true
		if node && !isObjectID(parts[ci+1]) {
			c.addf("topic", "node_id %q must match [a-zA-Z0-9_-]+ (Home Assistant ignores the message)", parts[ci+1])
			ok = false
		}
		if obj := parts[n-2]; !isObjectID(obj) {
			c.addf("topic", "object_id %q must match [a-zA-Z0-9_-]+ (Home Assistant ignores the message)", obj)
			ok = false
		}
		return parts[ci], ok
	}
	c.addf("topic", "no supported component (or \"device\") in %q", topic)
	return "", false
}

func (c *checker) payload(component string, payload []byte) {
	if !utf8.Valid(payload) {
		c.addf("payload", "not valid UTF-8")
		return
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber() // keep 1 and 1.0 apart, as Python does
	var v any
	if err := dec.Decode(&v); err != nil {
		c.addf("payload", "not valid JSON: %v", err)
		return
	}
	if dec.More() {
		c.addf("payload", "trailing data after the JSON object")
		return
	}
	root, ok := v.(map[string]any)
	if !ok {
		c.addf("payload", "must be a JSON object, got %s", jsonType(v))
		return
	}
	if c.migration(root) {
		return
	}
	if component == "device" {
		c.devicePayload(root)
		return
	}
	c.singlePayload(component, root)
}

// migration handles {"migrate_discovery": true}, which asks Home Assistant
// to hand the entities over to another discovery topic.
func (c *checker) migration(root map[string]any) bool {
	v, ok := root["migrate_discovery"]
	if !ok {
		v, ok = root["migr_discvry"]
	}
	if !ok {
		return false
	}
	if b, isBool := v.(bool); !isBool || !b {
		c.addf("migrate_discovery", "must be true")
	}
	return true
}

// expand renames abbreviated keys in place, as Home Assistant does before
// validating (an abbreviated key overwrites its long form).
func (c *checker) expand(path string, m map[string]any, table map[string]string) {
	for _, short := range slices.Sorted(maps.Keys(m)) {
		long, ok := table[short]
		if !ok || long == short {
			continue
		}
		if _, both := m[long]; both && c.strict {
			c.addf(join(path, short), "both %q and its abbreviation %q are set; Home Assistant keeps %q", long, short, short)
		}
		m[long] = m[short]
		delete(m, short)
	}
}

// expandEntity expands an entity config: its own keys and its availability
// list items.
func (c *checker) expandEntity(path string, m map[string]any) {
	c.expand(path, m, abbreviations)
	if av, ok := m["availability"]; ok {
		for i, item := range ensureList(av) {
			if im, ok := item.(map[string]any); ok {
				c.expand(fmt.Sprintf("%s[%d]", join(path, "availability"), i), im, abbreviations)
			}
		}
	}
}

// deviceRootKeys are the only keys Home Assistant accepts at the root of a
// device discovery payload (its schema there is strict).
var deviceRootKeys = set(
	"availability", "availability_mode", "availability_template", "availability_topic",
	"payload_available", "payload_not_available", "device", "components", "origin",
	"state_topic", "command_topic", "qos", "encoding",
)

// sharedOptions are the root options a device payload passes down to each
// component that does not set them itself.
var sharedOptions = []string{
	"availability", "availability_mode", "availability_template", "availability_topic",
	"command_topic", "payload_available", "payload_not_available", "state_topic",
}

func (c *checker) devicePayload(root map[string]any) {
	c.expandEntity("", root)
	for _, k := range slices.Sorted(maps.Keys(root)) {
		if !deviceRootKeys[k] {
			c.addf(k, "not allowed at the root of a device discovery payload")
		}
	}
	dev, hasDev := root["device"]
	if !hasDev {
		c.addf("device", "required in device-based discovery")
	} else {
		c.device("device", dev)
	}
	origin, hasOrigin := root["origin"]
	if !hasOrigin {
		c.addf("origin", "required in device-based discovery")
	} else {
		c.origin("origin", origin)
	}
	c.availability("", root, true, nil)
	if v, ok := root["state_topic"]; ok {
		c.topicValue("state_topic", v, false)
	}
	if v, ok := root["command_topic"]; ok {
		c.topicValue("command_topic", v, true)
	}
	rootChecks := map[string]check{
		"availability_mode":     enum(availabilityModes, false, false),
		"availability_template": (*checker).template,
		"payload_available":     (*checker).str,
		"payload_not_available": (*checker).str,
		"qos":                   (*checker).qos,
		"encoding":              (*checker).str,
	}
	for _, k := range slices.Sorted(maps.Keys(root)) {
		if chk, ok := rootChecks[k]; ok {
			chk(c, k, root[k])
		}
	}

	cmpsV, ok := root["components"]
	if !ok {
		c.addf("components", "required in device-based discovery")
		return
	}
	cmps, ok := cmpsV.(map[string]any)
	if !ok {
		c.addf("components", "must be an object, got %s", jsonType(cmpsV))
		return
	}
	uniqueIDs := map[string]string{}
	entityIDs := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(cmps)) {
		path := join("components", id)
		if c.strict && !isObjectID(id) {
			c.addf(path, "component id should match [a-zA-Z0-9_-]+ (it becomes an object id)")
		}
		cfg, ok := cmps[id].(map[string]any)
		if !ok {
			c.addf(path, "must be an object, got %s", jsonType(cmps[id]))
			continue
		}
		c.expandEntity(path, cfg)
		pv, ok := cfg["platform"]
		if !ok {
			c.addf(path, "\"platform\" (p) is required")
			continue
		}
		platform, ok := pv.(string)
		if !ok || !supportedComponents[platform] {
			c.addf(join(path, "platform"), "%s is not a supported platform", show(pv))
			continue
		}
		delete(cfg, "platform")
		if len(cfg) == 0 {
			continue // {"p": platform} alone removes the component
		}
		// Home Assistant attaches the device and origin and inherits the
		// shared options before validating the component.
		inherited := map[string]bool{}
		for _, k := range sharedOptions {
			if _, present := cfg[k]; !present {
				if v, ok := root[k]; ok {
					cfg[k] = v
					inherited[k] = true
				}
			}
		}
		delete(cfg, "device")
		delete(cfg, "origin")
		c.replaceTopicBase(path, cfg)
		uid, hasUID := cfg["unique_id"]
		if !hasUID {
			c.addf(join(path, "unique_id"), "required in device-based discovery")
		} else if s, ok := uid.(string); ok && s != "" {
			if other, dup := uniqueIDs[platform+"\x00"+s]; dup {
				c.addf(join(path, "unique_id"), "%q already used by component %q", s, other)
			}
			uniqueIDs[platform+"\x00"+s] = id
		}
		// Home Assistant would give the second entity "<id>_2", so the
		// documented entity id would silently point at the first.
		if eid, ok := cfg["default_entity_id"].(string); ok && c.strict {
			if other, dup := entityIDs[eid]; dup {
				c.addf(join(path, "default_entity_id"), "%q already used by component %q", eid, other)
			}
			entityIDs[eid] = id
		}
		c.entity(path, platform, cfg, true, inherited, deviceName(root))
	}
}

func (c *checker) singlePayload(component string, root map[string]any) {
	if !supportedComponents[component] {
		c.addf("topic", "%q is not a supported component", component)
		return
	}
	c.expandEntity("", root)
	if dev, ok := root["device"].(map[string]any); ok {
		c.expand("device", dev, deviceAbbreviations)
	}
	if o, ok := root["origin"].(map[string]any); ok {
		c.expand("origin", o, originAbbreviations)
	}
	c.replaceTopicBase("", root)
	c.entity("", component, root, false, nil, deviceName(root))
}

// replaceTopicBase applies the "~" shorthand: a topic option starting or
// ending with "~" has it replaced by the value of "~".
func (c *checker) replaceTopicBase(path string, cfg map[string]any) {
	bv, ok := cfg["~"]
	if !ok {
		return
	}
	delete(cfg, "~")
	base, ok := bv.(string)
	if !ok {
		c.addf(join(path, "~"), "must be a string")
		return
	}
	sub := func(s string) string {
		if strings.HasPrefix(s, "~") {
			s = base + s[1:]
		}
		if strings.HasSuffix(s, "~") {
			s = s[:len(s)-1] + base
		}
		return s
	}
	for k, v := range cfg {
		if s, ok := v.(string); ok && s != "" && strings.HasSuffix(k, "topic") {
			cfg[k] = sub(s)
		}
	}
	for _, item := range ensureList(cfg["availability"]) {
		if im, ok := item.(map[string]any); ok {
			if s, ok := im["topic"].(string); ok && s != "" {
				im["topic"] = sub(s)
			}
		}
	}
}

// deviceName is the (expanded) device block's name, or "".
func deviceName(cfg map[string]any) string {
	dev, _ := cfg["device"].(map[string]any)
	name, _ := dev["name"].(string)
	return name
}

func ensureList(v any) []any {
	switch t := v.(type) {
	case nil:
		return nil
	case []any:
		return t
	default:
		return []any{t}
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
