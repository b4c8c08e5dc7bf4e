package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

// fuzzCommands are the commands LoadFrom distinguishes, plus one it does not.
var fuzzCommands = []string{"run", "auth", "demo", "healthcheck"}

// fuzzEnv builds an environment: a base chosen by flags, secrets set to
// secret, then name=value on top.
func fuzzEnv(flags uint8, name, value, secret string) map[string]string {
	env := map[string]string{}
	if flags&4 == 0 { // what `run` with the embedded broker needs
		env["SMARTCAR_CLIENT_ID"] = "client-id"
		env["SMARTCAR_CLIENT_SECRET"] = secret
		env["BROKER_USERNAME"] = "homeassistant"
		env["BROKER_PASSWORD"] = secret
	}
	if flags&8 != 0 { // an external broker, and a seed refresh token
		env["SMARTCAR_REFRESH_TOKEN"] = secret
		env["MQTT_URL"] = "tcp://broker.lan:1883"
		env["MQTT_USERNAME"] = "smartcar2mqtt"
		env["MQTT_PASSWORD"] = secret
	}
	env[name] = value
	return env
}

// fuzzPlaceholder replaces every secret's value by a fixed one that is set
// exactly when the original is (secrets are never trimmed, but a blank one
// counts as unset).
func fuzzPlaceholder(env map[string]string, secretVars []string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if slices.Contains(secretVars, k) && strings.TrimSpace(v) != "" {
			v = "placeholder-secret"
		}
		out[k] = v
	}
	return out
}

// fuzzErrorText is LoadFrom's error text, or "" for none.
func fuzzErrorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// fuzzPrinted is every way a Config gets printed or serialised.
func fuzzPrinted(cfg *Config) string {
	if cfg == nil {
		return ""
	}
	j, _ := json.Marshal(cfg)
	return fmt.Sprintf("%v\n%+v\n%#v\n%s\n%q", *cfg, cfg, cfg, j, cfg.SmartcarClientSecret)
}

