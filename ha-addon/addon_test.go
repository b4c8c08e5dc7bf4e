// Package haaddon_test checks the Home Assistant add-on repository (repository.yaml
// and this folder) against the rules the Supervisor applies when it reads a store
// (supervisor/apps/validate.py, supervisor/apps/options.py, supervisor/store/) and
// against what the add-on linter (frenck/action-addon-linter) rejects. The
// Supervisor silently drops keys it does not know, so a typo such as `ingres: true`
// would install fine and simply not work: here an unknown key is an error.
package haaddon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
)

// --- the checker --------------------------------------------------------------------

// The top-level keys of an add-on's config.yaml and the kind of value each takes.
type keyKind int

const (
	kindString keyKind = iota
	kindBool
	kindInt
	kindStringList
	kindMap
	kindList
	kindBoolOrString
	kindAny
)

var configKeys = map[string]keyKind{
	"name": kindString, "version": kindString, "slug": kindString, "description": kindString,
	"arch": kindStringList, "machine": kindStringList, "url": kindString,
	"startup": kindString, "boot": kindString, "init": kindBool, "advanced": kindBool,
	"stage": kindString, "ports": kindMap, "ports_description": kindMap,
	"watchdog": kindString, "webui": kindString,
	"ingress": kindBool, "ingress_port": kindInt, "ingress_entry": kindString,
	"ingress_stream": kindBool, "panel_icon": kindString, "panel_title": kindString,
	"panel_admin": kindBool, "homeassistant": kindString,
	"host_network": kindBool, "host_pid": kindBool, "host_ipc": kindBool,
	"host_uts": kindBool, "host_dbus": kindBool, "devices": kindStringList,
	"udev": kindBool, "tmpfs": kindBool, "map": kindList, "environment": kindMap,
	"privileged": kindStringList, "apparmor": kindBoolOrString, "full_access": kindBool,
	"audio": kindBool, "video": kindBool, "gpio": kindBool, "usb": kindBool,
	"uart": kindBool, "devicetree": kindBool, "kernel_modules": kindBool,
	"realtime": kindBool, "hassio_api": kindBool, "hassio_role": kindString,
	"homeassistant_api": kindBool, "stdin": kindBool, "legacy": kindBool,
	"docker_api": kindBool, "auth_api": kindBool, "services": kindStringList,
	"discovery": kindStringList, "backup_exclude": kindStringList,
	"backup_pre": kindString, "backup_post": kindString, "backup": kindString,
	"options": kindMap, "schema": kindAny, "image": kindString, "ulimits": kindMap,
	"timeout": kindInt, "journald": kindBool, "breaking_versions": kindStringList,
}

// Deprecated keys: the Supervisor migrates or ignores them, the linter fails on them.
var deprecatedKeys = map[string]string{
	"auto_uart":  "use uart",
	"codenotary": "no longer used",
	"snapshot":   "renamed backup",
}

var requiredConfigKeys = []string{"name", "version", "slug", "description", "arch"}

// What the Supervisor assumes when a key is absent; writing it out is noise the
// linter rejects ("should be removed, it uses a default value").
var configDefaults = map[string]any{
	"startup": "application", "boot": "auto", "init": true, "advanced": false,
	"stage": "stable", "ingress": false, "ingress_port": 8099, "ingress_stream": false,
	"panel_icon": "mdi:puzzle", "panel_admin": true, "host_network": false,
	"host_pid": false, "host_ipc": false, "host_uts": false, "host_dbus": false,
	"udev": false, "tmpfs": false, "map": []any{}, "apparmor": true,
	"full_access": false, "audio": false, "video": false, "gpio": false, "usb": false,
	"uart": false, "devicetree": false, "kernel_modules": false, "realtime": false,
	"hassio_api": false, "hassio_role": "default", "homeassistant_api": false,
	"stdin": false, "legacy": false, "docker_api": false, "auth_api": false,
	"backup": "hot", "options": map[string]any{}, "schema": map[string]any{},
	"ulimits": map[string]any{}, "timeout": 10, "journald": false,
	"breaking_versions": []any{},
}

var configEnums = map[string][]string{
	"startup":     {"initialize", "system", "services", "application", "once"},
	"boot":        {"auto", "manual", "manual_only"},
	"stage":       {"stable", "experimental", "deprecated"},
	"hassio_role": {"default", "homeassistant", "backup", "manager", "admin"},
	"backup":      {"hot", "cold"},
}

var (
	supportedArch  = []string{"aarch64", "amd64"}
	deprecatedArch = []string{"armhf", "armv7", "i386"}
	privileges     = []string{"BPF", "CHECKPOINT_RESTORE", "DAC_READ_SEARCH", "IPC_LOCK",
		"NET_ADMIN", "NET_RAW", "PERFMON", "SYS_ADMIN", "SYS_MODULE", "SYS_NICE",
		"SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME"}
	mapTypes = []string{"data", "config", "ssl", "local_apps", "backup", "share", "media",
		"homeassistant_config", "all_app_configs", "app_config",
		"addons", "all_addon_configs", "addon_config"}

	reSlug    = regexp.MustCompile(`^[-_.A-Za-z0-9]+$`)
	reService = regexp.MustCompile(`^(mqtt|mysql):(provide|want|need)$`)
	rePort    = regexp.MustCompile(`^\d+(?:/tcp|/udp)?$`)
	reWebUI   = regexp.MustCompile(`^(?:https?|\[PROTO:\w+\]):\/\/\[HOST\]:\[PORT:\d+\].*$`)
	reWatch   = regexp.MustCompile(`^(?:https?|\[PROTO:\w+\]|tcp):\/\/\[HOST\]:(\[PORT:\d+\]|\d+).*$`)
	reMachine = regexp.MustCompile(`^!?(?:intel-nuc|khadas-vim3|generic-aarch64|generic-x86-64|` +
		`odroid-c2|odroid-c4|odroid-m1|odroid-n2|odroid-xu|qemuarm-64|qemuarm|qemux86-64|` +
		`qemux86|raspberrypi|raspberrypi2|raspberrypi3-64|raspberrypi3|raspberrypi4-64|` +
		`raspberrypi4|raspberrypi5-64|yellow|green|tinker)$`)
	reImagePart = regexp.MustCompile(`^[a-z0-9{][a-z0-9.\-_{}]*$`)
	rePanelIcon = regexp.MustCompile(`^mdi:[a-z0-9]+(-[a-z0-9]+)*$`)
	reEnvName   = regexp.MustCompile(`^\w*$`)

	// One option's type, as the Supervisor's options schema reads it.
	reSchemaType = regexp.MustCompile(`^(?:` +
		`bool|email|url|port` +
		`|device(?:\((?P<filter>subsystem=[a-z]+)\))?` +
		`|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?` +
		`|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?` +
		`|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?` +
		`|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?` +
		`|match\((?P<match>.*)\)` +
		`|list\((?P<list>.+)\)` +
		`)(?P<optional>\?)?$`)
)

