package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// specVariables is the product specification's list (plus BROKER_TLS_LISTEN, named in the
// BROKER_TLS_* row), written out by hand so a renamed or dropped tag fails.
func specVariables() []string {
	return []string{
		"SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "SMARTCAR_APPLICATION_ID",
		"SMARTCAR_API_VERSION", "SMARTCAR_USER_ID", "SMARTCAR_REDIRECT_URI",
		"SMARTCAR_MODE", "SMARTCAR_REFRESH_TOKEN", "SMARTCAR_VEHICLE_IDS",
		"SMARTCAR_API_URL", "SMARTCAR_TOKEN_URL", "SMARTCAR_CONNECT_URL",
		"SMARTCAR_POLL_INTERVAL", "SMARTCAR_TIMEOUT",
		"MQTT_URL", "MQTT_USERNAME", "MQTT_PASSWORD", "MQTT_CA_FILE",
		"MQTT_CLIENT_ID", "MQTT_BASE_TOPIC",
		"HA_DISCOVERY_PREFIX", "HA_STATUS_TOPIC",
		"BROKER_LISTEN", "BROKER_USERNAME", "BROKER_PASSWORD", "BROKER_ALLOW_ANONYMOUS",
		"BROKER_TLS_CERT", "BROKER_TLS_KEY", "BROKER_TLS_LISTEN",
		"DATA_DIR", "HTTP_LISTEN", "LOG_LEVEL", "LOG_FORMAT",
	}
}

// valid is the smallest environment `run` accepts.
func valid() map[string]string {
	return map[string]string{
		"SMARTCAR_CLIENT_ID":     "client-id",
		"SMARTCAR_CLIENT_SECRET": "client-secret",
		"BROKER_USERNAME":        "ha",
		"BROKER_PASSWORD":        "broker-pass",
	}
}

// with returns a copy of base with kv pairs applied.
func with(base map[string]string, kv ...string) map[string]string {
	m := maps.Clone(base)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func without(base map[string]string, keys ...string) map[string]string {
	m := maps.Clone(base)
	for _, k := range keys {
		delete(m, k)
	}
	return m
}

// mapEnv is a LookupFunc over m.
func mapEnv(m map[string]string) LookupFunc {
	return func(key string) (string, bool) {
		v, ok := m[key]
		return v, ok
	}
}

func load(t *testing.T, command string, env map[string]string) (*Config, *Error) {
	t.Helper()
	cfg, err := LoadFrom(command, mapEnv(env))
	if err == nil {
		if cfg == nil {
			t.Fatal("nil Config without error")
		}
		return cfg, nil
	}
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error is %T, want *Error: %v", err, err)
	}
	if cfg != nil {
		t.Error("Config returned along with an error")
	}
	return nil, cerr
}

func vars(e *Error) []string {
	if e == nil {
		return nil
	}
	var out []string
	for _, p := range e.Problems {
		if !slices.Contains(out, p.Var) {
			out = append(out, p.Var)
		}
	}
	return out
}

func tempFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("-----BEGIN X-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEveryVariableTagged(t *testing.T) {
	var keys []string
	for _, v := range variables(&Config{}) {
		if v.desc == "" {
			t.Errorf("%s has no desc tag", v.key)
		}
		keys = append(keys, v.key)
	}
	if !slices.Equal(keys, specVariables()) {
		t.Errorf("variables = %v\nwant SPEC's %v", keys, specVariables())
	}
	// Every exported field must be a variable: an untagged one would be
	// silently left at its zero value.
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.IsExported() && f.Tag.Get("envconfig") == "" {
			t.Errorf("exported field %s has no envconfig tag", f.Name)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, cerr := load(t, "demo", nil)
	if cerr != nil {
		t.Fatalf("demo with an empty environment: %v", cerr)
	}
	want := &Config{
		SmartcarRedirectURI:  "http://localhost:8000/callback",
		SmartcarMode:         "live",
		SmartcarAPIVersion:   "auto",
		SmartcarAPIURL:       "https://vehicle.api.smartcar.com/v3",
		SmartcarTokenURL:     "https://iam.smartcar.com/oauth2/token",
		SmartcarConnectURL:   "https://connect.smartcar.com/oauth/authorize",
		SmartcarPollInterval: 6 * time.Hour,
		SmartcarTimeout:      310 * time.Second,
		MQTTClientID:         "smartcar2mqtt",
		MQTTBaseTopic:        "smartcar2mqtt",
		HADiscoveryPrefix:    "homeassistant",
		HAStatusTopic:        "homeassistant/status",
		BrokerListen:         ":1883",
		BrokerTLSListen:      ":8883",
		DataDir:              "./data",
		HTTPListen:           ":8080",
		LogLevel:             "info",
		LogFormat:            "text",
		set:                  map[string]bool{},
		api:                  APIV3,
		apiWhy:               cfg.APIVersionReason(),
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
	if !cfg.EmbeddedBroker() || !cfg.HTTPEnabled() || cfg.BrokerTLS() {
		t.Errorf("EmbeddedBroker=%v HTTPEnabled=%v BrokerTLS=%v, want true true false",
			cfg.EmbeddedBroker(), cfg.HTTPEnabled(), cfg.BrokerTLS())
	}
	if cfg.IsSet("DATA_DIR") {
		t.Error("IsSet(DATA_DIR) with DATA_DIR unset")
	}
}

// TestEmptyMeansDefault: `KEY=` and `KEY=  ` give the default, for every
// variable that has one, and set nothing.
func TestEmptyMeansDefault(t *testing.T) {
	base, cerr := load(t, "run", valid())
	if cerr != nil {
		t.Fatal(cerr)
	}
	for _, v := range variables(&Config{}) {
		if v.def == "" {
			continue
		}
		for _, empty := range []string{"", "  "} {
			t.Run(v.key+"="+empty, func(t *testing.T) {
				cfg, cerr := load(t, "run", with(valid(), v.key, empty))
				if cerr != nil {
					t.Fatalf("%s=%q: %v", v.key, empty, cerr)
				}
				if !reflect.DeepEqual(cfg, base) {
					t.Errorf("%s=%q:\n got %+v\nwant %+v", v.key, empty, cfg, base)
				}
				if cfg.IsSet(v.key) {
					t.Errorf("IsSet(%s) after %s=%q", v.key, v.key, empty)
				}
			})
		}
	}
}

func TestRequired(t *testing.T) {
	tests := []struct {
		name    string
		command string
		env     map[string]string
		want    []string // offending variables, sorted
	}{
		{"run ok", "run", valid(), nil},
		{"run without client id", "run", without(valid(), "SMARTCAR_CLIENT_ID"), []string{"SMARTCAR_CLIENT_ID"}},
		{"run with empty client id", "run", with(valid(), "SMARTCAR_CLIENT_ID", ""), []string{"SMARTCAR_CLIENT_ID"}},
		{"run without client secret", "run", without(valid(), "SMARTCAR_CLIENT_SECRET"), []string{"SMARTCAR_CLIENT_SECRET"}},
		{"run with empty client secret", "run", with(valid(), "SMARTCAR_CLIENT_SECRET", ""), []string{"SMARTCAR_CLIENT_SECRET"}},
		{"run with whitespace client secret", "run", with(valid(), "SMARTCAR_CLIENT_SECRET", " "), []string{"SMARTCAR_CLIENT_SECRET"}},
		{"run empty environment", "run", nil, []string{"BROKER_PASSWORD", "BROKER_USERNAME", "SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET"}},
		{"auth empty environment", "auth", nil, []string{"SMARTCAR_APPLICATION_ID", "SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET"}},
		{"auth without client id", "auth", without(valid(), "SMARTCAR_CLIENT_ID"), []string{"SMARTCAR_APPLICATION_ID", "SMARTCAR_CLIENT_ID"}},
		{"auth v3 without application id", "auth", with(valid(), "SMARTCAR_CLIENT_ID", "client_abc"), []string{"SMARTCAR_APPLICATION_ID"}},
		{"auth v3 with application id", "auth", with(valid(), "SMARTCAR_CLIENT_ID", "client_abc", "SMARTCAR_APPLICATION_ID", "app-1"), nil},
		{"run v3 needs no application id", "run", with(valid(), "SMARTCAR_CLIENT_ID", "client_abc"), nil},
		{"v2 forced with a v3 client id", "run", with(valid(), "SMARTCAR_CLIENT_ID", "client_abc", "SMARTCAR_API_VERSION", "v2"), []string{"SMARTCAR_API_VERSION"}},
		{"unknown API version", "run", with(valid(), "SMARTCAR_API_VERSION", "v4"), []string{"SMARTCAR_API_VERSION"}},
		{"auth with empty client secret", "auth", with(valid(), "SMARTCAR_CLIENT_SECRET", ""), []string{"SMARTCAR_CLIENT_SECRET"}},
		{"auth needs no broker account", "auth", without(valid(), "BROKER_USERNAME", "BROKER_PASSWORD"), nil},
		{"demo empty environment", "demo", nil, nil},
		{"demo empty values", "demo", map[string]string{"SMARTCAR_CLIENT_ID": "", "SMARTCAR_CLIENT_SECRET": ""}, nil},
		{"healthcheck empty environment", "healthcheck", nil, nil},

		{"run embedded broker without account", "run", without(valid(), "BROKER_USERNAME", "BROKER_PASSWORD"), []string{"BROKER_PASSWORD", "BROKER_USERNAME"}},
		{"run embedded broker with empty account", "run", with(valid(), "BROKER_USERNAME", "", "BROKER_PASSWORD", ""), []string{"BROKER_PASSWORD", "BROKER_USERNAME"}},
		{"run embedded broker without password", "run", without(valid(), "BROKER_PASSWORD"), []string{"BROKER_PASSWORD"}},
		{"run embedded broker without username", "run", without(valid(), "BROKER_USERNAME"), []string{"BROKER_USERNAME"}},
		{"run anonymous embedded broker", "run", with(without(valid(), "BROKER_USERNAME", "BROKER_PASSWORD"), "BROKER_ALLOW_ANONYMOUS", "true"), nil},
		{"run anonymous false", "run", with(without(valid(), "BROKER_USERNAME", "BROKER_PASSWORD"), "BROKER_ALLOW_ANONYMOUS", "false"), []string{"BROKER_PASSWORD", "BROKER_USERNAME"}},
		{"run unparsable anonymous reports only that", "run", with(without(valid(), "BROKER_USERNAME", "BROKER_PASSWORD"), "BROKER_ALLOW_ANONYMOUS", "yes"), []string{"BROKER_ALLOW_ANONYMOUS"}},
		{"run external broker needs no broker account", "run", with(without(valid(), "BROKER_USERNAME", "BROKER_PASSWORD"), "MQTT_URL", "tcp://mqtt:1883"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cerr := load(t, tt.command, tt.env)
			if got := vars(cerr); !slices.Equal(got, tt.want) {
				t.Fatalf("offending variables = %v, want %v (error: %v)", got, tt.want, cerr)
			}
			if cerr == nil {
				return
			}
			msg := cerr.Error()
			for _, v := range tt.want {
				if !strings.Contains(msg, v) {
					t.Errorf("Error() does not name %s:\n%s", v, msg)
				}
			}
		})
	}
}

func TestValidation(t *testing.T) {
	ca := tempFile(t, "ca.pem")
	cert, key := tempFile(t, "cert.pem"), tempFile(t, "key.pem")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	dir := t.TempDir()

	tests := []struct {
		name string
		kv   []string
		want string // the one offending variable, "" for none
	}{
		{"mode simulated", []string{"SMARTCAR_MODE", "simulated"}, ""},
		{"mode upper case", []string{"SMARTCAR_MODE", "TEST"}, ""},
		{"mode bad", []string{"SMARTCAR_MODE", "sandbox"}, "SMARTCAR_MODE"},
		{"api url http", []string{"SMARTCAR_API_URL", "http://127.0.0.1:9000/v2.0"}, ""},
		{"api url relative", []string{"SMARTCAR_API_URL", "/v2.0"}, "SMARTCAR_API_URL"},
		{"api url ftp", []string{"SMARTCAR_API_URL", "ftp://x/v2.0"}, "SMARTCAR_API_URL"},
		{"api url no host", []string{"SMARTCAR_API_URL", "https:///v2.0"}, "SMARTCAR_API_URL"},
		{"token url bad", []string{"SMARTCAR_TOKEN_URL", "auth.smartcar.com"}, "SMARTCAR_TOKEN_URL"},
		{"connect url bad", []string{"SMARTCAR_CONNECT_URL", "https://bad host/"}, "SMARTCAR_CONNECT_URL"},
		{"redirect uri bad", []string{"SMARTCAR_REDIRECT_URI", "localhost:8000/callback"}, "SMARTCAR_REDIRECT_URI"},
		{"poll zero disables", []string{"SMARTCAR_POLL_INTERVAL", "0"}, ""},
		{"poll negative", []string{"SMARTCAR_POLL_INTERVAL", "-1h"}, "SMARTCAR_POLL_INTERVAL"},
		{"poll not a duration", []string{"SMARTCAR_POLL_INTERVAL", "6"}, "SMARTCAR_POLL_INTERVAL"},
		{"timeout zero", []string{"SMARTCAR_TIMEOUT", "0s"}, "SMARTCAR_TIMEOUT"},
		{"timeout negative", []string{"SMARTCAR_TIMEOUT", "-5s"}, "SMARTCAR_TIMEOUT"},
		{"timeout not a duration", []string{"SMARTCAR_TIMEOUT", "abc"}, "SMARTCAR_TIMEOUT"},
		{"vehicle ids ok", []string{"SMARTCAR_VEHICLE_IDS", "a, b,,c "}, ""},
		{"vehicle id with slash", []string{"SMARTCAR_VEHICLE_IDS", "a,b/c"}, "SMARTCAR_VEHICLE_IDS"},
		{"vehicle id with plus", []string{"SMARTCAR_VEHICLE_IDS", "a+b"}, "SMARTCAR_VEHICLE_IDS"},
		{"vehicle id with hash", []string{"SMARTCAR_VEHICLE_IDS", "#"}, "SMARTCAR_VEHICLE_IDS"},
		{"vehicle id with space", []string{"SMARTCAR_VEHICLE_IDS", "a b"}, "SMARTCAR_VEHICLE_IDS"},
		{"vehicle id with dot", []string{"SMARTCAR_VEHICLE_IDS", "a.b"}, "SMARTCAR_VEHICLE_IDS"},
		{"vehicle id non-ascii", []string{"SMARTCAR_VEHICLE_IDS", "v1,é"}, "SMARTCAR_VEHICLE_IDS"},
		{"mqtt tcp", []string{"MQTT_URL", "tcp://mqtt:1883"}, ""},
		{"mqtt ssl", []string{"MQTT_URL", "ssl://mqtt:8883"}, ""},
		{"mqtt ws", []string{"MQTT_URL", "ws://mqtt:9001/mqtt"}, ""},
		{"mqtt wss", []string{"MQTT_URL", "wss://mqtt/mqtt"}, ""},
		{"mqtt mqtt", []string{"MQTT_URL", "mqtt://mqtt:1883"}, ""},
		{"mqtt mqtts", []string{"MQTT_URL", "mqtts://mqtt:8883"}, ""},
		{"mqtt http", []string{"MQTT_URL", "http://mqtt:1883"}, "MQTT_URL"},
		{"mqtt no scheme", []string{"MQTT_URL", "mqtt:1883"}, "MQTT_URL"},
		{"mqtt no host", []string{"MQTT_URL", "tcp://:1883"}, "MQTT_URL"},
		{"mqtt credentials", []string{"MQTT_URL", "tcp://u:p@mqtt:1883"}, "MQTT_URL"},
		{"mqtt password without username", []string{"MQTT_URL", "tcp://mqtt:1883", "MQTT_PASSWORD", "p"}, "MQTT_USERNAME"},
		{"mqtt username without password", []string{"MQTT_URL", "tcp://mqtt:1883", "MQTT_USERNAME", "u"}, ""},
		{"ca file readable", []string{"MQTT_CA_FILE", ca}, ""},
		{"ca file missing", []string{"MQTT_CA_FILE", missing}, "MQTT_CA_FILE"},
		{"ca file directory", []string{"MQTT_CA_FILE", dir}, "MQTT_CA_FILE"},
		{"base topic nested", []string{"MQTT_BASE_TOPIC", "home/cars"}, ""},
		{"base topic plus", []string{"MQTT_BASE_TOPIC", "cars/+"}, "MQTT_BASE_TOPIC"},
		{"base topic hash", []string{"MQTT_BASE_TOPIC", "cars/#"}, "MQTT_BASE_TOPIC"},
		{"base topic leading slash", []string{"MQTT_BASE_TOPIC", "/cars"}, "MQTT_BASE_TOPIC"},
		{"base topic trailing slash", []string{"MQTT_BASE_TOPIC", "cars/"}, "MQTT_BASE_TOPIC"},
		{"base topic empty level", []string{"MQTT_BASE_TOPIC", "a//b"}, "MQTT_BASE_TOPIC"},
		{"base topic dollar", []string{"MQTT_BASE_TOPIC", "$SYS"}, "MQTT_BASE_TOPIC"},
		{"base topic control character", []string{"MQTT_BASE_TOPIC", "cars\x01x"}, "MQTT_BASE_TOPIC"},
		{"base topic C1 control U+0085", []string{"MQTT_BASE_TOPIC", "car\u0085s"}, "MQTT_BASE_TOPIC"},
		{"base topic non-character", []string{"MQTT_BASE_TOPIC", "cars\ufffe"}, "MQTT_BASE_TOPIC"},
		{"base topic too long for discovery", []string{"MQTT_BASE_TOPIC", strings.Repeat("c", 60001)}, "MQTT_BASE_TOPIC"},
		{"discovery prefix control character", []string{"HA_DISCOVERY_PREFIX", "home\x7fassistant"}, "HA_DISCOVERY_PREFIX"},
		{"discovery prefix trailing slash", []string{"HA_DISCOVERY_PREFIX", "homeassistant/"}, "HA_DISCOVERY_PREFIX"},
		{"discovery prefix wildcard", []string{"HA_DISCOVERY_PREFIX", "#"}, "HA_DISCOVERY_PREFIX"},
		{"status topic custom", []string{"HA_STATUS_TOPIC", "hass/status"}, ""},
		{"status topic wildcard", []string{"HA_STATUS_TOPIC", "+/status"}, "HA_STATUS_TOPIC"},
		{"broker listen host", []string{"BROKER_LISTEN", "127.0.0.1:1883"}, ""},
		{"broker listen ipv6", []string{"BROKER_LISTEN", "[::1]:1883"}, ""},
		{"broker listen no port", []string{"BROKER_LISTEN", "1883"}, "BROKER_LISTEN"},
		{"broker listen bad port", []string{"BROKER_LISTEN", ":99999"}, "BROKER_LISTEN"},
		{"http listen bad", []string{"HTTP_LISTEN", "localhost"}, "HTTP_LISTEN"},
		{"http listen off", []string{"HTTP_LISTEN", "off"}, ""},
		{"http listen OFF", []string{"HTTP_LISTEN", "OFF"}, ""},
		{"http listen clashes with broker", []string{"HTTP_LISTEN", ":1883"}, "HTTP_LISTEN"},
		{"http listen may reuse broker port with external broker", []string{"MQTT_URL", "tcp://mqtt:1883", "HTTP_LISTEN", ":1883"}, ""},
		{"tls pair", []string{"BROKER_TLS_CERT", cert, "BROKER_TLS_KEY", key}, ""},
		{"tls cert only", []string{"BROKER_TLS_CERT", cert}, "BROKER_TLS_KEY"},
		{"tls key only", []string{"BROKER_TLS_KEY", key}, "BROKER_TLS_CERT"},
		{"tls cert missing", []string{"BROKER_TLS_CERT", missing, "BROKER_TLS_KEY", key}, "BROKER_TLS_CERT"},
		{"tls key missing", []string{"BROKER_TLS_CERT", cert, "BROKER_TLS_KEY", missing}, "BROKER_TLS_KEY"},
		{"tls listen bad", []string{"BROKER_TLS_LISTEN", "8883"}, "BROKER_TLS_LISTEN"},
		{"tls listen clashes", []string{"BROKER_TLS_CERT", cert, "BROKER_TLS_KEY", key, "BROKER_TLS_LISTEN", ":1883"}, "BROKER_TLS_LISTEN"},
		{"allow anonymous bad", []string{"BROKER_ALLOW_ANONYMOUS", "yes"}, "BROKER_ALLOW_ANONYMOUS"},
		{"log level warn", []string{"LOG_LEVEL", "WARN"}, ""},
		{"log level bad", []string{"LOG_LEVEL", "verbose"}, "LOG_LEVEL"},
		{"log format json", []string{"LOG_FORMAT", "json"}, ""},
		{"log format bad", []string{"LOG_FORMAT", "xml"}, "LOG_FORMAT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, command := range []string{"run", "demo"} {
				_, cerr := load(t, command, with(valid(), tt.kv...))
				var want []string
				if tt.want != "" {
					want = []string{tt.want}
				}
				if got := vars(cerr); !slices.Equal(got, want) {
					t.Errorf("%s: offending variables = %v, want %v (error: %v)", command, got, want, cerr)
				}
			}
		})
	}
}