// FuzzLoadFrom gives one variable, chosen by the fuzzer from Config's
// variables, an arbitrary value, with the secrets set to another arbitrary
// value. LoadFrom must never panic; it returns a Config or an *Error listing
// problems of known variables only, sorted; neither the error nor any
// printing of the Config depends on a secret's value (so none can leak); and
// a Config it returns keeps the promises of Config's documentation.
func FuzzLoadFrom(f *testing.F) {
	index := func(name string) uint8 {
		for i, v := range variables(&Config{}) {
			if v.key == name {
				return uint8(i)
			}
		}
		f.Fatalf("no variable %s", name)
		return 0
	}
	// flags: bit 2 starts from an empty environment instead of a valid
	// one for run; bit 3 adds an external broker; flags%4 is the command.
	for _, s := range []struct {
		name, value, secret string
		flags               uint8
	}{
		{"SMARTCAR_CLIENT_ID", "my-client", "s3cr3t-value", 0},
		{"SMARTCAR_CLIENT_SECRET", " padded secret ", "s3cr3t-value", 0},
		{"SMARTCAR_CLIENT_SECRET", "  ", "", 4},
		{"SMARTCAR_MODE", "LIVE", "s3cr3t-value", 1},
		{"SMARTCAR_VEHICLE_IDS", " a, ,b,a ,c d", "s3cr3t-value", 8},
		{"SMARTCAR_API_URL", "https://user:s3cr3t-value@api.example/v2.0", "s3cr3t-value", 0},
		{"SMARTCAR_POLL_INTERVAL", "-5m", "s3cr3t-value", 0},
		{"SMARTCAR_TIMEOUT", "forever", "s3cr3t-value", 1},
		{"MQTT_URL", "tcp://user:s3cr3t-value@broker:1883", "s3cr3t-value", 8},
		{"MQTT_URL", "http://[::1", "s3cr3t-value", 8},
		{"MQTT_PASSWORD", "p@ss\"word\n", "s3cr3t-value", 0},
		{"MQTT_CA_FILE", "/nonexistent/ca.pem", "s3cr3t-value", 8},
		{"MQTT_BASE_TOPIC", "base/+/x", "s3cr3t-value", 0},
		{"MQTT_BASE_TOPIC", "ba\u0085se", "s3cr3t-value", 2},
		{"SMARTCAR_VEHICLE_IDS", "v1,a.b", "s3cr3t-value", 0},
		{"HA_DISCOVERY_PREFIX", "$SYS//", "s3cr3t-value", 2},
		{"BROKER_ALLOW_ANONYMOUS", "maybe", "", 4},
		{"BROKER_PASSWORD", "hunter2", "\t", 0},
		{"BROKER_TLS_LISTEN", ":1883", "s3cr3t-value", 0},
		{"HTTP_LISTEN", "OFF", "s3cr3t-value", 2},
		{"HTTP_LISTEN", ":1883", "s3cr3t-value", 0},
		{"LOG_LEVEL", "DEBUG", "s3cr3t-value", 3},
		{"LOG_FORMAT", "xml", "s3cr3t-value", 0},
	} {
		f.Add(index(s.name), s.value, s.secret, s.flags)
	}
	f.Fuzz(func(t *testing.T, which uint8, value, secret string, flags uint8) {
		vars := variables(&Config{})
		var known, secretVars []string
		for _, v := range vars {
			known = append(known, v.key)
			if v.secret {
				secretVars = append(secretVars, v.key)
			}
		}
		name := known[int(which)%len(known)]
		command := fuzzCommands[int(flags)%len(fuzzCommands)]
		env := fuzzEnv(flags, name, value, secret)

		cfg, err := LoadFrom(command, mapEnv(env))
		if (cfg == nil) == (err == nil) {
			t.Fatalf("LoadFrom(%s, %s=%q) = %v, %v: want exactly one of a Config and an error", command, name, value, cfg, err)
		}

		// The error text and every printing of the Config are the same
		// whatever the secrets' values: none of them can show up there.
		placeholderCfg, placeholderErr := LoadFrom(command, mapEnv(fuzzPlaceholder(env, secretVars)))
		if got, want := fuzzErrorText(err), fuzzErrorText(placeholderErr); got != want {
			t.Fatalf("the error depends on a secret's value (%s=%q, secret %q):\n%s\nwith placeholder secrets:\n%s", name, value, secret, got, want)
		}
		if got, want := fuzzPrinted(cfg), fuzzPrinted(placeholderCfg); got != want {
			t.Fatalf("printing the Config depends on a secret's value (%s=%q, secret %q):\n%s\nwith placeholder secrets:\n%s", name, value, secret, got, want)
		}

		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("LoadFrom error %T is not a *Error: %v", err, err)
			}
			if len(ce.Problems) == 0 {
				t.Fatal("*Error without problems")
			}
			for _, p := range ce.Problems {
				if !slices.Contains(known, p.Var) {
					t.Fatalf("problem names unknown variable %q: %v", p.Var, p)
				}
				if p.Reason == "" {
					t.Fatalf("problem without a reason: %+v", p)
				}
			}
			if !slices.IsSortedFunc(ce.Problems, func(a, b Problem) int { return strings.Compare(a.Var, b.Var) }) {
				t.Fatalf("problems not sorted by variable: %v", ce.Problems)
			}
			if lines := strings.Count(err.Error(), "\n  "); lines < len(ce.Problems) {
				t.Fatalf("Error() lists %d problems, want %d: %s", lines, len(ce.Problems), err)
			}
			return
		}

		// A Config keeps its documented promises.
		if set := strings.TrimSpace(value) != ""; cfg.IsSet(name) != set {
			t.Fatalf("IsSet(%s) = %v for value %q", name, cfg.IsSet(name), value)
		}
		for _, v := range secretVars {
			if raw := env[v]; strings.TrimSpace(raw) != "" {
				var got Secret
				for _, x := range variables(cfg) {
					if x.key == v {
						got = x.field.Interface().(Secret)
					}
				}
				if got.Reveal() != raw {
					t.Fatalf("%s = %q, want the value verbatim %q", v, got.Reveal(), raw)
				}
			}
		}
		seen := map[string]bool{}
		for _, id := range cfg.SmartcarVehicleIDs {
			if seen[id] || discovery.ValidateVehicleID(id) != nil {
				t.Fatalf("SMARTCAR_VEHICLE_IDS %q gave ids %q", env["SMARTCAR_VEHICLE_IDS"], cfg.SmartcarVehicleIDs)
			}
			seen[id] = true
		}
		// Discovery accepts whatever Config does: the daemon never starts only
		// to find it cannot publish its discovery configs.
		s := discovery.Settings{Prefix: cfg.HADiscoveryPrefix, BaseTopic: cfg.MQTTBaseTopic, Origin: discovery.Origin{Name: "smartcar2mqtt"}}
		for _, id := range append([]string{"V1"}, cfg.SmartcarVehicleIDs...) {
			if _, err := discovery.Config(s, discovery.Vehicle{ID: id, ChargePortDoor: true}); err != nil {
				t.Fatalf("%s=%q: Config accepts it, discovery does not: %v", name, value, err)
			}
		}
		for _, c := range []struct {
			key, got string
			allowed  []string
		}{
			{"SMARTCAR_MODE", cfg.SmartcarMode, []string{"live", "simulated", "test"}},
			{"LOG_LEVEL", cfg.LogLevel, []string{"debug", "info", "warn", "error"}},
			{"LOG_FORMAT", cfg.LogFormat, []string{"text", "json"}},
		} {
			if !slices.Contains(c.allowed, c.got) {
				t.Fatalf("%s = %q, not one of %v", c.key, c.got, c.allowed)
			}
		}
		if off := name == "HTTP_LISTEN" && strings.EqualFold(strings.TrimSpace(value), HTTPListenOff); off != !cfg.HTTPEnabled() {
			t.Fatalf("HTTP_LISTEN=%q: HTTPEnabled = %v", env["HTTP_LISTEN"], cfg.HTTPEnabled())
		}
		if cfg.SmartcarTimeout <= 0 || cfg.SmartcarPollInterval < 0 {
			t.Fatalf("durations out of range: timeout %v, poll interval %v", cfg.SmartcarTimeout, cfg.SmartcarPollInterval)
		}
		if (command == "run" || command == "auth") && (cfg.SmartcarClientID == "" || cfg.SmartcarClientSecret == "") {
			t.Fatalf("%s accepted without SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET", command)
		}
	})
}