// problems collects what is wrong with a document, each naming where.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// decodeMapping parses a YAML document whose top level must be a mapping with
// string keys. yaml.v3 already refuses duplicate keys.
func decodeMapping(doc []byte) (map[string]any, error) {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the document is a %s, want a mapping with string keys", kindName(v))
	}
	return m, nil
}

func kindName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case int, int64, uint64:
		return "integer"
	case float64:
		return "float"
	case []any:
		return "list"
	case map[string]any:
		return "mapping"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case uint64:
		return int(n), true
	}
	return 0, false
}

// absoluteURL is voluptuous' Url(): a scheme and a host.
func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Host != ""
}

// checkConfig lists what the Supervisor or the add-on linter would reject (or
// silently ignore) in an add-on's config.yaml.
func checkConfig(doc []byte) []string {
	var p problems
	cfg, err := decodeMapping(doc)
	if err != nil {
		return []string{"not valid YAML: " + err.Error()}
	}
	for _, k := range requiredConfigKeys {
		if _, ok := cfg[k]; !ok {
			p.add("%s: required key missing", k)
		}
	}
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := cfg[k]
		if why, ok := deprecatedKeys[k]; ok {
			p.add("%s: deprecated (%s)", k, why)
			continue
		}
		kind, ok := configKeys[k]
		if !ok {
			p.add("%s: unknown key (the Supervisor would silently ignore it)", k)
			continue
		}
		if !hasKind(v, kind) {
			p.add("%s: is a %s, want %s", k, kindName(v), kindWant(kind))
			continue
		}
		if d, ok := configDefaults[k]; ok && sameValue(v, d) {
			p.add("%s: restates the Supervisor's default %v; leave it out", k, d)
		}
		if allowed, ok := configEnums[k]; ok && !slices.Contains(allowed, v.(string)) {
			p.add("%s: %q is not one of %s", k, v, strings.Join(allowed, ", "))
		}
		checkConfigValue(&p, k, v)
	}
	if ingress, _ := cfg["ingress"].(bool); ingress {
		if _, ok := cfg["webui"]; ok {
			p.add("webui: must go when Ingress is enabled")
		}
		hostNetwork, _ := cfg["host_network"].(bool)
		if port, ok := asInt(cfg["ingress_port"]); ok && port == 0 && !hostNetwork {
			p.add("ingress_port: 0 (a random port) is only for add-ons on the host network")
		}
	}
	if full, _ := cfg["full_access"].(bool); full {
		for _, k := range []string{"devices", "gpio", "uart", "usb"} {
			if _, ok := cfg[k]; ok {
				p.add("%s: redundant with full_access", k)
			}
		}
	}
	if cfg["backup"] == "cold" {
		for _, k := range []string{"backup_pre", "backup_post"} {
			if _, ok := cfg[k]; ok {
				p.add("%s: ignored with cold backups", k)
			}
		}
	}
	checkPorts(&p, cfg)
	checkOptions(&p, cfg["options"], cfg["schema"])
	return p
}

func hasKind(v any, kind keyKind) bool {
	switch kind {
	case kindString:
		_, ok := v.(string)
		return ok
	case kindBool:
		_, ok := v.(bool)
		return ok
	case kindInt:
		_, ok := asInt(v)
		return ok
	case kindStringList:
		l, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range l {
			if _, ok := e.(string); !ok {
				return false
			}
		}
		return true
	case kindMap:
		_, ok := v.(map[string]any)
		return ok
	case kindList:
		_, ok := v.([]any)
		return ok
	case kindBoolOrString:
		switch v.(type) {
		case bool, string:
			return true
		}
		return false
	}
	return true
}

func kindWant(kind keyKind) string {
	return map[keyKind]string{
		kindString: "a string", kindBool: "a bool (true/false)", kindInt: "an integer",
		kindStringList: "a list of strings", kindMap: "a mapping with string keys",
		kindList: "a list", kindBoolOrString: "a bool or a string",
	}[kind]
}

// sameValue compares a YAML value with a default the way the linter does (Python ==).
func sameValue(v, def any) bool {
	if n, ok := asInt(v); ok {
		if d, ok := def.(int); ok {
			return n == d
		}
		return false
	}
	switch d := def.(type) {
	case []any:
		l, ok := v.([]any)
		return ok && len(l) == 0 && len(d) == 0
	case map[string]any:
		m, ok := v.(map[string]any)
		return ok && len(m) == 0 && len(d) == 0
	}
	return reflect.DeepEqual(v, def)
}

