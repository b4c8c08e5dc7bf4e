package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The add-on's files and its Supervisor, as Home Assistant sets them up.
const (
	AddonDataDir         = "/data"
	OptionsFile          = "options.json"
	DefaultSupervisorURL = "http://supervisor"
)

// maxOptionsFile bounds options.json: a few dozen settings, never megabytes.
const maxOptionsFile = 1 << 20

// Supervisor is how the add-on reaches Home Assistant's Supervisor, from the
// environment the Supervisor gives the add-on's container.
type Supervisor struct {
	URL   string // base URL, no trailing slash
	Token Secret
}

// Supervisor is the add-on's Supervisor; nil outside the add-on.
func (c *Config) Supervisor() *Supervisor { return c.supervisor }

// InAddon reports whether the process runs as a Home Assistant add-on: the
// Supervisor gave it a token and wrote its options.
func InAddon(lookup LookupFunc) bool {
	if t, _ := lookup("SUPERVISOR_TOKEN"); t == "" {
		return false
	}
	dataDir := AddonDataDir
	if d, _ := lookup("DATA_DIR"); strings.TrimSpace(d) != "" {
		dataDir = strings.TrimSpace(d)
	}
	_, err := os.Stat(filepath.Join(dataDir, OptionsFile))
	return err == nil
}

// LoadAddon builds the add-on's Config for command ("addon", or
// "healthcheck" inside the add-on, which must probe the address the options
// chose): every option in
// DATA_DIR/options.json is a variable in lower case, and an option wins over
// the same variable in the environment. DATA_DIR is /data unless the
// environment says otherwise. Problems name the option, unless the value
// came from the environment. The embedded broker's account is not required
// here: whether the embedded broker runs at all depends on the Supervisor,
// which CheckEmbeddedBroker is for, once it has answered.
func LoadAddon(command string, lookup LookupFunc) (*Config, error) {
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	dataDir := AddonDataDir
	if d, _ := lookup("DATA_DIR"); strings.TrimSpace(d) != "" {
		dataDir = strings.TrimSpace(d)
	}
	path := filepath.Join(dataDir, OptionsFile)
	options, problems := readOptions(path)
	if len(problems) > 0 {
		return nil, &Error{Problems: problems, Options: true}
	}
	merged := func(key string) (string, bool) {
		if v, ok := options[key]; ok {
			return v, true
		}
		if key == "DATA_DIR" {
			return dataDir, true
		}
		return lookup(key)
	}
	names := optionNames()
	cfg, err := loadFrom(command, merged, command == "addon")
	if err != nil {
		var cerr *Error
		if errors.As(err, &cerr) {
			cerr.Options = true
			for i, p := range cerr.Problems {
				if _, fromEnv := lookup(p.Var); !fromEnv || options[p.Var] != "" {
					cerr.Problems[i] = Problem{Var: optionName(p.Var), Reason: names.Replace(p.Reason)}
				}
			}
			sortProblems(cerr.Problems)
		}
		return nil, err
	}
	for i, w := range cfg.warnings {
		cfg.warnings[i] = names.Replace(w)
	}
	cfg.apiWhy = names.Replace(cfg.apiWhy)
	cfg.supervisor = &Supervisor{URL: DefaultSupervisorURL}
	if u, _ := lookup("SUPERVISOR_URL"); strings.TrimSpace(u) != "" {
		cfg.supervisor.URL = strings.TrimRight(strings.TrimSpace(u), "/")
	}
	if t, _ := lookup("SUPERVISOR_TOKEN"); t != "" {
		cfg.supervisor.Token = Secret(t)
	}
	return cfg, nil
}

// optionName is a variable's name as an add-on option.
func optionName(variable string) string { return strings.ToLower(variable) }

// optionNames rewrites the variables a reason mentions as the options the
// add-on's user sees; longest first, so a name that begins a longer one never
// cuts it.
func optionNames() *strings.Replacer {
	vs := variables(&Config{})
	slices.SortFunc(vs, func(a, b variable) int { return len(b.key) - len(a.key) })
	pairs := make([]string, 0, 2*len(vs))
	for _, v := range vs {
		pairs = append(pairs, v.key, optionName(v.key))
	}
	return strings.NewReplacer(pairs...)
}

