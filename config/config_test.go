package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
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

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
)

// specVariables is the product specification's list (plus BROKER_TLS_LISTEN, named in the
// BROKER_TLS_* row, and HTTP_ALLOWED_HOSTS, which the page's guard against DNS
// rebinding needs), written out by hand so a renamed or dropped tag fails.
func specVariables() []string {
	return []string{
		"SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "SMARTCAR_APPLICATION_ID",
		"SMARTCAR_API_VERSION", "SMARTCAR_USER_ID", "SMARTCAR_REDIRECT_URI",
		"SMARTCAR_MODE", "SMARTCAR_REFRESH_TOKEN", "SMARTCAR_VEHICLE_IDS",
		"SMARTCAR_API_URL", "SMARTCAR_TOKEN_URL", "SMARTCAR_CONNECT_URL",
		"SMARTCAR_WEBHOOK_SECRET", "SMARTCAR_POLL_INTERVAL", "SMARTCAR_TIMEOUT",
		"MQTT_URL", "MQTT_USERNAME", "MQTT_PASSWORD", "MQTT_CA_FILE",
		"MQTT_CLIENT_ID", "MQTT_BASE_TOPIC",
		"HA_DISCOVERY_PREFIX", "HA_STATUS_TOPIC",
		"BROKER_LISTEN", "BROKER_USERNAME", "BROKER_PASSWORD", "BROKER_ALLOW_ANONYMOUS",
		"BROKER_TLS_CERT", "BROKER_TLS_KEY", "BROKER_TLS_LISTEN",
		"DATA_DIR", "HTTP_LISTEN", "HTTP_ALLOWED_HOSTS", "LOG_LEVEL", "LOG_FORMAT",
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

// tempFile writes data to a new file name in a temporary directory.
func tempFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
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
	cert, key := itest.SelfSignedCert(t, t.TempDir(), "broker.test")
	ca := cert
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
		{"webhook secret", []string{"SMARTCAR_WEBHOOK_SECRET", "amt-0f1e2d"}, ""},
		{"webhook secret pasted with a line break", []string{"SMARTCAR_WEBHOOK_SECRET", "amt-0f1e2d\n"}, ""},
		{"webhook secret with a space in it", []string{"SMARTCAR_WEBHOOK_SECRET", "amt 0f1e2d"}, ""},
		{"webhook secret without the HTTP server", []string{"SMARTCAR_WEBHOOK_SECRET", "amt-0f1e2d", "HTTP_LISTEN", "off"}, "SMARTCAR_WEBHOOK_SECRET"},
		{"poll zero disables", []string{"SMARTCAR_POLL_INTERVAL", "0"}, ""},
		{"poll negative", []string{"SMARTCAR_POLL_INTERVAL", "-1h"}, "SMARTCAR_POLL_INTERVAL"},
		{"poll not a duration", []string{"SMARTCAR_POLL_INTERVAL", "6"}, "SMARTCAR_POLL_INTERVAL"},
		{"timeout zero", []string{"SMARTCAR_TIMEOUT", "0s"}, "SMARTCAR_TIMEOUT"},
		{"timeout negative", []string{"SMARTCAR_TIMEOUT", "-5s"}, "SMARTCAR_TIMEOUT"},
		{"timeout not a duration", []string{"SMARTCAR_TIMEOUT", "abc"}, "SMARTCAR_TIMEOUT"},
		{"allowed hosts ok", []string{"HTTP_ALLOWED_HOSTS", "nas.example.com, .Example.org., ,x-1.y"}, ""},
		{"allowed host with a scheme", []string{"HTTP_ALLOWED_HOSTS", "http://nas.example.com"}, "HTTP_ALLOWED_HOSTS"},
		{"allowed host with a port", []string{"HTTP_ALLOWED_HOSTS", "nas.example.com:8080"}, "HTTP_ALLOWED_HOSTS"},
		{"allowed host with a wildcard", []string{"HTTP_ALLOWED_HOSTS", "*.example.com"}, "HTTP_ALLOWED_HOSTS"},
		{"allowed host with credentials", []string{"HTTP_ALLOWED_HOSTS", "user:pw@nas"}, "HTTP_ALLOWED_HOSTS"},
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
		"HTTP_ALLOWED_HOSTS", " NAS.example.com., .Example.org,,nas.example.com",
	))
	if cerr != nil {
		t.Fatal(cerr)
	}
	if want := []string{"nas.example.com", ".example.org"}; !slices.Equal(cfg.HTTPAllowedHosts, want) {
		t.Errorf("HTTPAllowedHosts = %q, want %q", cfg.HTTPAllowedHosts, want)
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
	certFile, keyFile := itest.SelfSignedCert(t, t.TempDir(), "broker.test")
	caPath, _ := itest.SelfSignedCert(t, t.TempDir(), "broker.test")
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
		"SMARTCAR_WEBHOOK_SECRET": "amt-token",
		"SMARTCAR_POLL_INTERVAL":  "1h30m",
		"SMARTCAR_TIMEOUT":        "45s",
		"MQTT_URL":                "tcp://mqtt:1883",
		"MQTT_USERNAME":           "mu",
		"MQTT_PASSWORD":           "mp",
		"MQTT_CA_FILE":            caPath,
		"MQTT_CLIENT_ID":          "cid",
		"MQTT_BASE_TOPIC":         "cars",
		"HA_DISCOVERY_PREFIX":     "ha",
		"HA_STATUS_TOPIC":         "ha/status",
		"BROKER_LISTEN":           ":1884",
		"BROKER_USERNAME":         "bu",
		"BROKER_PASSWORD":         "bp",
		"BROKER_ALLOW_ANONYMOUS":  "1",
		"BROKER_TLS_CERT":         certFile,
		"BROKER_TLS_KEY":          keyFile,
		"BROKER_TLS_LISTEN":       ":8884",
		"DATA_DIR":                "/tmp/x",
		"HTTP_LISTEN":             ":8081",
		"HTTP_ALLOWED_HOSTS":      "nas.example.com,.example.org",
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
	got.set, got.api, got.apiWhy, got.warnings = nil, "", "", nil
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("LoadFrom and envconfig.Process differ:\n got %+v\nwant %+v", *got, want)
	}
}

