package haschema

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// check validates one option's value; path names it in problems.
type check func(c *checker, path string, v any)

// platform describes one modelled entity platform: its own options (on top
// of the common ones), which are required, and cross-field rules.
type platform struct {
	options  map[string]check
	required []string
	rules    func(c *checker, path string, cfg map[string]any)
}

// commonOptions are accepted by every MQTT entity platform.
func commonOptions(deviceDiscovery bool) map[string]check {
	m := map[string]check{
		"availability_template":    (*checker).template,
		"availability_mode":        enum(availabilityModes, false, false),
		"payload_available":        (*checker).str,
		"payload_not_available":    (*checker).str,
		"default_entity_id":        (*checker).str,
		"enabled_by_default":       (*checker).boolean,
		"encoding":                 (*checker).str,
		"entity_category":          enum(entityCategories, false, false),
		"entity_picture":           (*checker).url,
		"group":                    (*checker).strList,
		"icon":                     (*checker).icon,
		"json_attributes_template": (*checker).template,
		"json_attributes_topic":    subscribeTopic,
		"object_id":                (*checker).str,
		"qos":                      (*checker).qos,
		"unique_id":                (*checker).str,
		// availability and availability_topic are checked together, below.
		"availability":       nil,
		"availability_topic": nil,
	}
	if !deviceDiscovery {
		// In device-based discovery these come from the root and were
		// validated there.
		m["device"] = (*checker).device
		m["origin"] = (*checker).origin
	}
	return m
}

// platforms are the entity platforms modelled in detail; others get only the
// common checks.
func platforms() map[string]platform {
	return map[string]platform{
		"cover": {
			options: map[string]check{
				"command_topic":         publishTopic,
				"device_class":          enum(coverDeviceClasses, true, true),
				"name":                  (*checker).strOrNull,
				"optimistic":            (*checker).boolean,
				"payload_close":         (*checker).strOrNull,
				"payload_open":          (*checker).strOrNull,
				"payload_stop":          (*checker).strOrNull,
				"payload_stop_tilt":     (*checker).strOrNull,
				"position_closed":       (*checker).pyInt,
				"position_open":         (*checker).pyInt,
				"position_template":     (*checker).template,
				"position_topic":        subscribeTopic,
				"retain":                (*checker).boolean,
				"set_position_template": (*checker).template,
				"set_position_topic":    publishTopic,
				"state_closed":          (*checker).str,
				"state_closing":         (*checker).str,
				"state_open":            (*checker).str,
				"state_opening":         (*checker).str,
				"state_stopped":         (*checker).str,
				"state_topic":           subscribeTopic,
				"tilt_closed_value":     (*checker).pyInt,
				"tilt_command_template": (*checker).template,
				"tilt_command_topic":    publishTopic,
				"tilt_max":              (*checker).pyInt,
				"tilt_min":              (*checker).pyInt,
				"tilt_opened_value":     (*checker).pyInt,
				"tilt_optimistic":       (*checker).boolean,
				"tilt_status_template":  (*checker).template,
				"tilt_status_topic":     subscribeTopic,
				"value_template":        (*checker).template,
			},
			rules: coverRules,
		},
		"sensor": {
			options: map[string]check{
				"state_topic":                 subscribeTopic,
				"value_template":              (*checker).template,
				"device_class":                enum(sensorDeviceClasses, true, true),
				"expire_after":                (*checker).positiveInt,
				"force_update":                (*checker).boolean,
				"last_reset_value_template":   (*checker).template,
				"name":                        (*checker).strOrNull,
				"options":                     (*checker).strList,
				"suggested_display_precision": (*checker).positiveInt,
				"state_class":                 enum(sensorStateClasses, true, true),
				"unit_of_measurement":         (*checker).strOrNull,
			},
			required: []string{"state_topic"},
			rules:    sensorRules,
		},
		"binary_sensor": {
			options: map[string]check{
				"state_topic":    subscribeTopic,
				"value_template": (*checker).template,
				"device_class":   enum(binarySensorDeviceClasses, true, true),
				"expire_after":   (*checker).positiveInt,
				"force_update":   (*checker).boolean,
				"name":           (*checker).strOrNull,
				"off_delay":      (*checker).positiveInt,
				"payload_off":    (*checker).str,
				"payload_on":     (*checker).str,
			},
			required: []string{"state_topic"},
			rules:    binarySensorRules,
		},
		"button": {
			options: map[string]check{
				"command_template": (*checker).template,
				"command_topic":    publishTopic,
				"device_class":     enum(buttonDeviceClasses, true, true),
				"name":             (*checker).strOrNull,
				"payload_press":    (*checker).str,
				"retain":           (*checker).boolean,
			},
			required: []string{"command_topic"},
		},
	}
}

