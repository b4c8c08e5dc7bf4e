// Package config turns environment variables into a validated Config and
// writes the --help text.
//
// The variables are declared once, as envconfig struct tags on Config
// (`envconfig` = variable name, `default`, `desc`, plus `defaultdoc` for what
// --help shows when there is no literal default). Everything else is derived
// from those tags: loading, the "empty means unset" rule, and Usage.
//
// Why Load does not call envconfig.Process: Process reads the process
// environment directly (it cannot be given a lookup function, so tests would
// have to mutate global state) and it treats `KEY=` as set, where an empty
// value (in a compose .env, say) must count as unset, and it stops at
// the first error, where we must report every problem. Working around those
// would mean unsetting variables in the live environment. Instead LoadFrom
// walks the same tags itself and decodes the field types used here
// (string, Secret, bool, time.Duration, []string) with the same parsers
// envconfig uses (strconv.ParseBool, time.ParseDuration, comma split), so
// the tags remain valid envconfig tags: a test checks that envconfig.Process
// and LoadFrom agree on a fully populated environment. Usage still goes
// through envconfig (Usagef), so --help is generated from the very same tags.
package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

// Config is every configuration variable, typed. Field names mirror the variable
// names so callers can guess them. After a successful Load:
//   - SmartcarVehicleIDs is trimmed, free of empty entries and duplicates;
//     empty means "all vehicles on the account";
//   - SmartcarMode, LogLevel and LogFormat are lower case;
//   - HTTPListen is "" when the HTTP server is disabled (HTTP_LISTEN=off).
type Config struct {
	SmartcarClientID      string        `envconfig:"SMARTCAR_CLIENT_ID" defaultdoc:"required for run/auth" desc:"API v3: the API client id (client_…, dashboard → Configuration → API Credentials); API v2.0: the app's UUID client id"`
	SmartcarClientSecret  Secret        `envconfig:"SMARTCAR_CLIENT_SECRET" defaultdoc:"required for run/auth" desc:"the secret of SMARTCAR_CLIENT_ID; never logged"`
	SmartcarApplicationID string        `envconfig:"SMARTCAR_APPLICATION_ID" defaultdoc:"required for auth with API v3" desc:"API v3: the Application ID (dashboard → Configuration), which Smartcar Connect takes as its client_id"`
	SmartcarAPIVersion    string        `envconfig:"SMARTCAR_API_VERSION" default:"auto" desc:"auto (a client id starting with client_ means v3, anything else v2), v3 or v2"`
	SmartcarUserID        string        `envconfig:"SMARTCAR_USER_ID" defaultdoc:"all users" desc:"API v3: serve only this Smartcar user's connected cars"`
	SmartcarRedirectURI   string        `envconfig:"SMARTCAR_REDIRECT_URI" default:"http://localhost:8000/callback" desc:"Smartcar Connect's redirect; must be registered in the dashboard (auth serves it when it names localhost)"`
	SmartcarMode          string        `envconfig:"SMARTCAR_MODE" default:"live" desc:"Connect mode: live, simulated or test"`
	SmartcarRefreshToken  Secret        `envconfig:"SMARTCAR_REFRESH_TOKEN" desc:"API v2.0 only: seeds the token store when it is empty; ignored once the store holds a newer token; never logged"`
	SmartcarVehicleIDs    []string      `envconfig:"SMARTCAR_VEHICLE_IDS" defaultdoc:"all" desc:"comma-separated vehicle ids to bridge"`
	SmartcarAPIURL        string        `envconfig:"SMARTCAR_API_URL" defaultdoc:"by API version" desc:"Smartcar API base URL: https://vehicle.api.smartcar.com/v3 (v3), https://api.smartcar.com/v2.0 (v2)"`
	SmartcarTokenURL      string        `envconfig:"SMARTCAR_TOKEN_URL" defaultdoc:"by API version" desc:"Smartcar token endpoint: https://iam.smartcar.com/oauth2/token (v3), https://auth.smartcar.com/oauth/token (v2)"`
	SmartcarConnectURL    string        `envconfig:"SMARTCAR_CONNECT_URL" default:"https://connect.smartcar.com/oauth/authorize" desc:"Smartcar Connect authorization URL"`
	SmartcarWebhookSecret Secret        `envconfig:"SMARTCAR_WEBHOOK_SECRET" desc:"the Application Management Token from the Smartcar dashboard: enables Smartcar's webhook receiver, POST /webhooks/smartcar on HTTP_LISTEN, for the door and charge state in real time; never logged"`
	SmartcarPollInterval  time.Duration `envconfig:"SMARTCAR_POLL_INTERVAL" default:"6h" desc:"how often to read the charge port state, one Smartcar call per vehicle each time: 30 days / interval calls a month, where Smartcar plans allow about 500 per vehicle (under 1m is refused and over 500 a month warned about, except in demo); 0 disables"`
	SmartcarTimeout       time.Duration `envconfig:"SMARTCAR_TIMEOUT" default:"310s" desc:"bound on one Smartcar request (commands can take minutes)"`

	MQTTURL       string `envconfig:"MQTT_URL" defaultdoc:"embedded broker" desc:"external broker: tcp://host:1883, ssl://host:8883, ws://..., wss://... (also mqtt://, mqtts://); unset runs the embedded broker"`
	MQTTUsername  string `envconfig:"MQTT_USERNAME" desc:"username on the external broker"`
	MQTTPassword  Secret `envconfig:"MQTT_PASSWORD" desc:"password on the external broker; never logged"`
	MQTTCAFile    string `envconfig:"MQTT_CA_FILE" desc:"extra CA certificate (PEM file, checked at start) for ssl:// and wss://"`
	MQTTClientID  string `envconfig:"MQTT_CLIENT_ID" default:"smartcar2mqtt" desc:"MQTT client id"`
	MQTTBaseTopic string `envconfig:"MQTT_BASE_TOPIC" default:"smartcar2mqtt" desc:"root of the daemon's own topics"`

	HADiscoveryPrefix string `envconfig:"HA_DISCOVERY_PREFIX" default:"homeassistant" desc:"Home Assistant MQTT discovery prefix"`
	HAStatusTopic     string `envconfig:"HA_STATUS_TOPIC" default:"homeassistant/status" desc:"Home Assistant's birth topic (online there re-sends discovery)"`

	BrokerListen         string `envconfig:"BROKER_LISTEN" default:":1883" desc:"embedded broker address (used only when MQTT_URL is unset)"`
	BrokerUsername       string `envconfig:"BROKER_USERNAME" desc:"embedded broker account (Home Assistant's); required with BROKER_PASSWORD unless BROKER_ALLOW_ANONYMOUS=true"`
	BrokerPassword       Secret `envconfig:"BROKER_PASSWORD" desc:"password of BROKER_USERNAME; never logged"`
	BrokerAllowAnonymous bool   `envconfig:"BROKER_ALLOW_ANONYMOUS" default:"false" desc:"let clients connect to the embedded broker without credentials"`
	BrokerTLSCert        string `envconfig:"BROKER_TLS_CERT" desc:"PEM certificate file; with BROKER_TLS_KEY the embedded broker also listens with TLS on BROKER_TLS_LISTEN"`
	BrokerTLSKey         string `envconfig:"BROKER_TLS_KEY" desc:"PEM private key file for BROKER_TLS_CERT, unencrypted; the pair is checked at start"`
	BrokerTLSListen      string `envconfig:"BROKER_TLS_LISTEN" default:":8883" desc:"embedded broker TLS address (only with BROKER_TLS_CERT and BROKER_TLS_KEY)"`

	DataDir    string `envconfig:"DATA_DIR" default:"./data" desc:"token store, vehicle cache, broker's retained store; created if missing and checked writable at start; one daemon per directory (/data in the container image; demo uses a temporary directory unless this is set)"`
	HTTPListen string `envconfig:"HTTP_LISTEN" default:":8080" desc:"address of the web page (the vehicles, Connect a car), /healthz and /metrics; off disables"`
	// HTTPAllowedHosts are lower case and without a trailing dot after Load.
	HTTPAllowedHosts []string `envconfig:"HTTP_ALLOWED_HOSTS" defaultdoc:"addresses, localhost and local names" desc:"comma-separated host names the web page also answers to, e.g. nas.example.com (a leading dot takes a domain's names); by default it answers only at an IP address, localhost and names of the home network (one label, .local, .lan, .home.arpa, .internal), so another site cannot reach it through DNS rebinding"`
	LogLevel         string   `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat        string   `envconfig:"LOG_FORMAT" default:"text" desc:"text or json"`

	// supervisor is how the add-on reaches the Supervisor; nil unless
	// LoadAddon built this Config.
	supervisor *Supervisor
	// set records which variables had a non-empty value, for IsSet.
	// Unexported, so envconfig and the variable walk ignore it.
	set map[string]bool
	// api is the generation in use (APIV3 or APIV2) once SMARTCAR_API_VERSION
	// is settled, and apiWhy says why, for the start-up log.
	api, apiWhy string
	// warnings are what Warnings returns, settled by LoadFrom.
	warnings []string
}

// API generations as SMARTCAR_API_VERSION names them.
const (
	APIAuto = "auto"
	APIV3   = "v3"
	APIV2   = "v2"
)

// v3ClientIDPrefix starts every API v3 client id: apps created since mid-2026
// have no other kind.
const v3ClientIDPrefix = "client_"

// Default Smartcar endpoints of each generation.
const (
	DefaultV3APIURL   = "https://vehicle.api.smartcar.com/v3"
	DefaultV3TokenURL = "https://iam.smartcar.com/oauth2/token"
	DefaultV2APIURL   = "https://api.smartcar.com/v2.0"
	DefaultV2TokenURL = "https://auth.smartcar.com/oauth/token"
)

// APIVersion is the Smartcar API generation in use, APIV3 or APIV2.
func (c *Config) APIVersion() string { return c.api }

// APIVersionReason says why APIVersion is what it is, in words.
func (c *Config) APIVersionReason() string { return c.apiWhy }

// ChooseAPI settles SMARTCAR_API_VERSION and the endpoints that depend on it:
// auto picks v3 for a client id starting with client_ and v2 otherwise, and
// unset API and token URLs get the generation's defaults. Load calls it;
// demo calls it again after putting its simulator's credentials in.
func (c *Config) ChooseAPI() {
	switch c.SmartcarAPIVersion {
	case APIV3, APIV2:
		c.api, c.apiWhy = c.SmartcarAPIVersion, "SMARTCAR_API_VERSION="+c.SmartcarAPIVersion
	default:
		switch {
		case strings.HasPrefix(c.SmartcarClientID, v3ClientIDPrefix):
			c.api, c.apiWhy = APIV3, "SMARTCAR_API_VERSION=auto and the client id starts with client_, as API v3 ids do"
		case c.SmartcarClientID == "":
			c.api, c.apiWhy = APIV3, "SMARTCAR_API_VERSION=auto and no client id: v3 is what new Smartcar apps get"
		default:
			c.api, c.apiWhy = APIV2, "SMARTCAR_API_VERSION=auto and the client id does not start with client_: a legacy API v2.0 app"
		}
	}
	v3 := c.api == APIV3
	if !c.set["SMARTCAR_API_URL"] {
		c.SmartcarAPIURL = map[bool]string{true: DefaultV3APIURL, false: DefaultV2APIURL}[v3]
	}
	if !c.set["SMARTCAR_TOKEN_URL"] {
		c.SmartcarTokenURL = map[bool]string{true: DefaultV3TokenURL, false: DefaultV2TokenURL}[v3]
	}
}

// HTTPListenOff is the HTTP_LISTEN value that disables the HTTP server.
//
// An empty value counts as unset, for HTTP_LISTEN as for every variable (so
// HTTP_LISTEN= means the default :8080): compose files commonly pass
// `HTTP_LISTEN=${HTTP_LISTEN}`, which
// yields an empty value whenever the user did not set it, and silently
// losing /healthz would make the container's HEALTHCHECK fail. Disabling
// therefore takes an explicit word, "off" (case-insensitive); Load then
// leaves Config.HTTPListen empty.
const HTTPListenOff = "off"

// EmbeddedBroker reports whether the daemon runs its own broker, i.e.
// MQTT_URL is unset.
func (c *Config) EmbeddedBroker() bool { return c.MQTTURL == "" }

// HTTPEnabled reports whether /healthz and /metrics are served
// (HTTP_LISTEN is not "off").
func (c *Config) HTTPEnabled() bool { return c.HTTPListen != "" }

// BrokerTLS reports whether the embedded broker also listens with TLS
// (both BROKER_TLS_CERT and BROKER_TLS_KEY are set).
func (c *Config) BrokerTLS() bool { return c.BrokerTLSCert != "" && c.BrokerTLSKey != "" }

// Warnings are plain sentences about a configuration that works but is
// probably not what the user wants (a poll interval that outruns the
// Smartcar plan), for the start-up log. Only `run` gets any: the other
// commands do not poll, and the demo's calls are simulated.
func (c *Config) Warnings() []string { return slices.Clone(c.warnings) }

// IsSet reports whether the variable had a non-empty value, as opposed to
// running on its default. `demo` needs this for DATA_DIR (a temporary
// directory unless DATA_DIR is set), which a default value cannot express.
func (c *Config) IsSet(variable string) bool { return c.set[variable] }

// Problem is one thing wrong with one variable.
type Problem struct {
	Var    string // the environment variable, e.g. SMARTCAR_TIMEOUT
	Reason string // never contains a secret's value
}

func (p Problem) String() string { return p.Var + ": " + p.Reason }

// Error is a configuration that cannot be used: every problem found, not
// just the first, so a user fixes their .env in one go. main maps it to
// exit code 2.
type Error struct {
	Problems []Problem // sorted by Var, then Reason
	// Options: the problems are the add-on's options (named in lower case),
	// which the user fixes in the add-on's Configuration tab.
	Options bool
}

// Error lists every problem, one per line, sorted by variable name.
func (e *Error) Error() string {
	ps := slices.Clone(e.Problems)
	sortProblems(ps)
	var b strings.Builder
	if e.Options {
		b.WriteString("invalid add-on options (fix them in the add-on's Configuration tab):")
	} else {
		b.WriteString("invalid configuration (see smartcar2mqtt --help):")
	}
	for _, p := range ps {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if c := strings.Compare(a.Var, b.Var); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
}

// LookupFunc reports a variable's value and whether it is present, like
// os.LookupEnv.
type LookupFunc func(key string) (string, bool)

// Load reads the process environment, like LoadFrom, and also makes sure
// the command can keep its state in DATA_DIR (run, auth, and demo when
// DATA_DIR is set): it creates the directory (0700) if missing and creates
// and removes a probe file in it. A DATA_DIR that fails this is one more
// problem in the *Error, so it is exit 2 before any network call rather than
// a failure once the car has been reached.
func Load(command string) (*Config, error) { return loadFrom(command, os.LookupEnv, true) }

// LoadFrom builds and validates a Config from lookup, for command "run",
// "auth" or "demo" (any other command, e.g. "healthcheck", requires nothing
// but still gets every value checked). A nil lookup means an empty
// environment. It never changes the process environment.
//
// A value that is empty or only whitespace counts as unset and gets the
// default. Values are trimmed, except secrets, which are taken verbatim.
//
// On any problem it returns nil and an *Error holding every problem.
// Required variables depend on the command: SMARTCAR_CLIENT_ID and
// SMARTCAR_CLIENT_SECRET for run and auth; BROKER_USERNAME and
// BROKER_PASSWORD for run with the embedded broker unless
// BROKER_ALLOW_ANONYMOUS=true. Demo requires nothing, and may poll more
// often than once a minute (its calls are simulated). Every other rule
// applies to every command, because a bad value is bad whatever the command.
//
// Files named by MQTT_CA_FILE, BROKER_TLS_CERT and BROKER_TLS_KEY are read
// and must load as the daemon will load them. LoadFrom writes nothing: the
// DATA_DIR check, which creates directories, is Load's alone, so tests and
// fuzzing can hand LoadFrom any path without it touching the file system.
func LoadFrom(command string, lookup LookupFunc) (*Config, error) {
	return loadFrom(command, lookup, false)
}

// loadFrom is LoadFrom, plus Load's DATA_DIR check when probeDataDir is set.
func loadFrom(command string, lookup LookupFunc, probeDataDir bool) (*Config, error) {
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	cfg := &Config{set: map[string]bool{}}
	c := &checker{unparsed: map[string]bool{}}
	for _, v := range variables(cfg) {
		raw, _ := lookup(v.key)
		if !v.secret {
			raw = strings.TrimSpace(raw)
		}
		if strings.TrimSpace(raw) == "" {
			raw = v.def
		} else {
			cfg.set[v.key] = true
		}
		if raw == "" {
			continue // no value, no default: the zero value
		}
		if reason := decode(raw, v.field); reason != "" {
			c.add(v.key, reason)
			c.unparsed[v.key] = true
		}
	}
	c.validate(cfg, command)
	if !c.unparsed["SMARTCAR_API_VERSION"] {
		cfg.ChooseAPI()
		c.apiVersion(cfg, command)
	}
	if probeDataDir && keepsState(cfg, command) {
		c.check("DATA_DIR", writableDir(cfg.DataDir))
	}
	if len(c.problems) > 0 {
		sortProblems(c.problems)
		return nil, &Error{Problems: c.problems}
	}
	if command == "run" || command == "addon" {
		cfg.warnings = pollWarnings(cfg.SmartcarPollInterval)
	}
	return cfg, nil
}

// variable is one tagged Config field.
type variable struct {
	key, def, defaultDoc, desc string
	field                      reflect.Value // settable
	secret                     bool
}

// variables lists Config's tagged fields in declaration order, bound to c.
func variables(c *Config) []variable {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	secretType := reflect.TypeFor[Secret]()
	out := make([]variable, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("envconfig")
		if !f.IsExported() || key == "" {
			continue
		}
		out = append(out, variable{
			key:        key,
			def:        f.Tag.Get("default"),
			defaultDoc: f.Tag.Get("defaultdoc"),
			desc:       f.Tag.Get("desc"),
			field:      v.Field(i),
			secret:     f.Type == secretType,
		})
	}
	return out
}

// decode sets field from raw and returns "" or a reason. Reasons quote raw:
// only Secret fields hold secrets, and decoding a Secret cannot fail.
func decode(raw string, field reflect.Value) string {
	switch p := field.Addr().Interface().(type) {
	case *string:
		*p = raw
	case *Secret:
		*p = Secret(raw)
	case *bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Sprintf("%q is not a boolean (use true or false)", raw)
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Sprintf("%q is not a duration (examples: 90s, 15m, 6h)", raw)
		}
		*p = d
	case *[]string:
		*p = splitList(raw)
	default:
		// A programming error (a new field of an unsupported type); the
		// tests decode every field, so this cannot ship.
		return fmt.Sprintf("unsupported field type %s", field.Type())
	}
	return ""
}

// splitList splits a comma-separated list, trimming entries and dropping
// empty and repeated ones ("a, ,b,a" is [a b]).
func splitList(raw string) []string {
	var out []string
	for _, s := range strings.Split(raw, ",") {
		s = strings.TrimSpace(s)
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// checker collects problems. unparsed holds variables whose value did not
// decode: their field holds a zero value, so the rules skip them rather
// than report a second, misleading problem.
type checker struct {
	problems []Problem
	unparsed map[string]bool
}

func (c *checker) add(key, reason string) {
	c.problems = append(c.problems, Problem{Var: key, Reason: reason})
}

// check adds a problem for key if reason is not empty and key decoded.
func (c *checker) check(key, reason string) {
	if reason != "" && !c.unparsed[key] {
		c.add(key, reason)
	}
}

func (c *checker) validate(cfg *Config, command string) {
	if command == "run" || command == "auth" || command == "addon" {
		c.required("SMARTCAR_CLIENT_ID", cfg.SmartcarClientID, "required for "+command)
		c.required("SMARTCAR_CLIENT_SECRET", cfg.SmartcarClientSecret.Reveal(), "required for "+command)
	}
	c.check("SMARTCAR_MODE", oneOf(&cfg.SmartcarMode, "live", "simulated", "test"))
	if reason := oneOf(&cfg.SmartcarAPIVersion, APIAuto, APIV3, APIV2); reason != "" {
		c.check("SMARTCAR_API_VERSION", reason)
		c.unparsed["SMARTCAR_API_VERSION"] = true // no generation to check the rest against
	}
	for _, u := range []struct{ key, val string }{
		{"SMARTCAR_API_URL", cfg.SmartcarAPIURL},
		{"SMARTCAR_TOKEN_URL", cfg.SmartcarTokenURL},
		{"SMARTCAR_CONNECT_URL", cfg.SmartcarConnectURL},
		{"SMARTCAR_REDIRECT_URI", cfg.SmartcarRedirectURI},
	} {
		if u.val != "" { // unset API and token URLs get their generation's default (ChooseAPI)
			c.check(u.key, httpURL(u.val))
		}
	}
	if cfg.SmartcarPollInterval < 0 {
		c.check("SMARTCAR_POLL_INTERVAL", fmt.Sprintf("%s is negative (0 disables polling)", cfg.SmartcarPollInterval))
	} else if command != "demo" {
		c.check("SMARTCAR_POLL_INTERVAL", pollTooOften(cfg.SmartcarPollInterval))
	}
	if cfg.SmartcarTimeout <= 0 {
		c.check("SMARTCAR_TIMEOUT", fmt.Sprintf("%s must be greater than 0", cfg.SmartcarTimeout))
	}
	for _, id := range cfg.SmartcarVehicleIDs {
		// Discovery's rule, so an id we accept is one it can publish.
		if err := discovery.ValidateVehicleID(id); err != nil {
			c.check("SMARTCAR_VEHICLE_IDS", err.Error())
		}
	}

	if cfg.MQTTURL != "" {
		c.check("MQTT_URL", mqttURL(cfg.MQTTURL))
	}
	if cfg.MQTTPassword != "" && cfg.MQTTUsername == "" {
		c.check("MQTT_USERNAME", "required when MQTT_PASSWORD is set")
	}
	c.check("MQTT_CA_FILE", caFile(cfg.MQTTCAFile))
	c.check("MQTT_BASE_TOPIC", topicRoot(cfg.MQTTBaseTopic))
	c.check("HA_DISCOVERY_PREFIX", topicRoot(cfg.HADiscoveryPrefix))
	c.check("HA_STATUS_TOPIC", topic(cfg.HAStatusTopic))

	c.brokerCredentials(cfg, command)
	c.brokerTLSPair(cfg)

	if strings.EqualFold(cfg.HTTPListen, HTTPListenOff) {
		cfg.HTTPListen = ""
	}
	c.listeners(cfg)
	c.check("HTTP_ALLOWED_HOSTS", hostNames(&cfg.HTTPAllowedHosts))
	c.check("SMARTCAR_WEBHOOK_SECRET", webhookSecret(cfg))
	if command == "addon" {
		c.ingressPort(cfg)
	}

	c.check("LOG_LEVEL", oneOf(&cfg.LogLevel, "debug", "info", "warn", "error"))
	c.check("LOG_FORMAT", oneOf(&cfg.LogFormat, "text", "json"))
}

// apiVersion checks what depends on the API generation, once it is chosen.
func (c *checker) apiVersion(cfg *Config, command string) {
	switch cfg.api {
	case APIV3:
		if command == "auth" {
			c.required("SMARTCAR_APPLICATION_ID", cfg.SmartcarApplicationID, "required for auth with API v3 (dashboard → Configuration → Application ID)")
		}
	case APIV2:
		if strings.HasPrefix(cfg.SmartcarClientID, v3ClientIDPrefix) {
			c.check("SMARTCAR_API_VERSION", "is v2, but SMARTCAR_CLIENT_ID is an API v3 client id (client_…), which API v2.0 refuses: use v3 or auto")
		}
	}
}

func (c *checker) required(key, val, reason string) {
	if val == "" {
		c.check(key, reason)
	}
}

// brokerCredentials: the embedded broker never allows everyone unless asked,
// so `run` without MQTT_URL needs Home Assistant's account. Half an account
// is always a mistake, whatever the command.
func (c *checker) brokerCredentials(cfg *Config, command string) {
	user, pass := cfg.BrokerUsername != "", cfg.BrokerPassword != ""
	switch {
	case user && !pass:
		c.check("BROKER_PASSWORD", "required when BROKER_USERNAME is set")
	case pass && !user:
		c.check("BROKER_USERNAME", "required when BROKER_PASSWORD is set")
	case !user && !pass && command == "run" && cfg.EmbeddedBroker() &&
		!cfg.BrokerAllowAnonymous && !c.unparsed["BROKER_ALLOW_ANONYMOUS"]:
		const why = "required for the embedded broker (MQTT_URL is unset) unless BROKER_ALLOW_ANONYMOUS=true"
		c.check("BROKER_USERNAME", why)
		c.check("BROKER_PASSWORD", why)
	}
}

// listeners checks every address the process may listen on, and that two
// enabled listeners do not share one.
func (c *checker) listeners(cfg *Config) {
	type listener struct {
		key, addr string
		enabled   bool
	}
	ls := []listener{
		{"BROKER_LISTEN", cfg.BrokerListen, cfg.EmbeddedBroker()},
		{"BROKER_TLS_LISTEN", cfg.BrokerTLSListen, cfg.EmbeddedBroker() && cfg.BrokerTLS()},
		{"HTTP_LISTEN", cfg.HTTPListen, cfg.HTTPEnabled()},
	}
	for i, l := range ls {
		if l.addr == "" {
			continue // HTTP_LISTEN=off
		}
		reason := hostPort(l.addr)
		c.check(l.key, reason)
		if reason != "" || !l.enabled {
			continue
		}
		for _, earlier := range ls[:i] {
			if earlier.enabled && earlier.addr == l.addr && !c.unparsed[earlier.key] {
				c.check(l.key, fmt.Sprintf("%q is also %s", l.addr, earlier.key))
			}
		}
	}
}

// hostNames cleans HTTP_ALLOWED_HOSTS (lower case, no trailing dot, no
// empty entry) and checks each is a host name alone, or a domain after a
// dot: a scheme, port or path would match no request and leave the user
// refused without knowing why.
func hostNames(hosts *[]string) string {
	var clean []string
	for _, h := range *hosts {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h == "" {
			continue
		}
		if !validHostName(strings.TrimPrefix(h, ".")) {
			shown := strconv.Quote(h)
			if strings.Contains(h, "@") {
				shown = "an entry" // it may carry a password: never echoed
			}
			return shown + " is not a host name: give the name alone (nas.example.com), or a domain after a dot (.example.com), without scheme, port or path"
		}
		if !slices.Contains(clean, h) {
			clean = append(clean, h)
		}
	}
	*hosts = clean
	return ""
}

// validHostName reports whether name is a DNS name of letters, digits and
// hyphens, in labels of at most 63 characters.
func validHostName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// webhookSecret checks SMARTCAR_WEBHOOK_SECRET: it needs the HTTP server.
// Like every secret it is taken verbatim and never judged by its value, so
// no error tells anything about it; a token pasted with a stray space shows
// as refused signatures, whose warning says to check it.
func webhookSecret(cfg *Config) string {
	if cfg.SmartcarWebhookSecret != "" && !cfg.HTTPEnabled() {
		return "needs the HTTP server, which HTTP_LISTEN=off turns off: Smartcar delivers webhooks to POST /webhooks/smartcar on HTTP_LISTEN"
	}
	return ""
}

// IngressPort is the port Home Assistant's Ingress proxy reaches an add-on
// on; the add-on serves its web page there.
const IngressPort = "8099"

// ingressPort keeps the add-on's own listeners off the Ingress port.
func (c *checker) ingressPort(cfg *Config) {
	for _, l := range []struct {
		key, addr string
		enabled   bool
	}{
		{"BROKER_LISTEN", cfg.BrokerListen, cfg.EmbeddedBroker()},
		{"BROKER_TLS_LISTEN", cfg.BrokerTLSListen, cfg.EmbeddedBroker() && cfg.BrokerTLS()},
		{"HTTP_LISTEN", cfg.HTTPListen, cfg.HTTPEnabled()},
	} {
		if _, port, err := net.SplitHostPort(l.addr); l.enabled && err == nil && port == IngressPort {
			c.check(l.key, "port "+IngressPort+" is the add-on's Ingress port, where the web page is served to Home Assistant: choose another")
		}
	}
}

// oneOf lower-cases *val and reports whether it is one of allowed.
func oneOf(val *string, allowed ...string) string {
	*val = strings.ToLower(*val)
	if slices.Contains(allowed, *val) {
		return ""
	}
	return fmt.Sprintf("%q is not one of %s", *val, strings.Join(allowed, ", "))
}

// parseURL parses raw without letting url.Parse's error, which quotes the
// whole URL (and so any credentials in it), into a reason.
func parseURL(raw string) (*url.URL, string) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, "is not a valid URL: " + err.Error()
	}
	return u, ""
}

func httpURL(raw string) string {
	u, reason := parseURL(raw)
	switch {
	case reason != "":
		return reason
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q is not an absolute http:// or https:// URL", u.Redacted())
	case u.Hostname() == "":
		return fmt.Sprintf("%q has no host", u.Redacted())
	}
	return ""
}

// mqttURL accepts the schemes paho understands for a broker. Credentials in
// the URL are refused: the URL is logged, MQTT_PASSWORD is not.
func mqttURL(raw string) string {
	u, reason := parseURL(raw)
	switch {
	case reason != "":
		return reason
	case u.User != nil:
		return "must not contain credentials: use MQTT_USERNAME and MQTT_PASSWORD"
	case !slices.Contains([]string{"tcp", "ssl", "ws", "wss", "mqtt", "mqtts"}, u.Scheme):
		return fmt.Sprintf("%q: the scheme must be tcp, ssl, ws, wss, mqtt or mqtts (e.g. tcp://host:1883)", u.Redacted())
	case u.Hostname() == "":
		return fmt.Sprintf("%q has no host (e.g. tcp://host:1883)", u.Redacted())
	}
	return ""
}

// maxPEMFile bounds what readFile reads: far above any CA bundle, key or
// certificate, so only a wrong path (a disk image, say) gets near it.
const maxPEMFile = 16 << 20

// readFile reads a file the daemon will load later, so a typo in a path or a
// wrong file is a configuration error at start-up rather than a failure
// minutes in. data is nil, with no reason, for anything but a regular file
// (a pipe or a device): reading it now would consume or never finish it, so
// its content is left for the daemon to judge. Reasons never quote content.
func readFile(path string) (data []byte, reason string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Sprintf("cannot read %q: %v", path, pathless(err, path))
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return nil, fmt.Sprintf("cannot read %q: %v", path, pathless(err, path))
	case st.IsDir():
		return nil, fmt.Sprintf("%q is a directory, not a file", path)
	case !st.Mode().IsRegular():
		return nil, ""
	}
	data, err = io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	switch {
	case err != nil:
		return nil, fmt.Sprintf("cannot read %q: %v", path, pathless(err, path))
	case len(data) > maxPEMFile:
		return nil, fmt.Sprintf("%q is larger than %d MiB: not a PEM file", path, maxPEMFile>>20)
	}
	return data, ""
}

// pathless drops the path from an *os.PathError about path, which the
// reason quotes already; an error about another path (a parent directory)
// keeps it.
func pathless(err error, path string) error {
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Path == path {
		return pe.Err
	}
	return err
}

// caFile checks MQTT_CA_FILE as the MQTT client will load it: it must hold
// at least one certificate that x509.CertPool.AppendCertsFromPEM accepts.
func caFile(path string) string {
	if path == "" {
		return ""
	}
	data, reason := readFile(path)
	if reason != "" || data == nil {
		return reason
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Sprintf("%q contains no PEM certificate", path)
	}
	return ""
}

// brokerTLSPair checks BROKER_TLS_CERT and BROKER_TLS_KEY: both or neither,
// and the files as the embedded broker will load them (tls.X509KeyPair),
// blaming the one at fault. A certificate that is missing or does not parse
// is BROKER_TLS_CERT's problem, a key that is missing or does not parse is
// BROKER_TLS_KEY's, and a pair that does not match is reported once, on
// BROKER_TLS_KEY, naming both files. No reason quotes the key file's content
// or a parser's error about it, which could carry bytes of the key.
func (c *checker) brokerTLSPair(cfg *Config) {
	certPath, keyPath := cfg.BrokerTLSCert, cfg.BrokerTLSKey
	switch {
	case certPath != "" && keyPath == "":
		c.check("BROKER_TLS_KEY", "required when BROKER_TLS_CERT is set")
	case keyPath != "" && certPath == "":
		c.check("BROKER_TLS_CERT", "required when BROKER_TLS_KEY is set")
	}
	var certPEM, keyPEM []byte
	certOK, keyOK := false, false
	if certPath != "" {
		var reason string
		if certPEM, reason = readFile(certPath); reason == "" && certPEM != nil {
			reason = certificatePEM(certPath, certPEM)
		}
		c.check("BROKER_TLS_CERT", reason)
		certOK = reason == "" && certPEM != nil
	}
	if keyPath != "" {
		var reason string
		if keyPEM, reason = readFile(keyPath); reason == "" && keyPEM != nil {
			reason = privateKeyPEM(keyPath, keyPEM)
		}
		c.check("BROKER_TLS_KEY", reason)
		keyOK = reason == "" && keyPEM != nil
	}
	if certOK && keyOK {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			c.check("BROKER_TLS_KEY", fmt.Sprintf("%q is not the private key of the certificate in BROKER_TLS_CERT (%q)", keyPath, certPath))
		}
	}
}

// certificatePEM checks what tls.X509KeyPair needs of the certificate file:
// a CERTIFICATE block, the first of which (the server's own) parses.
func certificatePEM(path string, data []byte) string {
	var sawKey bool
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if isPrivateKeyBlock(block) {
			sawKey = true
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			// A certificate is public: its parse error may be shown.
			return fmt.Sprintf("%q: its first certificate does not parse: %v", path, err)
		}
		return ""
	}
	if sawKey {
		return fmt.Sprintf("%q contains no PEM certificate but a private key: are BROKER_TLS_CERT and BROKER_TLS_KEY swapped?", path)
	}
	return fmt.Sprintf("%q contains no PEM certificate", path)
}

// privateKeyPEM checks what tls.X509KeyPair needs of the key file: its first
// "… PRIVATE KEY" block is an unencrypted PKCS #1, PKCS #8 or SEC 1 key of a
// type TLS uses (RSA, ECDSA, Ed25519).
func privateKeyPEM(path string, data []byte) string {
	var sawCert bool
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type == "CERTIFICATE" {
			sawCert = true
		}
		if !isPrivateKeyBlock(block) {
			continue
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return fmt.Sprintf("%q holds an encrypted private key: the broker needs it unencrypted (openssl pkey -in <file> -out <new file>)", path)
		}
		if !tlsPrivateKey(block.Bytes) {
			return fmt.Sprintf("%q: its private key does not parse as an RSA, ECDSA or Ed25519 key (PKCS #1, PKCS #8 or SEC 1)", path)
		}
		return ""
	}
	if sawCert {
		return fmt.Sprintf("%q contains no PEM private key but a certificate: are BROKER_TLS_CERT and BROKER_TLS_KEY swapped?", path)
	}
	return fmt.Sprintf("%q contains no PEM private key", path)
}

// isPrivateKeyBlock is crypto/tls's test for the key block it uses.
func isPrivateKeyBlock(b *pem.Block) bool {
	return b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY")
}

// tlsPrivateKey tries the encodings crypto/tls tries, and accepts the key
// types it accepts.
func tlsPrivateKey(der []byte) bool {
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return true
	}
	if key, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		switch key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return true
		}
		return false
	}
	_, err := x509.ParseECPrivateKey(der)
	return err == nil
}

// keepsState reports whether command keeps state in DATA_DIR: run and auth
// always; demo only when DATA_DIR is set, since it otherwise makes a
// temporary directory of its own.
func keepsState(cfg *Config, command string) bool {
	switch command {
	case "run", "auth", "addon":
		return true
	case "demo":
		return cfg.IsSet("DATA_DIR")
	}
	return false
}

// writableDir makes sure the daemon can keep its state in dir: it creates
// the directory as the daemon would (0700, parents too), then creates and
// removes a probe file in it, which is what every state file needs (they
// are written beside their final name and renamed over it).
func writableDir(dir string) string {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Sprintf("cannot create directory %q: %v", dir, pathless(err, dir))
	}
	// Errors about the probe lose its path: its random name means nothing
	// to the user, and the reason names dir.
	f, err := os.CreateTemp(dir, ".smartcar2mqtt-probe-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Sprintf("cannot create files in %q: %v", dir, err)
	}
	name := f.Name()
	closeErr := f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Sprintf("cannot remove files in %q: %v", dir, pathless(err, name))
	}
	if closeErr != nil {
		return fmt.Sprintf("cannot write files in %q: %v", dir, pathless(closeErr, name))
	}
	return ""
}

// Smartcar's plans allow about PlanCallsPerVehicle calls per vehicle a
// month, and polling is the daemon's steady use of them. The count the poll
// rules (and the web page's estimate) use is the simplest honest one: one
// call per vehicle per poll, over a month of 30 days; commands and refresh
// presses come on top and are few.
const (
	PlanCallsPerVehicle = 500
	quotaMonth          = 30 * 24 * time.Hour
	minPollInterval     = time.Minute
	// advisedPoll is the round interval we advise instead: 360 reads a month,
	// which leaves room in the plan for commands and refreshes.
	advisedPoll = "2h"
)

// ReadsPerMonth is how many times polling every d reads each car in a
// month; 0 when polling is off.
func ReadsPerMonth(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(quotaMonth / d)
}

// pollTooOften refuses a poll interval under a minute, 0 (no polling) aside:
// it would spend a month of the plan in hours, leaving nothing for the door
// commands the daemon exists for.
func pollTooOften(d time.Duration) string {
	if d <= 0 || d >= minPollInterval {
		return ""
	}
	return fmt.Sprintf("%s reads each car about %s times a month, which spends a month of Smartcar quota (plans allow about %d calls per vehicle per month) in %s: the minimum is %s; set %s or more (%s is the default, 0 disables polling)",
		ShortDuration(d), thousands(ReadsPerMonth(d)), PlanCallsPerVehicle, roughly(PlanCallsPerVehicle*d), ShortDuration(minPollInterval), advisedPoll, pollDefault())
}

// pollWarnings warns of an interval allowed, but reading each car more often
// than the plan allows.
func pollWarnings(d time.Duration) []string {
	if d <= 0 || ReadsPerMonth(d) <= PlanCallsPerVehicle {
		return nil
	}
	return []string{fmt.Sprintf("SMARTCAR_POLL_INTERVAL=%s reads each car about %s times a month; Smartcar plans allow about %d calls per vehicle per month: set %s or more (%s is the default)",
		ShortDuration(d), thousands(ReadsPerMonth(d)), PlanCallsPerVehicle, advisedPoll, pollDefault())}
}

// pollDefault is SMARTCAR_POLL_INTERVAL's default, from its tag, so the
// advice cannot drift from the default.
func pollDefault() string {
	f, _ := reflect.TypeFor[Config]().FieldByName("SmartcarPollInterval")
	return f.Tag.Get("default")
}

// ShortDuration writes d as a user would: 30m, 2h, 1h30m rather than
// time.Duration's 30m0s, 2h0m0s, 1h30m0s.
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// roughly writes a span as a count of minutes or hours.
func roughly(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "less than a minute"
	case d < 90*time.Minute:
		m := int64(d.Round(time.Minute) / time.Minute)
		if m == 1 {
			return "about a minute"
		}
		return fmt.Sprintf("about %d minutes", m)
	}
	return fmt.Sprintf("about %d hours", int64(d.Round(time.Hour)/time.Hour))
}

// thousands writes n with comma separators: 86,400.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// topicRoot checks a root under which we build topics ("base/V/..."):
// discovery's rule for one, so the daemon never starts with a root it then
// cannot publish discovery under, plus ours: no $ (reserved for the broker),
// and no leading slash or empty level, which would produce odd topics.
func topicRoot(t string) string {
	if err := discovery.ValidateTopicRoot(t); err != nil {
		return err.Error()
	}
	switch {
	case strings.HasPrefix(t, "$"):
		return fmt.Sprintf("%q must not start with $ (reserved for the broker)", t)
	case strings.HasPrefix(t, "/"):
		return fmt.Sprintf("%q must not start with /", t)
	case strings.Contains(t, "//"):
		return fmt.Sprintf("%q must not contain an empty level (//)", t)
	}
	return ""
}

// topic checks a topic we subscribe to literally (HA_STATUS_TOPIC).
func topic(t string) string {
	switch {
	case t == "":
		return "must not be empty"
	case strings.ContainsAny(t, "+#"):
		return fmt.Sprintf("%q must not contain the MQTT wildcards + or #", t)
	case strings.ContainsRune(t, 0) || !utf8.ValidString(t):
		return "must be valid UTF-8 without NUL characters"
	case len(t) > 65535:
		return "is longer than MQTT's 65535 bytes"
	case strings.HasPrefix(t, "$"):
		return fmt.Sprintf("%q must not start with $ (reserved for the broker)", t)
	}
	return ""
}

// hostPort checks a listen address such as ":8080" or "127.0.0.1:1883".
func hostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (e.g. :8080 or 127.0.0.1:8080)", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("%q: the port must be a number from 0 to 65535", addr)
	}
	if strings.ContainsFunc(host, unicode.IsSpace) {
		return fmt.Sprintf("%q: the host must not contain whitespace", addr)
	}
	return ""
}