// checkConfigValue applies the rule of one key whose kind is already right.
func checkConfigValue(p *problems, k string, v any) {
	switch k {
	case "name", "description":
		if strings.TrimSpace(v.(string)) == "" {
			p.add("%s: empty", k)
		}
	case "version":
		if strings.TrimSpace(v.(string)) == "" {
			p.add("version: empty")
		}
	case "slug":
		if !reSlug.MatchString(v.(string)) {
			p.add("slug: %q has characters outside [-_.A-Za-z0-9]", v)
		}
	case "arch":
		l := v.([]any)
		if len(l) == 0 {
			p.add("arch: empty")
		}
		seen := map[string]bool{}
		for _, e := range l {
			a := e.(string)
			switch {
			case seen[a]:
				p.add("arch: %q listed twice", a)
			case slices.Contains(deprecatedArch, a):
				p.add("arch: %q is deprecated (Home Assistant supports %s)", a, strings.Join(supportedArch, ", "))
			case !slices.Contains(supportedArch, a):
				p.add("arch: %q is not an architecture (%s)", a, strings.Join(supportedArch, ", "))
			}
			seen[a] = true
		}
	case "machine":
		for _, e := range v.([]any) {
			if !reMachine.MatchString(e.(string)) {
				p.add("machine: %q is not a machine type", e)
			}
		}
	case "url":
		if !absoluteURL(v.(string)) {
			p.add("url: %q is not an absolute URL", v)
		}
	case "watchdog":
		// The Supervisor would take a well-formed one, but the linter calls the key
		// obsolete: the image's HEALTHCHECK is what the Supervisor's watchdog follows.
		p.add("watchdog: obsolete; use the image's HEALTHCHECK")
		if !reWatch.MatchString(v.(string)) {
			p.add("watchdog: %q is not http(s)|tcp://[HOST]:[PORT:n]…", v)
		}
	case "webui":
		if !reWebUI.MatchString(v.(string)) {
			p.add("webui: %q is not http(s)://[HOST]:[PORT:n]…", v)
		}
	case "ingress_port":
		n, _ := asInt(v)
		if n < 0 || n > 65535 {
			p.add("ingress_port: %d is not a port (or 0)", n)
		}
	case "timeout":
		n, _ := asInt(v)
		if n < 10 || n > 300 {
			p.add("timeout: %d is outside 10..300 seconds", n)
		}
	case "panel_icon":
		if !rePanelIcon.MatchString(v.(string)) {
			p.add("panel_icon: %q is not an mdi: icon name", v)
		}
	case "services":
		for _, e := range v.([]any) {
			if !reService.MatchString(e.(string)) {
				p.add("services: %q is not mqtt|mysql:provide|want|need", e)
			}
		}
	case "privileged":
		for _, e := range v.([]any) {
			if !slices.Contains(privileges, e.(string)) {
				p.add("privileged: %q is not a capability the Supervisor grants", e)
			}
		}
	case "image":
		checkImage(p, v.(string))
	case "environment":
		for name, val := range v.(map[string]any) {
			if !reEnvName.MatchString(name) {
				p.add("environment: %q is not a variable name", name)
			}
			if _, ok := val.(string); !ok {
				p.add("environment.%s: is a %s, want a string", name, kindName(val))
			}
		}
	case "map":
		for i, e := range v.([]any) {
			checkMapEntry(p, i, e)
		}
	case "ulimits":
		for name, val := range v.(map[string]any) {
			if _, ok := asInt(val); ok {
				continue
			}
			m, ok := val.(map[string]any)
			_, soft := asInt(m["soft"])
			_, hard := asInt(m["hard"])
			if !ok || !soft || !hard || len(m) != 2 {
				p.add("ulimits.%s: want an integer or {soft, hard} integers", name)
			}
		}
	case "schema":
		if b, ok := v.(bool); ok && !b {
			return // schema: false turns option validation off
		}
		if _, ok := v.(map[string]any); !ok {
			p.add("schema: is a %s, want a mapping or false", kindName(v))
		}
	}
}

// checkImage is the Supervisor's docker_image: a name without a tag (config.yaml's
// version is the tag), lowercase, {arch} allowed.
func checkImage(p *problems, image string) {
	name := image
	if i := strings.IndexByte(name, '/'); i > 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			if first != strings.ToLower(first) {
				p.add("image: registry %q must be lowercase", first)
			}
			name = name[i+1:]
		}
	}
	if strings.Contains(name, ":") || strings.Contains(name, "@") {
		p.add("image: %q carries a tag or digest; config.yaml's version is the tag", image)
		return
	}
	for _, part := range strings.Split(name, "/") {
		if !reImagePart.MatchString(part) {
			p.add("image: %q is not a valid image path component in %q", part, image)
		}
	}
}

func checkMapEntry(p *problems, i int, e any) {
	switch m := e.(type) {
	case string:
		t, mode, _ := strings.Cut(m, ":")
		if !slices.Contains(mapTypes, t) || (mode != "" && mode != "rw" && mode != "ro") {
			p.add("map[%d]: %q is not a folder type[:rw|:ro]", i, m)
		}
	case map[string]any:
		t, _ := m["type"].(string)
		if !slices.Contains(mapTypes, t) {
			p.add("map[%d]: type %v is not a folder type", i, m["type"])
		}
		for k, v := range m {
			switch k {
			case "type":
			case "read_only":
				if _, ok := v.(bool); !ok {
					p.add("map[%d].read_only: want a bool", i)
				}
			case "path":
				if s, ok := v.(string); !ok || s == "" || s == "/" {
					p.add("map[%d].path: want a non-root path", i)
				}
			default:
				p.add("map[%d]: unknown key %q", i, k)
			}
		}
	default:
		p.add("map[%d]: is a %s, want a string or a mapping", i, kindName(e))
	}
}