func TestNormalisation(t *testing.T) {
	cfg, cerr := load(t, "run", with(valid(),
		"SMARTCAR_VEHICLE_IDS", " v1, ,v2,,v1 ",
		"SMARTCAR_MODE", "Simulated",
		"LOG_LEVEL", " DEBUG ",
		"LOG_FORMAT", "JSON",
		"HTTP_LISTEN", "Off",
		"MQTT_BASE_TOPIC", "  cars ",
		"SMARTCAR_CLIENT_SECRET", " spaced secret ",
	))
	if cerr != nil {
		t.Fatal(cerr)
	}
	if want := []string{"v1", "v2"}; !slices.Equal(cfg.SmartcarVehicleIDs, want) {
		t.Errorf("SmartcarVehicleIDs = %q, want %q", cfg.SmartcarVehicleIDs, want)
	}
	if cfg.SmartcarMode != "simulated" || cfg.LogLevel != "debug" || cfg.LogFormat != "json" {
		t.Errorf("mode, level, format = %q %q %q, want lower case", cfg.SmartcarMode, cfg.LogLevel, cfg.LogFormat)
	}
	if cfg.HTTPListen != "" || cfg.HTTPEnabled() {
		t.Errorf("HTTP_LISTEN=Off: HTTPListen = %q, HTTPEnabled = %v", cfg.HTTPListen, cfg.HTTPEnabled())
	}
	if cfg.MQTTBaseTopic != "cars" {
		t.Errorf("MQTTBaseTopic = %q, want trimmed", cfg.MQTTBaseTopic)
	}
	if got := cfg.SmartcarClientSecret.Reveal(); got != " spaced secret " {
		t.Errorf("secret = %q, want it verbatim", got)
	}
	if !cfg.IsSet("SMARTCAR_VEHICLE_IDS") || cfg.IsSet("DATA_DIR") {
		t.Error("IsSet wrong")
	}
}