// readOptions reads options.json into values by variable name. Strings,
// booleans, whole numbers and lists of strings (joined with commas) are
// taken; null and "" mean unset. Anything else, and a key that names no
// variable, is a problem naming the option.
func readOptions(path string) (map[string]string, []Problem) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, []Problem{{Var: OptionsFile, Reason: fmt.Sprintf("%s does not exist: the Supervisor writes it when the add-on starts (outside Home Assistant, use smartcar2mqtt run with environment variables)", path)}}
	case err != nil:
		return nil, []Problem{{Var: OptionsFile, Reason: fmt.Sprintf("cannot read %s: %v", path, pathless(err, path))}}
	case len(data) > maxOptionsFile:
		return nil, []Problem{{Var: OptionsFile, Reason: fmt.Sprintf("%s is larger than %d bytes", path, maxOptionsFile)}}
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		reason := "is not a JSON object"
		if err != nil {
			reason = "is not valid JSON: " + jsonProblem(err)
		}
		return nil, []Problem{{Var: OptionsFile, Reason: path + " " + reason}}
	}
	known := map[string]bool{}
	for _, v := range variables(&Config{}) {
		known[v.key] = true
	}
	out := map[string]string{}
	var problems []Problem
	for key, value := range raw {
		variable := strings.ToUpper(key)
		if key != optionName(variable) || !known[variable] {
			problems = append(problems, Problem{Var: key, Reason: "is not an option of this add-on (options are the configuration variables in lower case, e.g. smartcar_client_id)"})
			continue
		}
		s, set, reason := optionValue(value)
		switch {
		case reason != "":
			problems = append(problems, Problem{Var: key, Reason: reason})
		case set:
			out[variable] = s
		}
	}
	sortProblems(problems)
	return out, problems
}

// optionValue turns one option's JSON into the text its variable would hold.
// It never quotes the value back: a password may be in it.
func optionValue(value json.RawMessage) (s string, set bool, reason string) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", false, "is not valid JSON"
	}
	switch v := v.(type) {
	case nil:
		return "", false, ""
	case string:
		return v, strings.TrimSpace(v) != "", ""
	case bool:
		return strconv.FormatBool(v), true, ""
	case json.Number:
		f, err := v.Float64()
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return "", false, "must be a whole number, a string, a boolean or a list of strings"
		}
		return v.String(), true, ""
	case []any:
		var items []string
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return "", false, "must be a list of strings"
			}
			if s = strings.TrimSpace(s); s != "" && !slices.Contains(items, s) {
				items = append(items, s)
			}
		}
		return strings.Join(items, ","), len(items) > 0, ""
	default:
		return "", false, "must be a string, a boolean, a whole number or a list of strings"
	}
}

// jsonProblem is a JSON syntax error without the offending text, which may
// be part of a password.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Sprintf("syntax error at byte %d", syntax.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("a %s where an object was expected", typ.Value)
	}
	return "cannot be decoded"
}

// CheckEmbeddedBroker is the embedded broker's rule for the add-on, once
// the Supervisor has said it offers no MQTT broker: Home Assistant needs an
// account on ours, unless anonymous clients are allowed.
func (c *Config) CheckEmbeddedBroker() error {
	if c.BrokerUsername != "" || c.BrokerAllowAnonymous {
		return nil // half an account was refused by LoadAddon already
	}
	const why = "required for the embedded broker: the Supervisor offers no MQTT broker (install the Mosquitto broker add-on, or set broker_username and broker_password for Home Assistant's MQTT integration, or mqtt_url)"
	addon := c.supervisor != nil
	var ps []Problem
	for _, key := range []string{"BROKER_USERNAME", "BROKER_PASSWORD"} {
		name := key
		if addon {
			name = optionName(key)
		}
		ps = append(ps, Problem{Var: name, Reason: why})
	}
	return &Error{Problems: ps, Options: addon}
}

// UseBroker points the daemon at a broker found at run time (the Supervisor's
// MQTT service) as if MQTT_URL, MQTT_USERNAME and MQTT_PASSWORD named it.
func (c *Config) UseBroker(url, username string, password Secret) error {
	if reason := mqttURL(url); reason != "" {
		return fmt.Errorf("the Supervisor's MQTT service: %s", reason)
	}
	c.MQTTURL, c.MQTTUsername, c.MQTTPassword = url, username, password
	return nil
}