// checkPorts: "port/proto": host port or null (not mapped), and a description for
// every port (the Network section shows it; ports_description alone is meaningless).
func checkPorts(p *problems, cfg map[string]any) {
	ports, _ := cfg["ports"].(map[string]any)
	descriptions, _ := cfg["ports_description"].(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(ports)) {
		if !rePort.MatchString(k) {
			p.add("ports: %q is not port[/tcp|/udp]", k)
		}
		if v := ports[k]; v != nil {
			n, ok := asInt(v)
			if !ok || n < 1 || n > 65535 {
				p.add("ports.%s: %v is not a host port or null", k, v)
			}
		}
		if _, ok := descriptions[k]; !ok {
			p.add("ports_description: no description for %s", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(descriptions)) {
		if !rePort.MatchString(k) {
			p.add("ports_description: %q is not port[/tcp|/udp]", k)
		}
		if s, ok := descriptions[k].(string); !ok || strings.TrimSpace(s) == "" {
			p.add("ports_description.%s: want a description", k)
		}
		if _, ok := ports[k]; !ok {
			p.add("ports_description: %s is not a declared port", k)
		}
	}
}

// schemaType is one parsed option type such as "int(1,10)?" or "list(a|b)".
type schemaType struct {
	raw      string
	base     string // str, password, int, float, bool, email, url, port, match, list, device
	optional bool
	min, max *float64
	pattern  *regexp.Regexp // match(...)
	choices  []string       // list(...)
}

func parseSchemaType(raw string) (schemaType, error) {
	m := reSchemaType.FindStringSubmatch(raw)
	if m == nil || raw == "" || raw == "?" {
		return schemaType{}, fmt.Errorf("%q is not an option type (str, bool, int(min,max), float, email, url, password, port, match(re), list(a|b), device, each with an optional ?)", raw)
	}
	group := func(name string) string { return m[reSchemaType.SubexpIndex(name)] }
	t := schemaType{raw: raw, optional: group("optional") != ""}
	body := strings.TrimSuffix(raw, "?")
	t.base, _, _ = strings.Cut(body, "(")
	for _, prefix := range []string{"s_", "p_", "i_", "f_"} {
		for _, bound := range []string{"min", "max"} {
			if s := group(prefix + bound); s != "" {
				f, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return t, fmt.Errorf("%q: bad %s %q", raw, bound, s)
				}
				if bound == "min" {
					t.min = &f
				} else {
					t.max = &f
				}
			}
		}
	}
	if t.min != nil && t.max != nil && *t.min > *t.max {
		return t, fmt.Errorf("%q: min is above max", raw)
	}
	switch t.base {
	case "match":
		// Python's re.match anchors at the start only; the end is the pattern's business.
		re, err := regexp.Compile(`^(?:` + group("match") + `)`)
		if err != nil {
			return t, fmt.Errorf("%q: the pattern does not compile: %v", raw, err)
		}
		t.pattern = re
	case "list":
		t.choices = strings.Split(group("list"), "|")
		if slices.Contains(t.choices, "") {
			return t, fmt.Errorf("%q: an empty choice", raw)
		}
	}
	return t, nil
}

// accepts is what the Supervisor's options validation would take for this type.
func (t schemaType) accepts(v any) error {
	inRange := func(f float64) error {
		if (t.min != nil && f < *t.min) || (t.max != nil && f > *t.max) {
			return fmt.Errorf("%v is out of range for %s", v, t.raw)
		}
		return nil
	}
	s, isString := v.(string)
	switch t.base {
	case "str", "password":
		if !isString {
			return fmt.Errorf("is a %s, want a string", kindName(v))
		}
		return inRange(float64(len([]rune(s))))
	case "int":
		n, ok := asInt(v)
		if !ok {
			return fmt.Errorf("is a %s, want an integer", kindName(v))
		}
		return inRange(float64(n))
	case "float":
		switch f := v.(type) {
		case float64:
			return inRange(f)
		default:
			if n, ok := asInt(v); ok {
				return inRange(float64(n))
			}
		}
		return fmt.Errorf("is a %s, want a number", kindName(v))
	case "bool":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("is a %s, want a bool", kindName(v))
		}
	case "port":
		if n, ok := asInt(v); !ok || n < 1 || n > 65535 {
			return fmt.Errorf("%v is not a port", v)
		}
	case "email":
		if !isString || !strings.Contains(s, "@") {
			return fmt.Errorf("%v is not an email address", v)
		}
	case "url":
		if !isString || !absoluteURL(s) {
			return fmt.Errorf("%v is not an absolute URL", v)
		}
	case "match":
		if !t.pattern.MatchString(fmt.Sprint(v)) {
			return fmt.Errorf("%v does not match %s", v, t.raw)
		}
	case "list":
		if !slices.Contains(t.choices, fmt.Sprint(v)) {
			return fmt.Errorf("%v is not one of %s", v, strings.Join(t.choices, "|"))
		}
	case "device":
		if !isString {
			return fmt.Errorf("is a %s, want a device path", kindName(v))
		}
	}
	return nil
}

// checkOptions: every schema entry parses; every option has a schema entry and a
// default that entry accepts (null: the user must fill it in before the first
// start); every required entry has an option, so the Configuration tab shows it;
// an optional (?) entry has no default, or it would not be optional.
func checkOptions(p *problems, options, schema any) {
	opts, _ := options.(map[string]any)
	sch, ok := schema.(map[string]any)
	if !ok {
		if len(opts) > 0 && schema != false {
			p.add("schema: missing, but options are set")
		}
		return
	}
	for _, k := range slices.Sorted(maps.Keys(sch)) {
		checkSchemaEntry(p, "schema."+k, sch[k], opts, k, 1)
	}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if _, ok := sch[k]; !ok {
			p.add("options.%s: has no schema entry (the Supervisor drops it)", k)
		}
	}
}

// checkSchemaEntry checks one schema element and, at the top level, its default.
func checkSchemaEntry(p *problems, where string, elem any, opts map[string]any, key string, depth int) {
	if depth > 3 {
		p.add("%s: nested too deep (the Supervisor allows two levels)", where)
		return
	}
	switch e := elem.(type) {
	case string:
		t, err := parseSchemaType(e)
		if err != nil {
			p.add("%s: %v", where, err)
			return
		}
		if opts != nil {
			checkDefault(p, opts, key, e, t, false)
		}
	case []any:
		if len(e) != 1 {
			p.add("%s: a list takes exactly one element type, has %d", where, len(e))
			return
		}
		if _, nested := e[0].([]any); nested {
			p.add("%s: a list may not directly hold a list", where)
			return
		}
		if s, ok := e[0].(string); ok {
			t, err := parseSchemaType(s)
			if err != nil {
				p.add("%s: %v", where, err)
				return
			}
			if opts != nil {
				checkDefault(p, opts, key, "["+s+"]", t, true)
			}
			return
		}
		checkSchemaEntry(p, where+"[0]", e[0], nil, "", depth+1)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(e)) {
			checkSchemaEntry(p, where+"."+k, e[k], nil, k, depth+1)
		}
	default:
		p.add("%s: is a %s, want a type string, a one-element list or a mapping", where, kindName(elem))
	}
}