func TestExplicitValues(t *testing.T) {
	cfg, cerr := load(t, "run", with(valid(),
		"MQTT_URL", "ssl://broker.lan:8883",
		"SMARTCAR_POLL_INTERVAL", "90s",
		"BROKER_ALLOW_ANONYMOUS", "true",
		"DATA_DIR", "/data",
	))
	if cerr != nil {
		t.Fatal(cerr)
	}
	if cfg.EmbeddedBroker() {
		t.Error("EmbeddedBroker() with MQTT_URL set")
	}
	if cfg.SmartcarPollInterval != 90*time.Second || !cfg.BrokerAllowAnonymous || cfg.DataDir != "/data" || !cfg.IsSet("DATA_DIR") {
		t.Errorf("got %+v", cfg)
	}
}

// TestAllProblemsReported: problems of every kind at once, parse errors
// included, all reported and sorted.
func TestAllProblemsReported(t *testing.T) {
	env := map[string]string{
		"SMARTCAR_CLIENT_SECRET": "s3cr3t-value",
		"SMARTCAR_TIMEOUT":       "abc",
		"SMARTCAR_POLL_INTERVAL": "soon",
		"SMARTCAR_MODE":          "prod",
		"MQTT_BASE_TOPIC":        "cars/#",
		"LOG_LEVEL":              "loud",
		"HTTP_LISTEN":            "8080",
		"BROKER_PASSWORD":        "hunter2-value",
	}
	_, cerr := load(t, "run", env)
	want := []string{
		"BROKER_USERNAME", "HTTP_LISTEN", "LOG_LEVEL", "MQTT_BASE_TOPIC",
		"SMARTCAR_CLIENT_ID", "SMARTCAR_MODE", "SMARTCAR_POLL_INTERVAL", "SMARTCAR_TIMEOUT",
	}
	if got := vars(cerr); !slices.Equal(got, want) {
		t.Fatalf("offending variables = %v, want %v", got, want)
	}
	msg := cerr.Error()
	lines := strings.Split(msg, "\n")[1:]
	if len(lines) != len(want) {
		t.Fatalf("want one line per problem:\n%s", msg)
	}
	for i, v := range want {
		if !strings.HasPrefix(strings.TrimSpace(lines[i]), v+": ") {
			t.Errorf("line %d = %q, want it to start with %s (sorted)", i, lines[i], v)
		}
	}
	for _, secret := range []string{"s3cr3t-value", "hunter2-value"} {
		if strings.Contains(msg, secret) {
			t.Errorf("Error() contains a secret:\n%s", msg)
		}
	}
}