// entity validates one entity config (already expanded and merged).
// inherited names the options copied from a device payload's root: they were
// checked there, so only the rules that combine them are applied here.
// devName is the name of the device the entity belongs to ("" if none).
func (c *checker) entity(path, platformName string, cfg map[string]any, deviceDiscovery bool, inherited map[string]bool, devName string) {
	common := commonOptions(deviceDiscovery)
	spec, modelled := platforms()[platformName]
	for _, k := range spec.required {
		if _, ok := cfg[k]; !ok {
			c.addf(join(path, k), "required for %s", platformName)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		p := join(path, k)
		if inherited[k] {
			continue
		}
		if chk, ok := spec.options[k]; ok {
			chk(c, p, cfg[k])
			continue
		}
		if chk, ok := common[k]; ok {
			if chk != nil {
				chk(c, p, cfg[k])
			}
			continue
		}
		// Home Assistant drops unknown entity options silently; that is how a
		// misspelt option goes unnoticed, so strict mode reports it.
		if modelled && c.strict {
			c.addf(p, "unknown %s option (Home Assistant would ignore it)", platformName)
		}
	}
	c.availability(path, cfg, false, inherited)
	if spec.rules != nil {
		spec.rules(c, path, cfg)
	}
	if c.strict {
		c.entityHabits(path, platformName, cfg, devName)
	}
}

// availability checks availability_topic / availability (mutually
// exclusive). rootStrict is true at the root of a device payload, where Home
// Assistant rejects unknown keys inside availability items; inside entity
// configs it drops them, so only strict mode reports them there.
func (c *checker) availability(path string, cfg map[string]any, rootStrict bool, inherited map[string]bool) {
	topic, hasTopic := cfg["availability_topic"]
	list, hasList := cfg["availability"]
	if hasTopic && hasList {
		what := ""
		if inherited["availability_topic"] || inherited["availability"] {
			what = " (one of them inherited from the device payload's root)"
		}
		c.addf(path, "availability_topic and availability are mutually exclusive%s", what)
	}
	if hasTopic && !inherited["availability_topic"] {
		c.topicValue(join(path, "availability_topic"), topic, false)
	}
	if !hasList || inherited["availability"] {
		return
	}
	lp := join(path, "availability")
	if list == nil {
		return // ensure_list(None) is an empty list
	}
	for i, item := range ensureList(list) {
		ip := fmt.Sprintf("%s[%d]", lp, i)
		m, ok := item.(map[string]any)
		if !ok {
			c.addf(ip, "must be an object, got %s", jsonType(item))
			continue
		}
		t, ok := m["topic"]
		if !ok {
			c.addf(join(ip, "topic"), "required")
		} else {
			c.topicValue(join(ip, "topic"), t, false)
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			switch k {
			case "topic":
			case "payload_available", "payload_not_available":
				c.str(join(ip, k), m[k])
			case "value_template":
				c.template(join(ip, k), m[k])
			default:
				if rootStrict || c.strict {
					c.addf(join(ip, k), "unknown availability option")
				}
			}
		}
	}
}

// deviceKeys are the keys Home Assistant accepts in "device" (strict schema).
var deviceKeys = map[string]check{
	"identifiers":       (*checker).strList,
	"connections":       (*checker).connections,
	"manufacturer":      (*checker).str,
	"model":             (*checker).str,
	"model_id":          (*checker).str,
	"name":              (*checker).str,
	"hw_version":        (*checker).str,
	"serial_number":     (*checker).str,
	"sw_version":        (*checker).str,
	"via_device":        (*checker).str,
	"suggested_area":    (*checker).str,
	"configuration_url": (*checker).configurationURL,
}

func (c *checker) device(path string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		c.addf(path, "must be an object, got %s", jsonType(v))
		return
	}
	c.expand(path, m, deviceAbbreviations)
	if hub, ok := m["via_hub"]; ok { // deprecated alias Home Assistant still renames
		if c.strict {
			c.addf(join(path, "via_hub"), "deprecated; use via_device")
		}
		if _, both := m["via_device"]; !both {
			m["via_device"] = hub
		}
		delete(m, "via_hub")
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		chk, ok := deviceKeys[k]
		if !ok {
			c.addf(join(path, k), "unknown device option (Home Assistant rejects the payload)")
			continue
		}
		chk(c, join(path, k), m[k])
	}
	if len(ensureList(m["identifiers"])) == 0 && len(ensureList(m["connections"])) == 0 {
		c.addf(path, "needs at least one of identifiers or connections")
	}
}