// checkDefault checks a top-level option's default against its schema type
// (shown as written): an optional option has none, a required one has one
// (null makes the user fill it in), and a value given is one the type, or
// for a list each item, accepts.
func checkDefault(p *problems, opts map[string]any, key, shown string, t schemaType, list bool) {
	def, hasDefault := opts[key]
	switch {
	case t.optional && hasDefault:
		p.add("options.%s: an optional (%s) option must have no default", key, shown)
		return
	case !t.optional && !hasDefault:
		p.add("options.%s: missing; %s is required, give a default (null makes the user fill it in)", key, shown)
		return
	case !hasDefault || def == nil && !list:
		return
	}
	values := []any{def}
	if list {
		l, ok := def.([]any)
		if !ok {
			p.add("options.%s: is a %s, want a list", key, kindName(def))
			return
		}
		values = l
	}
	for i, v := range values {
		if v == nil {
			continue
		}
		where := key
		if list {
			where = fmt.Sprintf("%s[%d]", key, i)
		}
		if err := t.accepts(v); err != nil {
			p.add("options.%s: %v", where, err)
		}
	}
}

// checkRepository lists what the Supervisor rejects or ignores in repository.yaml.
func checkRepository(doc []byte) []string {
	var p problems
	repo, err := decodeMapping(doc)
	if err != nil {
		return []string{"not valid YAML: " + err.Error()}
	}
	if name, ok := repo["name"].(string); !ok || strings.TrimSpace(name) == "" {
		p.add("name: required, a non-empty string")
	}
	for _, k := range slices.Sorted(maps.Keys(repo)) {
		v := repo[k]
		switch k {
		case "name":
		case "url":
			if s, ok := v.(string); !ok || !absoluteURL(s) {
				p.add("url: %v is not an absolute URL", v)
			}
		case "maintainer":
			if _, ok := v.(string); !ok {
				p.add("maintainer: is a %s, want a string", kindName(v))
			}
		default:
			p.add("%s: unknown key (the Supervisor would silently ignore it)", k)
		}
	}
	return p
}