func TestBadDurationNamesVariable(t *testing.T) {
	for _, key := range []string{"SMARTCAR_TIMEOUT", "SMARTCAR_POLL_INTERVAL"} {
		_, cerr := load(t, "demo", map[string]string{key: "abc"})
		if cerr == nil || len(cerr.Problems) != 1 || cerr.Problems[0].Var != key {
			t.Fatalf("%s=abc: got %v, want one problem naming it", key, cerr)
		}
		if msg := cerr.Error(); !strings.Contains(msg, key) || !strings.Contains(msg, `"abc"`) {
			t.Errorf("Error() = %q, want the variable and the bad value", msg)
		}
	}
}

func TestErrorSortsProblems(t *testing.T) {
	e := &Error{Problems: []Problem{{"Z", "z"}, {"A", "b"}, {"A", "a"}}}
	want := "invalid configuration (see smartcar2mqtt --help):\n  A: a\n  A: b\n  Z: z"
	if got := e.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if e.Problems[0].Var != "Z" {
		t.Error("Error() reordered the caller's slice")
	}
}

// TestLoadReadsProcessEnvironment covers Load's use of os.LookupEnv, with
// every variable pinned by t.Setenv so the real environment cannot leak in.
func TestLoadReadsProcessEnvironment(t *testing.T) {
	for _, k := range specVariables() {
		t.Setenv(k, "")
	}
	t.Setenv("SMARTCAR_TIMEOUT", "1m")
	cfg, err := Load("demo")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SmartcarTimeout != time.Minute || cfg.HTTPListen != ":8080" {
		t.Errorf("timeout %v, http %q", cfg.SmartcarTimeout, cfg.HTTPListen)
	}
}