// keyLines are the base64 lines of every PEM file in data: key material
// that must never appear in a problem.
func keyLines(data ...[]byte) []string {
	var out []string
	for _, d := range data {
		for _, line := range strings.Split(string(d), "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
	}
	return out
}

// TestPEMFiles: MQTT_CA_FILE, BROKER_TLS_CERT and BROKER_TLS_KEY are loaded
// as the daemon loads them, the file at fault is named, and no problem
// shows a byte of a key.
func TestPEMFiles(t *testing.T) {
	good, other := itest.NewKeyPair(t, "broker.test"), itest.NewKeyPair(t, "broker.test")
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPKCS8, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte("this is not DER, and the base64 of it must not be shown")
	block := func(typ string, b []byte, headers map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: b})
	}
	files := map[string][]byte{
		"cert":          good.CertPEM,
		"key":           good.KeyPEM,
		"other key":     other.KeyPEM,
		"chain":         append(slices.Clone(good.CertPEM), other.CertPEM...),
		"key then cert": append(slices.Clone(good.KeyPEM), good.CertPEM...),
		"text":          []byte("not PEM at all\n"),
		"empty":         nil,
		"bad cert":      block("CERTIFICATE", garbage, nil),
		"bad and good":  append(block("CERTIFICATE", garbage, nil), other.CertPEM...),
		"bad key":       block("PRIVATE KEY", garbage, nil),
		"sec1 key":      block("EC PRIVATE KEY", sec1, nil),
		"ed25519 key":   block("PRIVATE KEY", edPKCS8, nil),
		"encrypted":     block("ENCRYPTED PRIVATE KEY", garbage, nil),
		"legacy enc":    block("EC PRIVATE KEY", garbage, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}),
	}
	paths := map[string]string{"missing": filepath.Join(t.TempDir(), "missing.pem"), "dir": t.TempDir()}
	var all [][]byte
	for name, data := range files {
		paths[name] = tempFile(t, "f.pem", data)
		all = append(all, data)
	}
	secrets := keyLines(all...)

	type problem struct{ key, reason string } // reason: a part of it
	tests := []struct {
		name string
		kv   []string // file names from paths
		want []problem
	}{
		{"ca ok", []string{"MQTT_CA_FILE", "cert"}, nil},
		{"ca bundle", []string{"MQTT_CA_FILE", "chain"}, nil},
		{"ca bundle with one bad certificate", []string{"MQTT_CA_FILE", "bad and good"}, nil},
		{"ca text", []string{"MQTT_CA_FILE", "text"}, []problem{{"MQTT_CA_FILE", "contains no PEM certificate"}}},
		{"ca empty", []string{"MQTT_CA_FILE", "empty"}, []problem{{"MQTT_CA_FILE", "contains no PEM certificate"}}},
		{"ca only a key", []string{"MQTT_CA_FILE", "key"}, []problem{{"MQTT_CA_FILE", "contains no PEM certificate"}}},
		{"ca bad certificate", []string{"MQTT_CA_FILE", "bad cert"}, []problem{{"MQTT_CA_FILE", "contains no PEM certificate"}}},
		{"ca missing", []string{"MQTT_CA_FILE", "missing"}, []problem{{"MQTT_CA_FILE", "no such file"}}},
		{"ca directory", []string{"MQTT_CA_FILE", "dir"}, []problem{{"MQTT_CA_FILE", "is a directory"}}},

		{"pair ok", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "key"}, nil},
		{"pair with chain", []string{"BROKER_TLS_CERT", "chain", "BROKER_TLS_KEY", "key"}, nil},
		{"pair in one file", []string{"BROKER_TLS_CERT", "key then cert", "BROKER_TLS_KEY", "key then cert"}, nil},
		{"pair SEC 1 key mismatched", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "sec1 key"}, []problem{{"BROKER_TLS_KEY", "is not the private key of the certificate in BROKER_TLS_CERT"}}},
		{"pair Ed25519 key mismatched", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "ed25519 key"}, []problem{{"BROKER_TLS_KEY", "is not the private key of the certificate in BROKER_TLS_CERT"}}},
		{"pair mismatched", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "other key"}, []problem{{"BROKER_TLS_KEY", "is not the private key of the certificate in BROKER_TLS_CERT"}}},
		{"cert text", []string{"BROKER_TLS_CERT", "text", "BROKER_TLS_KEY", "key"}, []problem{{"BROKER_TLS_CERT", "contains no PEM certificate"}}},
		{"cert bad", []string{"BROKER_TLS_CERT", "bad cert", "BROKER_TLS_KEY", "key"}, []problem{{"BROKER_TLS_CERT", "does not parse"}}},
		{"key text", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "text"}, []problem{{"BROKER_TLS_KEY", "contains no PEM private key"}}},
		{"key empty", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "empty"}, []problem{{"BROKER_TLS_KEY", "contains no PEM private key"}}},
		{"key bad", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "bad key"}, []problem{{"BROKER_TLS_KEY", "does not parse"}}},
		{"key encrypted", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "encrypted"}, []problem{{"BROKER_TLS_KEY", "encrypted"}}},
		{"key encrypted, legacy", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "legacy enc"}, []problem{{"BROKER_TLS_KEY", "encrypted"}}},
		{"both bad", []string{"BROKER_TLS_CERT", "text", "BROKER_TLS_KEY", "bad key"}, []problem{{"BROKER_TLS_CERT", "contains no PEM certificate"}, {"BROKER_TLS_KEY", "does not parse"}}},
		{"swapped", []string{"BROKER_TLS_CERT", "key", "BROKER_TLS_KEY", "cert"}, []problem{{"BROKER_TLS_CERT", "swapped"}, {"BROKER_TLS_KEY", "swapped"}}},
		{"cert missing", []string{"BROKER_TLS_CERT", "missing", "BROKER_TLS_KEY", "key"}, []problem{{"BROKER_TLS_CERT", "no such file"}}},
		{"key missing", []string{"BROKER_TLS_CERT", "cert", "BROKER_TLS_KEY", "missing"}, []problem{{"BROKER_TLS_KEY", "no such file"}}},
		{"key missing, cert bad", []string{"BROKER_TLS_CERT", "bad cert", "BROKER_TLS_KEY", "missing"}, []problem{{"BROKER_TLS_CERT", "does not parse"}, {"BROKER_TLS_KEY", "no such file"}}},
		{"cert alone", []string{"BROKER_TLS_CERT", "cert"}, []problem{{"BROKER_TLS_KEY", "required when BROKER_TLS_CERT is set"}}},
		{"bad key alone", []string{"BROKER_TLS_KEY", "bad key"}, []problem{{"BROKER_TLS_CERT", "required when BROKER_TLS_KEY is set"}, {"BROKER_TLS_KEY", "does not parse"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := valid()
			for i := 0; i < len(tt.kv); i += 2 {
				env[tt.kv[i]] = paths[tt.kv[i+1]]
			}
			for _, command := range []string{"run", "demo", "healthcheck"} {
				_, cerr := load(t, command, env)
				var got []Problem
				if cerr != nil {
					got = cerr.Problems
				}
				if len(got) != len(tt.want) {
					t.Fatalf("%s: problems %v, want %v", command, got, tt.want)
				}
				for i, w := range tt.want {
					if got[i].Var != w.key || !strings.Contains(got[i].Reason, w.reason) {
						t.Errorf("%s: problem %d = %v, want %s: …%s…", command, i, got[i], w.key, w.reason)
					}
				}
				if cerr == nil {
					continue
				}
				for _, secret := range secrets {
					if strings.Contains(cerr.Error(), secret) {
						t.Errorf("%s: the problem shows PEM content %q:\n%v", command, secret, cerr)
					}
				}
			}
		})
	}
}