// checkTranslations: a name and a description for every option in the schema
// (nothing else; the Configuration tab looks them up by key) and a text for every
// port, keyed exactly as in config.yaml (the Network section looks them up that way).
func checkTranslations(configDoc, translationDoc []byte) []string {
	var p problems
	cfg, err := decodeMapping(configDoc)
	if err != nil {
		return []string{"config: not valid YAML: " + err.Error()}
	}
	tr, err := decodeMapping(translationDoc)
	if err != nil {
		return []string{"not valid YAML: " + err.Error()}
	}
	for _, k := range slices.Sorted(maps.Keys(tr)) {
		if k != "configuration" && k != "network" {
			p.add("%s: unknown key (configuration, network)", k)
		}
	}
	schema, _ := cfg["schema"].(map[string]any)
	conf, _ := tr["configuration"].(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(schema)) {
		entry, ok := conf[k].(map[string]any)
		if !ok {
			p.add("configuration.%s: missing", k)
			continue
		}
		for _, field := range []string{"name", "description"} {
			if s, _ := entry[field].(string); strings.TrimSpace(s) == "" {
				p.add("configuration.%s.%s: missing", k, field)
			}
		}
		for f := range entry {
			if f != "name" && f != "description" && f != "fields" {
				p.add("configuration.%s: unknown key %q", k, f)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		if _, ok := schema[k]; !ok {
			p.add("configuration.%s: no such option in the schema", k)
		}
	}
	ports, _ := cfg["ports"].(map[string]any)
	network, _ := tr["network"].(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(ports)) {
		if s, _ := network[k].(string); strings.TrimSpace(s) == "" {
			p.add("network.%s: missing", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(network)) {
		if _, ok := ports[k]; !ok {
			p.add("network.%s: no such port in config.yaml", k)
		}
	}
	return p
}

// --- this repository --------------------------------------------------------------

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func expectNone(t *testing.T, what string, got []string) {
	t.Helper()
	for _, g := range got {
		t.Errorf("%s: %s", what, g)
	}
}

func TestAddonConfig(t *testing.T) {
	doc := readFile(t, "config.yaml")
	expectNone(t, "config.yaml", checkConfig(doc))

	// This add-on's own promises, on top of the Supervisor's rules.
	cfg, err := decodeMapping(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"slug": "smartcar2mqtt", "init": false, "ingress": true,
		"arch": []any{"aarch64", "amd64"}, "services": []any{"mqtt:want"},
	}
	for k, v := range want {
		if !reflect.DeepEqual(cfg[k], v) {
			t.Errorf("config.yaml %s = %v, want %v", k, cfg[k], v)
		}
	}
	if v, _ := cfg["version"].(string); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("version %q: want MAJOR.MINOR.PATCH, the release tag without its v", v)
	}
	schema := cfg["schema"].(map[string]any)
	for _, k := range []string{"smartcar_client_id", "smartcar_client_secret", "mqtt_password", "broker_password"} {
		if s, _ := schema[k].(string); !strings.HasPrefix(s, "password") {
			t.Errorf("schema.%s = %v, want a password type (hidden in the UI)", k, schema[k])
		}
	}
	for k, v := range cfg["ports"].(map[string]any) {
		if v != nil {
			t.Errorf("ports.%s = %v: no port is mapped unless the user maps it", k, v)
		}
	}
}

// What the Supervisor writes to /data/options.json for a user who filled in every
// option must be what `smartcar2mqtt addon` takes: the add-on's schema and the
// daemon's options are one list.
func TestOptionsTheDaemonTakes(t *testing.T) {
	cfg, err := decodeMapping(readFile(t, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	schema := cfg["schema"].(map[string]any)
	// A value for every option, as a user would type it.
	filled := map[string]any{
		"smartcar_client_id":      "client_0123456789abcdef",
		"smartcar_client_secret":  "s3cret-value",
		"smartcar_application_id": "0b6f1f2a-7c3d-4e58-9a1b-6d2e4f8a0c37",
		"smartcar_vehicle_ids":    []any{"5f7a3f3e-0a1b-4c2d-9e8f-7a6b5c4d3e21"},
		"mqtt_url":                "tcp://core-mosquitto:1883",
		"mqtt_username":           "smartcar2mqtt",
		"mqtt_password":           "mqtt-password",
		"broker_username":         "homeassistant",
		"broker_password":         "a-long-random-password",
		"smartcar_webhook_secret": "amt-application-management-token",
	}
	options := map[string]any{}
	for k, def := range cfg["options"].(map[string]any) {
		options[k] = def
	}
	for k, v := range filled {
		options[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(schema)) {
		v, ok := options[k]
		if !ok || v == nil {
			t.Fatalf("the test has no value for option %s", k)
		}
		// Each value must be one the Supervisor accepts, or the test proves nothing.
		raw := schema[k]
		if l, isList := raw.([]any); isList {
			raw = l[0]
		}
		st, err := parseSchemaType(raw.(string))
		if err != nil {
			t.Fatal(err)
		}
		values := []any{v}
		if l, isList := v.([]any); isList {
			values = l
		}
		for _, e := range values {
			if err := st.accepts(e); err != nil {
				t.Fatalf("option %s: the Supervisor would refuse the test's value: %v", k, err)
			}
		}
	}
	for k := range options {
		if _, ok := schema[k]; !ok {
			t.Fatalf("option %s has no schema entry", k)
		}
	}
	dir := t.TempDir()
	data, err := json.Marshal(options)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, config.OptionsFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATA_DIR": dir}
	got, err := config.LoadAddon("addon", func(key string) (string, bool) { v, ok := env[key]; return v, ok })
	if err != nil {
		t.Fatalf("smartcar2mqtt addon refuses options the add-on's schema allows: %v", err)
	}
	if got.MQTTURL != "tcp://core-mosquitto:1883" || got.LogLevel != "info" {
		t.Errorf("options not applied: MQTT_URL %q, LOG_LEVEL %q", got.MQTTURL, got.LogLevel)
	}
}

// The poll interval's match() must take what the daemon takes and nothing that
// time.ParseDuration refuses.
func TestPollIntervalPattern(t *testing.T) {
	cfg, err := decodeMapping(readFile(t, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseSchemaType(cfg["schema"].(map[string]any)["smartcar_poll_interval"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"6h", "0", "90m", "1h30m", "1.5h", "45s", "2h0m0s"} {
		if err := st.accepts(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
		if _, err := time.ParseDuration(s); err != nil {
			t.Errorf("%q accepted by the schema but not by Go: %v", s, err)
		}
	}
	for _, s := range []string{"", "6", "6 h", "six hours", "6h ", "-1h", "1d", "6hours"} {
		if st.accepts(s) == nil {
			t.Errorf("%q accepted, want refused", s)
		}
	}
}

// mqtt_url's match() takes the schemes the daemon speaks, so a wrong one is refused
// when the user saves the Configuration tab rather than in the log at start.
func TestMQTTURLPattern(t *testing.T) {
	cfg, err := decodeMapping(readFile(t, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseSchemaType(cfg["schema"].(map[string]any)["mqtt_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"tcp://core-mosquitto:1883", "ssl://broker.example:8883", "ws://10.0.0.2:9001/mqtt", "wss://b.example/mqtt", "mqtt://host", "mqtts://host:8883"} {
		if err := st.accepts(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range []string{"core-mosquitto:1883", "http://broker:1883", "tcp://", "tcp:///x", "ftp://host", " tcp://host"} {
		if st.accepts(s) == nil {
			t.Errorf("%q accepted, want refused", s)
		}
	}
}

func TestRepositoryYAML(t *testing.T) {
	expectNone(t, "repository.yaml", checkRepository(readFile(t, filepath.Join("..", "repository.yaml"))))
}

func TestTranslations(t *testing.T) {
	expectNone(t, "translations/en.yaml",
		checkTranslations(readFile(t, "config.yaml"), readFile(t, filepath.Join("translations", "en.yaml"))))
}

func TestIconAndLogo(t *testing.T) {
	for _, c := range []struct {
		file          string
		width, height int
	}{{"icon.png", 128, 128}, {"logo.png", 250, 100}} {
		img, err := png.DecodeConfig(bytes.NewReader(readFile(t, c.file)))
		if err != nil {
			t.Errorf("%s: not a PNG: %v", c.file, err)
			continue
		}
		if img.Width != c.width || img.Height != c.height {
			t.Errorf("%s is %d×%d, want %d×%d", c.file, img.Width, img.Height, c.width, c.height)
		}
	}
}

// The version moves as one: config.yaml (the image tag the Supervisor pulls),
// CHANGELOG.md's newest entry (what the update dialog shows) and the Dockerfile's
// defaults (the project image it wraps, the io.hass.version label).
func TestVersionsAgree(t *testing.T) {
	cfg, err := decodeMapping(readFile(t, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	version, _ := cfg["version"].(string)

	top := regexp.MustCompile(`(?m)^## \[?v?([0-9][^\]\s]*)\]?`).FindSubmatch(readFile(t, "CHANGELOG.md"))
	if top == nil {
		t.Fatal("CHANGELOG.md has no '## VERSION' entry")
	}
	if string(top[1]) != version {
		t.Errorf("CHANGELOG.md's newest entry is %s, config.yaml's version %s", top[1], version)
	}

	dockerfile := string(readFile(t, "Dockerfile"))
	for _, c := range []struct{ arg, want string }{
		{"BUILD_FROM", "ghcr.io/smartcar2mqtt/smartcar2mqtt:" + version},
		{"BUILD_VERSION", version},
	} {
		m := regexp.MustCompile(`(?m)^ARG ` + c.arg + `=(\S+)$`).FindStringSubmatch(dockerfile)
		if m == nil {
			t.Errorf("Dockerfile: no 'ARG %s=…' default", c.arg)
		} else if m[1] != c.want {
			t.Errorf("Dockerfile: ARG %s=%s, want %s", c.arg, m[1], c.want)
		}
	}
	if !regexp.MustCompile(`(?m)^FROM \$\{?BUILD_FROM\}?$`).MatchString(dockerfile) {
		t.Error("Dockerfile: want FROM $BUILD_FROM")
	}
	if !regexp.MustCompile(`(?m)^CMD \["addon"\]$`).MatchString(dockerfile) {
		t.Error(`Dockerfile: want CMD ["addon"]`)
	}
}

// The Supervisor takes every config.json/.yaml/.yml anywhere in the repository
// (outside dot folders and rootfs) for an add-on; there must be exactly one.
func TestOneAddonInRepository(t *testing.T) {
	var found []string
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			// node_modules: npm's, never committed.
			if path != ".." && (strings.HasPrefix(name, ".") || name == "rootfs" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(name); strings.TrimSuffix(name, ext) == "config" &&
			(ext == ".json" || ext == ".yaml" || ext == ".yml") {
			found = append(found, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(found, []string{"../ha-addon/config.yaml"}) {
		t.Errorf("add-on configs found: %v, want only ../ha-addon/config.yaml", found)
	}
}

// --- the checker against documents known good and bad -------------------------------

const minimalConfig = `
name: Example
version: "1.0.0"
slug: example
description: An example
arch: [aarch64, amd64]
`

func TestCheckConfigAccepts(t *testing.T) {
	for name, doc := range map[string]string{
		"minimal": minimalConfig,
		"everything this add-on uses": minimalConfig + `
url: https://example.com/addon
init: false
timeout: 15
services: [mqtt:want, mysql:need]
ingress: true
panel_icon: mdi:ev-plug-type2
image: ghcr.io/example/{arch}-addon-example
ports: {1883/tcp: null, 8080/tcp: 8080, 53/udp: 5353, "80": null}
ports_description: {1883/tcp: MQTT, 8080/tcp: Web, 53/udp: DNS, "80": HTTP}
options:
  secret: null
  mode: live
  size: 15
  ratio: 1.5
  flag: true
  hosts: [a, b]
  link: "tcp://broker:1883"
schema:
  secret: password
  mode: list(live|simulated|test)
  size: int(5,20)
  ratio: float(,2.5)
  flag: bool
  hosts: [str]
  link: url
  ids: ["str?"]
  nick: str(1,)?
  pattern: match(^\w+$)?
  port: port?
  mail: email?
  dev: device(subsystem=tty)?
  nested:
    - user: str
      pass: password?
`,
		"map, environment, ulimits, webui without ingress": minimalConfig + `
webui: http://[HOST]:[PORT:8080]/
map: [share, "ssl:rw", {type: homeassistant_config, read_only: false, path: /custom}]
environment: {LOG: debug}
ulimits: {nofile: 4096, nproc: {soft: 100, hard: 200}}
machine: ["!raspberrypi5-64", generic-x86-64]
privileged: [NET_ADMIN]
schema: false
`,
	} {
		t.Run(name, func(t *testing.T) {
			expectNone(t, name, checkConfig([]byte(doc)))
		})
	}
}

func TestCheckConfigRejects(t *testing.T) {
	for _, c := range []struct {
		name, doc, want string
	}{
		{"typo ingres", minimalConfig + "ingres: true\n", "ingres: unknown key"},
		{"typo servics", minimalConfig + "servics: [mqtt:want]\n", "servics: unknown key"},
		{"typo schem", minimalConfig + "schem: {a: str}\n", "schem: unknown key"},
		{"not a mapping", "- a\n- b\n", "want a mapping"},
		{"duplicate key", minimalConfig + "slug: again\n", "already defined"},
		{"no name", strings.Replace(minimalConfig, "name: Example\n", "", 1), "name: required key missing"},
		{"no arch", strings.Replace(minimalConfig, "arch: [aarch64, amd64]\n", "", 1), "arch: required key missing"},
		{"version as a float", strings.Replace(minimalConfig, `"1.0.0"`, "1.0", 1), "version: is a float"},
		{"slug with a space", strings.Replace(minimalConfig, "slug: example", "slug: my addon", 1), "slug:"},
		{"slug with a slash", strings.Replace(minimalConfig, "slug: example", "slug: my/addon", 1), "slug:"},
		{"unknown arch", strings.Replace(minimalConfig, "[aarch64, amd64]", "[arm64, amd64]", 1), `"arm64" is not an architecture`},
		{"deprecated arch", strings.Replace(minimalConfig, "[aarch64, amd64]", "[armv7, amd64]", 1), `"armv7" is deprecated`},
		{"empty arch", strings.Replace(minimalConfig, "[aarch64, amd64]", "[]", 1), "arch: empty"},
		{"arch not a list", strings.Replace(minimalConfig, "[aarch64, amd64]", "amd64", 1), "arch: is a string"},
		{"init restated", minimalConfig + "init: true\n", "init: restates"},
		{"ingress_port restated", minimalConfig + "ingress: true\ningress_port: 8099\n", "ingress_port: restates"},
		{"panel_icon restated", minimalConfig + "panel_icon: mdi:puzzle\n", "panel_icon: restates"},
		{"boot restated", minimalConfig + "boot: auto\n", "boot: restates"},
		{"timeout restated", minimalConfig + "timeout: 10\n", "timeout: restates"},
		{"empty options restated", minimalConfig + "options: {}\n", "options: restates"},
		{"bool as a string", minimalConfig + `ingress: "true"` + "\n", "ingress: is a string"},
		{"bad startup", minimalConfig + "startup: later\n", `"later" is not one of`},
		{"bad service", minimalConfig + "services: [mqtt:use]\n", `"mqtt:use" is not`},
		{"bad url", minimalConfig + "url: example.com\n", "url:"},
		{"image with a tag", minimalConfig + "image: ghcr.io/example/addon:1.0\n", "carries a tag"},
		{"image in capitals", minimalConfig + "image: ghcr.io/Example/addon\n", "not a valid image path component"},
		{"watchdog", minimalConfig + "watchdog: http://[HOST]:[PORT:8080]/healthz\n", "watchdog: obsolete"},
		{"webui with ingress", minimalConfig + "ingress: true\nwebui: http://[HOST]:[PORT:8080]/\n", "webui: must go"},
		{"random ingress port off host network", minimalConfig + "ingress: true\ningress_port: 0\n", "ingress_port: 0"},
		{"timeout too long", minimalConfig + "timeout: 600\n", "timeout: 600"},
		{"bad port key", minimalConfig + "ports: {1883/sctp: null}\nports_description: {1883/sctp: x}\n", `"1883/sctp" is not`},
		{"port out of range", minimalConfig + "ports: {1883/tcp: 70000}\nports_description: {1883/tcp: x}\n", "70000 is not a host port"},
		{"port without description", minimalConfig + "ports: {1883/tcp: null}\n", "no description for 1883/tcp"},
		{"description of no port", minimalConfig + "ports: {1883/tcp: null}\nports_description: {1883/tcp: x, 8080/tcp: y}\n", "8080/tcp is not a declared port"},
		{"deprecated codenotary", minimalConfig + "codenotary: a@b.c\n", "codenotary: deprecated"},
		{"bad privilege", minimalConfig + "privileged: [ROOT]\n", `"ROOT" is not a capability`},
		{"bad map type", minimalConfig + "map: [configs]\n", `"configs" is not a folder type`},
		{"bad panel icon", minimalConfig + "panel_icon: car\n", `"car" is not an mdi: icon`},
		{"schema type typo", minimalConfig + "options: {a: x}\nschema: {a: string}\n", `"string" is not an option type`},
		{"schema type empty", minimalConfig + "options: {a: x}\nschema: {a: \"\"}\n", `"" is not an option type`},
		{"schema int bounds", minimalConfig + "options: {a: 1}\nschema: {a: \"int(a,b)\"}\n", "is not an option type"},
		{"schema min above max", minimalConfig + "options: {a: 1}\nschema: {a: \"int(5,1)\"}\n", "min is above max"},
		{"schema empty list choice", minimalConfig + "options: {a: x}\nschema: {a: \"list(x||y)\"}\n", "an empty choice"},
		{"schema bad regex", minimalConfig + "options: {a: x}\nschema: {a: \"match(([a-z)\"}\n", "does not compile"},
		{"schema list of two", minimalConfig + "schema: {a: [str, int]}\n", "exactly one element type"},
		{"schema list of lists", minimalConfig + "schema: {a: [[str]]}\n", "may not directly hold a list"},
		{"schema a number", minimalConfig + "schema: {a: 5}\n", "is a integer, want a type string"},
		{"option without schema", minimalConfig + "options: {a: x, b: y}\nschema: {a: str}\n", "options.b: has no schema entry"},
		{"required without option", minimalConfig + "options: {a: x}\nschema: {a: str, b: password}\n", "options.b: missing"},
		{"optional with a default", minimalConfig + "options: {a: x}\nschema: {a: \"str?\"}\n", "optional (str?) option must have no default"},
		{"default not in list", minimalConfig + "options: {a: fast}\nschema: {a: \"list(live|test)\"}\n", "fast is not one of live|test"},
		{"default out of range", minimalConfig + "options: {a: 50}\nschema: {a: \"int(5,20)\"}\n", "out of range"},
		{"default not matching", minimalConfig + "options: {a: 6 hours}\nschema: {a: \"match(^[0-9]+h$)\"}\n", "does not match"},
		{"default of the wrong type", minimalConfig + "options: {a: 5}\nschema: {a: str}\n", "options.a: is a integer, want a string"},
		{"default not a list", minimalConfig + "options: {a: x}\nschema: {a: [str]}\n", "options.a: is a string, want a list"},
		{"options without schema", minimalConfig + "options: {a: x}\n", "schema: missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := checkConfig([]byte(c.doc))
			for _, g := range got {
				if strings.Contains(g, c.want) {
					return
				}
			}
			t.Errorf("want a problem containing %q, got %q", c.want, got)
		})
	}
}

func TestCheckRepository(t *testing.T) {
	good := map[string]string{
		"name only": "name: Example\n",
		"all keys":  "name: Example\nurl: https://example.com\nmaintainer: Someone <a@b.c>\n",
	}
	for name, doc := range good {
		t.Run(name, func(t *testing.T) { expectNone(t, name, checkRepository([]byte(doc))) })
	}
	for _, c := range []struct{ name, doc, want string }{
		{"no name", "url: https://example.com\n", "name: required"},
		{"typo maintainr", "name: Example\nmaintainr: me\n", "maintainr: unknown key"},
		{"relative url", "name: Example\nurl: example.com\n", "url:"},
		{"not YAML", "name: [\n", "not valid YAML"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := checkRepository([]byte(c.doc))
			if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, c.want) }) {
				t.Errorf("want a problem containing %q, got %q", c.want, got)
			}
		})
	}
}

func TestCheckTranslations(t *testing.T) {
	cfg := minimalConfig + `
ports: {1883/tcp: null}
ports_description: {1883/tcp: MQTT}
options: {a: x}
schema: {a: str, b: "str?"}
`
	good := `
configuration:
  a: {name: A, description: The a}
  b: {name: B, description: The b}
network:
  1883/tcp: MQTT
`
	expectNone(t, "good", checkTranslations([]byte(cfg), []byte(good)))
	for _, c := range []struct{ name, doc, want string }{
		{"option missing", strings.Replace(good, "  b: {name: B, description: The b}\n", "", 1), "configuration.b: missing"},
		{"no description", strings.Replace(good, "{name: B, description: The b}", "{name: B}", 1), "configuration.b.description: missing"},
		{"stale option", strings.Replace(good, "network:", "  c: {name: C, description: gone}\nnetwork:", 1), "configuration.c: no such option"},
		{"port in capitals", strings.Replace(good, "1883/tcp", "1883/TCP", 1), "network.1883/tcp: missing"},
		{"unknown top key", good + "services: {}\n", "services: unknown key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := checkTranslations([]byte(cfg), []byte(c.doc))
			if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, c.want) }) {
				t.Errorf("want a problem containing %q, got %q", c.want, got)
			}
		})
	}
}