// TestAgreesWithEnvconfig: the tags are real envconfig tags and LoadFrom
// decodes like envconfig.Process whenever every variable is set non-empty.
func TestAgreesWithEnvconfig(t *testing.T) {
	env := map[string]string{
		"SMARTCAR_CLIENT_ID":      "id",
		"SMARTCAR_CLIENT_SECRET":  "secret",
		"SMARTCAR_APPLICATION_ID": "app-id",
		"SMARTCAR_API_VERSION":    "v2",
		"SMARTCAR_USER_ID":        "user-1",
		"SMARTCAR_REDIRECT_URI":   "http://localhost:9000/cb",
		"SMARTCAR_MODE":           "test",
		"SMARTCAR_REFRESH_TOKEN":  "refresh",
		"SMARTCAR_VEHICLE_IDS":    "v1,v2",
		"SMARTCAR_API_URL":        "http://127.0.0.1:1/v2.0",
		"SMARTCAR_TOKEN_URL":      "http://127.0.0.1:1/oauth/token",
		"SMARTCAR_CONNECT_URL":    "http://127.0.0.1:1/oauth/authorize",
		"SMARTCAR_POLL_INTERVAL":  "1h30m",
		"SMARTCAR_TIMEOUT":        "45s",
		"MQTT_URL":                "tcp://mqtt:1883",
		"MQTT_USERNAME":           "mu",
		"MQTT_PASSWORD":           "mp",
		"MQTT_CA_FILE":            tempFile(t, "ca.pem"),
		"MQTT_CLIENT_ID":          "cid",
		"MQTT_BASE_TOPIC":         "cars",
		"HA_DISCOVERY_PREFIX":     "ha",
		"HA_STATUS_TOPIC":         "ha/status",
		"BROKER_LISTEN":           ":1884",
		"BROKER_USERNAME":         "bu",
		"BROKER_PASSWORD":         "bp",
		"BROKER_ALLOW_ANONYMOUS":  "1",
		"BROKER_TLS_CERT":         tempFile(t, "cert.pem"),
		"BROKER_TLS_KEY":          tempFile(t, "key.pem"),
		"BROKER_TLS_LISTEN":       ":8884",
		"DATA_DIR":                "/tmp/x",
		"HTTP_LISTEN":             ":8081",
		"LOG_LEVEL":               "debug",
		"LOG_FORMAT":              "json",
	}
	if len(env) != len(specVariables()) {
		t.Fatalf("env sets %d variables, want all %d", len(env), len(specVariables()))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var want Config
	if err := envconfig.Process("", &want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFrom("run", mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.set) != len(specVariables()) {
		t.Errorf("IsSet true for %d variables, want %d", len(got.set), len(specVariables()))
	}
	got.set, got.api, got.apiWhy = nil, "", ""
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("LoadFrom and envconfig.Process differ:\n got %+v\nwant %+v", *got, want)
	}
}