func (c *checker) origin(path string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		c.addf(path, "must be an object, got %s", jsonType(v))
		return
	}
	c.expand(path, m, originAbbreviations)
	if _, ok := m["name"]; !ok {
		c.addf(join(path, "name"), "required")
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		p := join(path, k)
		switch k {
		case "name", "sw_version":
			c.str(p, m[k])
		case "support_url":
			c.configurationURL(p, m[k])
		default:
			c.addf(p, "unknown origin option (Home Assistant rejects the payload)")
		}
	}
}

// coverRules are the cover's cross-field rules: a template needs the topic
// it applies to.
func coverRules(c *checker, path string, cfg map[string]any) {
	needs := [][2]string{
		{"set_position_topic", "position_topic"},
		{"value_template", "state_topic"},
		{"position_template", "position_topic"},
		{"set_position_template", "set_position_topic"},
		{"tilt_command_template", "tilt_command_topic"},
		{"tilt_status_template", "tilt_status_topic"},
	}
	for _, n := range needs {
		if _, ok := cfg[n[0]]; ok {
			if _, ok := cfg[n[1]]; !ok {
				c.addf(join(path, n[0]), "must be set together with %s", n[1])
			}
		}
	}
	if c.strict {
		_, cmd := cfg["command_topic"]
		_, state := cfg["state_topic"]
		_, pos := cfg["position_topic"]
		if !cmd && !state && !pos {
			c.addf(path, "cover has neither command_topic nor state_topic nor position_topic")
		}
	}
}

// sensorRules are the sensor's cross-field rules: options only for enum
// sensors, last_reset only for total, and the device class's units and state
// classes.
func sensorRules(c *checker, path string, cfg map[string]any) {
	deviceClass := lowerString(cfg["device_class"])
	stateClass := lowerString(cfg["state_class"])
	unit, hasUnit := cfg["unit_of_measurement"].(string)
	if _, ok := cfg["last_reset_value_template"]; ok && stateClass != "total" {
		c.addf(join(path, "last_reset_value_template"), "only allowed with state_class total, not %q", stateClass)
	}
	if opts, ok := cfg["options"]; ok {
		if len(ensureList(opts)) == 0 {
			c.addf(join(path, "options"), "must not be empty")
		}
		if stateClass != "" || hasUnit {
			c.addf(join(path, "options"), "not allowed together with state_class or unit_of_measurement")
		}
		if deviceClass != "enum" {
			c.addf(join(path, "options"), "requires device_class enum, got %q", deviceClass)
		}
	}
	if units, ok := sensorUnits[deviceClass]; ok {
		switch {
		case hasUnit && !units[unit]:
			c.addf(join(path, "unit_of_measurement"), "%q is not a valid unit for device class %s (valid: %s)", unit, deviceClass, list(units))
		case !hasUnit && !units[noUnit] && c.strict:
			c.addf(join(path, "unit_of_measurement"), "device class %s needs one of %s", deviceClass, list(units))
		}
	}
	if stateClass != "" {
		if classes, ok := sensorStateClassesFor[deviceClass]; ok && !classes[stateClass] {
			c.addf(join(path, "state_class"), "%q is not valid for device class %s (valid: %s)", stateClass, deviceClass, list(classes))
		}
	}
	if stateClass == "measurement_angle" && unit != "°" {
		c.addf(join(path, "unit_of_measurement"), "state class measurement_angle needs unit °")
	}
}