// TestPollInterval: under a minute is refused except by the demo, whose
// calls are simulated; more reads than the plan allows is only a warning,
// and only for run, the one command that polls.
func TestPollInterval(t *testing.T) {
	tests := []struct {
		value   string
		refused string // a part of the problem for every command but demo, "" for none
		warning string // the whole warning for run, "" for none
	}{
		{"0", "", ""},
		{"1ns", "reads each car about 2,592,000,000,000,000 times a month", ""},
		{"1s", "reads each car about 2,592,000 times a month, which spends a month of Smartcar quota (plans allow about 500 calls per vehicle per month) in about 8 minutes", ""},
		{"30s", "30s reads each car about 86,400 times a month, which spends a month of Smartcar quota (plans allow about 500 calls per vehicle per month) in about 4 hours: the minimum is 1m; set 2h or more (6h is the default, 0 disables polling)", ""},
		{"59s", "in about 8 hours", ""},
		{"1m", "", "SMARTCAR_POLL_INTERVAL=1m reads each car about 43,200 times a month; Smartcar plans allow about 500 calls per vehicle per month: set 2h or more (6h is the default)"},
		{"30m", "", "SMARTCAR_POLL_INTERVAL=30m reads each car about 1,440 times a month; Smartcar plans allow about 500 calls per vehicle per month: set 2h or more (6h is the default)"},
		{"86m", "", "SMARTCAR_POLL_INTERVAL=1h26m reads each car about 502 times a month; Smartcar plans allow about 500 calls per vehicle per month: set 2h or more (6h is the default)"},
		{"1h26m24s", "", ""}, // exactly 500 a month
		{"1h30m", "", ""},
		{"2h", "", ""},
		{"6h", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			for _, command := range []string{"run", "auth", "healthcheck", "demo"} {
				cfg, cerr := load(t, command, with(valid(), "SMARTCAR_POLL_INTERVAL", tt.value, "SMARTCAR_APPLICATION_ID", "app"))
				if tt.refused != "" && command != "demo" {
					if cerr == nil || len(cerr.Problems) != 1 || cerr.Problems[0].Var != "SMARTCAR_POLL_INTERVAL" ||
						!strings.Contains(cerr.Problems[0].Reason, tt.refused) {
						t.Errorf("%s: got %v, want one SMARTCAR_POLL_INTERVAL problem with %q", command, cerr, tt.refused)
					}
					continue
				}
				if cerr != nil {
					t.Errorf("%s: %v", command, cerr)
					continue
				}
				var want []string
				if tt.warning != "" && command == "run" {
					want = []string{tt.warning}
				}
				if got := cfg.Warnings(); !slices.Equal(got, want) {
					t.Errorf("%s: Warnings() = %q, want %q", command, got, want)
				}
			}
		})
	}
}