func list(m map[string]bool) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k == noUnit {
			k = "no unit"
		}
		keys = append(keys, strconv.Quote(k))
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func lowerString(v any) string {
	s, _ := v.(string)
	return strings.ToLower(s)
}

// --- value checks, each mirroring one of Home Assistant's validators ---

// str: a string. Home Assistant stringifies numbers and booleans but rejects
// null, arrays and objects.
func (c *checker) str(path string, v any) {
	switch v.(type) {
	case string:
	case nil:
		c.addf(path, "must be a string, not null")
	case json.Number, bool:
		if c.strict {
			c.addf(path, "must be a JSON string, got %s", jsonType(v))
		}
	default:
		c.addf(path, "must be a string, got %s", jsonType(v))
	}
}

// strOrNull: a string, or null where Home Assistant gives null a meaning
// (e.g. payload_stop: null disables STOP; name: null uses the device name).
func (c *checker) strOrNull(path string, v any) {
	if v != nil {
		c.str(path, v)
	}
}

// strList: a string or a list of strings (Home Assistant wraps a single
// value in a list).
func (c *checker) strList(path string, v any) {
	if v == nil {
		return
	}
	for i, item := range ensureList(v) {
		c.str(fmt.Sprintf("%s[%d]", path, i), item)
	}
}

func (c *checker) connections(path string, v any) {
	for i, item := range ensureList(v) {
		ip := fmt.Sprintf("%s[%d]", path, i)
		pair, ok := item.([]any)
		if !ok || len(pair) != 2 {
			c.addf(ip, "must be a [type, value] pair")
			continue
		}
		c.str(ip+"[0]", pair[0])
		c.str(ip+"[1]", pair[1])
	}
}

// template: Home Assistant compiles it; a template must at least be a
// string (syntax is not checked here).
func (c *checker) template(path string, v any) {
	switch v.(type) {
	case nil:
		c.addf(path, "template must not be null")
	case []any, map[string]any:
		c.addf(path, "template must be a string, got %s", jsonType(v))
	default:
		c.str(path, v)
	}
}

// boolean mirrors Home Assistant's lenient boolean: true/false, numbers,
// and strings like "on"/"off".
func (c *checker) boolean(path string, v any) {
	switch t := v.(type) {
	case bool:
		return
	case json.Number:
		if !c.strict {
			return
		}
	case string:
		switch strings.ToLower(t) {
		case "1", "true", "yes", "on", "enable", "0", "false", "no", "off", "disable":
			if !c.strict {
				return
			}
		default:
			c.addf(path, "invalid boolean %q", t)
			return
		}
	}
	c.addf(path, "must be a boolean, got %s", jsonType(v))
}

// intValue returns v as Home Assistant's int coercion would, and whether v
// was a JSON integer literal.
func intValue(v any) (n int64, literal, ok bool) {
	switch t := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return i, true, true
		}
		if f, err := t.Float64(); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return int64(f), false, true
		}
	case string:
		if i, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64); err == nil {
			return i, false, true
		}
	case bool:
		if t {
			return 1, false, true
		}
		return 0, false, true
	}
	return 0, false, false
}

func (c *checker) qos(path string, v any) {
	n, literal, ok := intValue(v)
	switch {
	case !ok:
		c.addf(path, "must be 0, 1 or 2, got %s", show(v))
	case n < 0 || n > 2:
		c.addf(path, "must be 0, 1 or 2, got %d", n)
	case c.strict && !literal:
		c.addf(path, "must be a JSON integer, got %s", show(v))
	}
}

func (c *checker) positiveInt(path string, v any) {
	n, literal, ok := intValue(v)
	switch {
	case !ok:
		c.addf(path, "must be a non-negative integer, got %s", show(v))
	case n < 0:
		c.addf(path, "must be a non-negative integer, got %d", n)
	case c.strict && !literal:
		c.addf(path, "must be a JSON integer, got %s", show(v))
	}
}