func TestWarningsAreACopy(t *testing.T) {
	cfg, cerr := load(t, "run", with(valid(), "SMARTCAR_POLL_INTERVAL", "30m"))
	if cerr != nil {
		t.Fatal(cerr)
	}
	cfg.Warnings()[0] = "changed"
	if w := cfg.Warnings(); len(w) != 1 || w[0] == "changed" {
		t.Errorf("Warnings() = %q after changing a returned slice", w)
	}
	if w := (&Config{}).Warnings(); w != nil {
		t.Errorf("a Config not from Load warns %q", w)
	}
}

// TestDataDir: Load creates DATA_DIR and writes a probe in it, for the
// commands that keep state there, so a DATA_DIR the daemon cannot use is a
// configuration problem. The demo without DATA_DIR uses a temporary
// directory of its own: nothing to check then.
func TestDataDir(t *testing.T) {
	t.Chdir(t.TempDir()) // the default ./data lands here
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(base, "read-only")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		command string
		dataDir string // "" leaves DATA_DIR unset
		want    string // a part of the DATA_DIR problem, "" for none
		skip    string // why the case cannot run here, "" to run it
	}{
		{"run creates nested", "run", filepath.Join(base, "new", "nested"), "", ""},
		{"run existing", "run", base, "", ""},
		{"run default ./data", "run", "", "", ""},
		{"auth creates", "auth", filepath.Join(base, "auth"), "", ""},
		{"demo with DATA_DIR creates", "demo", filepath.Join(base, "demo"), "", ""},
		{"run under a file", "run", filepath.Join(file, "data"), `cannot create directory "` + filepath.Join(file, "data") + `": mkdir ` + file + `: not a directory`, ""},
		{"run deeper under a file", "run", filepath.Join(file, "a", "b"), "cannot create directory", ""},
		{"run is a file", "run", file, "cannot create directory", ""},
		{"auth under a file", "auth", filepath.Join(file, "data"), "not a directory", ""},
		{"demo with DATA_DIR under a file", "demo", filepath.Join(file, "data"), "not a directory", ""},
		{"run read-only", "run", readOnly, `cannot create files in "` + readOnly + `": permission denied`, skipAsRoot()},
		{"run read-only parent", "run", filepath.Join(readOnly, "data"), "permission denied", skipAsRoot()},
		{"run sysfs", "run", "/sys", `cannot create files in "/sys"`, skipUnlessDir("/sys")},
		{"healthcheck under a file", "healthcheck", filepath.Join(file, "data"), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip != "" {
				t.Skip(tt.skip)
			}
			env := with(valid(), "SMARTCAR_APPLICATION_ID", "app")
			if tt.dataDir != "" {
				env["DATA_DIR"] = tt.dataDir
			}
			cfg, err := loadFrom(tt.command, mapEnv(env), true)
			if tt.want != "" {
				var cerr *Error
				if !errors.As(err, &cerr) || len(cerr.Problems) != 1 || cerr.Problems[0].Var != "DATA_DIR" ||
					!strings.Contains(cerr.Problems[0].Reason, tt.want) {
					t.Fatalf("got %v, want one DATA_DIR problem with %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.command == "healthcheck" {
				return
			}
			st, err := os.Stat(cfg.DataDir)
			if err != nil || !st.IsDir() {
				t.Fatalf("DATA_DIR %q after Load: %v", cfg.DataDir, err)
			}
			entries, err := os.ReadDir(cfg.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if strings.Contains(e.Name(), "probe") {
					t.Errorf("the probe %s was left in DATA_DIR", e.Name())
				}
			}
		})
	}

	t.Run("created 0700", func(t *testing.T) {
		dir := filepath.Join(base, "private")
		if _, err := loadFrom("run", mapEnv(with(valid(), "DATA_DIR", dir)), true); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("DATA_DIR created with %v (%v), want 0700", st.Mode().Perm(), err)
		}
	})
	t.Run("demo without DATA_DIR checks nothing", func(t *testing.T) {
		t.Chdir(t.TempDir())
		if _, err := loadFrom("demo", nil, true); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat("data"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("demo without DATA_DIR made ./data: %v", err)
		}
	})
	t.Run("LoadFrom never writes", func(t *testing.T) {
		dir := filepath.Join(base, "untouched")
		if _, err := LoadFrom("run", mapEnv(with(valid(), "DATA_DIR", dir))); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadFrom made DATA_DIR: %v", err)
		}
		if _, err := LoadFrom("run", mapEnv(with(valid(), "DATA_DIR", filepath.Join(file, "data")))); err != nil {
			t.Errorf("LoadFrom checked DATA_DIR: %v", err)
		}
	})
	t.Run("reported with every other problem", func(t *testing.T) {
		_, err := loadFrom("run", mapEnv(map[string]string{"DATA_DIR": filepath.Join(file, "data"), "LOG_LEVEL": "loud"}), true)
		var cerr *Error
		if !errors.As(err, &cerr) {
			t.Fatalf("got %v, want *Error", err)
		}
		want := []string{"BROKER_PASSWORD", "BROKER_USERNAME", "DATA_DIR", "LOG_LEVEL", "SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET"}
		if got := vars(cerr); !slices.Equal(got, want) {
			t.Errorf("offending variables = %v, want %v", got, want)
		}
	})
	t.Run("Load checks it", func(t *testing.T) {
		for _, k := range specVariables() {
			t.Setenv(k, "")
		}
		for k, v := range valid() {
			t.Setenv(k, v)
		}
		t.Setenv("DATA_DIR", filepath.Join(file, "data"))
		_, err := Load("run")
		var cerr *Error
		if !errors.As(err, &cerr) || !slices.Equal(vars(cerr), []string{"DATA_DIR"}) {
			t.Errorf("Load(run) with DATA_DIR under a file: %v, want a DATA_DIR problem", err)
		}
	})
}

func skipAsRoot() string {
	if os.Geteuid() == 0 {
		return "root writes in a read-only directory"
	}
	return ""
}

// skipUnlessDir: sysfs refuses new files even to root, where it is mounted.
func skipUnlessDir(dir string) string {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return dir + " is not a directory here"
	}
	return ""
}

func TestReadableHelpers(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Second: "30s", time.Minute: "1m", 30 * time.Minute: "30m", 2 * time.Hour: "2h",
		90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 500 * time.Millisecond: "500ms",
	} {
		if got := ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 86400: "86,400", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		time.Second: "less than a minute", time.Minute: "about a minute", 8 * time.Minute: "about 8 minutes",
		89 * time.Minute: "about 89 minutes", 4*time.Hour + 10*time.Minute: "about 4 hours",
	} {
		if got := roughly(d); got != want {
			t.Errorf("roughly(%v) = %q, want %q", d, got, want)
		}
	}
}