// pyInt: Home Assistant checks the type itself (no coercion), so 100.0 and
// "100" fail; true passes (a Python bool is an int) unless strict.
func (c *checker) pyInt(path string, v any) {
	_, literal, _ := intValue(v)
	if _, isBool := v.(bool); literal || (isBool && !c.strict) {
		return
	}
	c.addf(path, "must be an integer, got %s", show(v))
}

func (c *checker) icon(path string, v any) {
	c.str(path, v)
	if s, ok := v.(string); ok && !strings.Contains(s, ":") {
		c.addf(path, "icon %q must be of the form prefix:name, e.g. mdi:car", s)
	}
}

func (c *checker) url(path string, v any) {
	c.str(path, v)
	if s, ok := v.(string); ok {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.addf(path, "%q is not an http(s) URL", s)
		}
	}
}

func (c *checker) configurationURL(path string, v any) {
	if s, ok := v.(string); ok {
		if u, err := url.Parse(s); err == nil && u.Scheme == "homeassistant" {
			return
		}
	}
	c.url(path, v)
}

// enum: one of allowed. lower mirrors validators that lower-case first
// (device and state classes); nullable allows null.
func enum(allowed map[string]bool, lower, nullable bool) check {
	return func(c *checker, path string, v any) {
		if v == nil && nullable {
			return
		}
		s, ok := v.(string)
		if !ok {
			c.addf(path, "must be one of %s, got %s", list(allowed), show(v))
			return
		}
		if lower {
			if c.strict && strings.ToLower(s) != s {
				c.addf(path, "%q should be lower case", s)
			}
			s = strings.ToLower(s)
		}
		if !allowed[s] {
			c.addf(path, "%q is not one of %s", s, list(allowed))
		}
	}
}

func subscribeTopic(c *checker, path string, v any) { c.topicValue(path, v, false) }
func publishTopic(c *checker, path string, v any)   { c.topicValue(path, v, true) }

// topicValue checks an option holding a topic.
func (c *checker) topicValue(path string, v any, publish bool) {
	switch t := v.(type) {
	case string:
		c.topic(path, t, publish)
	case json.Number:
		c.str(path, v)
		c.topic(path, string(t), publish)
	default:
		c.addf(path, "topic must be a string, got %s", jsonType(v))
	}
}

// topic applies MQTT's and Home Assistant's topic rules: non-empty, at most
// 65535 bytes of UTF-8, no NUL, control or non-characters; no wildcards when
// publishing; wildcards only as whole levels when subscribing.
func (c *checker) topic(path, t string, publish bool) bool {
	n := len(c.problems)
	switch {
	case t == "":
		c.addf(path, "topic must not be empty")
		return false
	case len(t) > 65535:
		c.addf(path, "topic longer than 65535 bytes")
	}
	if !utf8.ValidString(t) {
		c.addf(path, "topic is not valid UTF-8")
	} else if bad, ok := badTopicRune(t); ok {
		c.addf(path, "topic %q contains %s", t, bad)
	}
	if publish {
		if strings.ContainsAny(t, "+#") {
			c.addf(path, "wildcards are not allowed in topic %q (it is published to)", t)
		}
		return len(c.problems) == n
	}
	levels := strings.Split(t, "/")
	for i, l := range levels {
		if strings.Contains(l, "+") && l != "+" {
			c.addf(path, "'+' must occupy a whole level in %q", t)
		}
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			c.addf(path, "'#' must be the whole last level in %q", t)
		}
	}
	return len(c.problems) == n
}

// badTopicRune describes the first character Home Assistant refuses in a
// topic, if any.
func badTopicRune(t string) (string, bool) {
	for _, r := range t {
		switch {
		case r == 0:
			return "NUL", true
		case r <= 0x1f || (r >= 0x7f && r <= 0x9f):
			return fmt.Sprintf("control character %U", r), true
		case (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe:
			return fmt.Sprintf("non-character %U", r), true
		}
	}
	return "", false
}
