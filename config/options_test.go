package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// addonEnv is the add-on container's environment: DATA_DIR holding
// options.json with body, plus env.
func addonEnv(t *testing.T, body string, env map[string]string) LookupFunc {
	t.Helper()
	dir := t.TempDir()
	if body != "" {
		if err := os.WriteFile(filepath.Join(dir, OptionsFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	all := map[string]string{"DATA_DIR": dir}
	for k, v := range env {
		all[k] = v
	}
	return func(key string) (string, bool) {
		v, ok := all[key]
		return v, ok
	}
}

func TestLoadAddonTakesOptionsOverTheEnvironment(t *testing.T) {
	lookup := addonEnv(t, `{
		"smartcar_client_id": "client_abc", "smartcar_client_secret": "s3cret-Pp1",
		"smartcar_vehicle_ids": ["v1", " v2 ", "v1", ""], "smartcar_poll_interval": "2h",
		"broker_allow_anonymous": true, "smartcar_timeout": "90s", "mqtt_url": null, "log_level": "",
		"http_listen": ":8081"
	}`, map[string]string{"SMARTCAR_CLIENT_ID": "client_from_env", "LOG_LEVEL": "debug", "SUPERVISOR_TOKEN": "tok", "SUPERVISOR_URL": "http://sv/"})
	cfg, err := LoadAddon("addon", lookup)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"client id (the option wins)", cfg.SmartcarClientID, "client_abc"},
		{"secret", cfg.SmartcarClientSecret.Reveal(), "s3cret-Pp1"},
		{"vehicle ids (a list)", strings.Join(cfg.SmartcarVehicleIDs, ","), "v1,v2"},
		{"poll interval", cfg.SmartcarPollInterval, 2 * time.Hour},
		{"a bool", cfg.BrokerAllowAnonymous, true},
		{"an empty option leaves the environment's", cfg.LogLevel, "debug"},
		{"null is unset", cfg.MQTTURL, ""},
		{"api from the client id", cfg.APIVersion(), APIV3},
		{"why, naming the option", cfg.APIVersionReason(), "smartcar_api_version=auto and the client id starts with client_, as API v3 ids do"},
		{"http listen", cfg.HTTPListen, ":8081"},
		{"supervisor URL", cfg.Supervisor().URL, "http://sv"},
		{"supervisor token", cfg.Supervisor().Token.Reveal(), "tok"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if err := cfg.CheckEmbeddedBroker(); err != nil {
		t.Errorf("anonymous allowed, yet: %v", err)
	}
}

func TestLoadAddonNamesTheOption(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		env        map[string]string
		want       []string // Problem strings
	}{
		{"missing credentials", `{}`, nil, []string{"smartcar_client_id: required for addon", "smartcar_client_secret: required for addon"}},
		{"the environment's own value is named as a variable", `{"smartcar_client_id": "client_x", "smartcar_client_secret": "s"}`,
			map[string]string{"SMARTCAR_TIMEOUT": "forever"}, []string{`SMARTCAR_TIMEOUT: "forever" is not a duration (examples: 90s, 15m, 6h)`}},
		{"unknown and wrongly cased keys", `{"smartcar_client_id": "client_x", "smartcar_client_secret": "s", "ingress": true, "LOG_LEVEL": "info"}`, nil,
			[]string{"LOG_LEVEL: is not an option", "ingress: is not an option"}},
		{"types", `{"smartcar_client_id": 12.5, "smartcar_client_secret": {"a": 1}, "smartcar_vehicle_ids": [true]}`, nil,
			[]string{"smartcar_client_id: must be a whole number", "smartcar_client_secret: must be a string", "smartcar_vehicle_ids: must be a list of strings"}},
		{"reasons name options too", `{"smartcar_client_id": "client_x", "smartcar_client_secret": "s", "mqtt_password": "p"}`, nil,
			[]string{"mqtt_username: required when mqtt_password is set"}},
		{"the Ingress port", `{"smartcar_client_id": "client_x", "smartcar_client_secret": "s", "http_listen": ":8099"}`, nil,
			[]string{"http_listen: port 8099 is the add-on's Ingress port"}},
		{"not an object", `["smartcar_client_id"]`, nil, []string{"options.json:"}},
		{"no file", "", nil, []string{"options.json:"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadAddon("addon", addonEnv(t, tt.body, tt.env))
			var cerr *Error
			if !errors.As(err, &cerr) || !cerr.Options {
				t.Fatalf("err = %v, want an *Error about options", err)
			}
			if !strings.Contains(err.Error(), "Configuration tab") {
				t.Errorf("the message does not send the user to the Configuration tab: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadAddonNeverQuotesAPassword(t *testing.T) {
	for _, body := range []string{
		`{"smartcar_client_secret": "hunter2-secret", "smartcar_client_id": ["hunter2-secret", 1]}`,
		`{"smartcar_client_secret": "hunter2-secret"`,
		`{"broker_password": "hunter2-secret", "smartcar_client_id": "client_x", "smartcar_client_secret": "x"}`,
	} {
		_, err := LoadAddon("addon", addonEnv(t, body, nil))
		if err == nil {
			t.Fatalf("%s: no error", body)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("a password reached the message: %v", err)
		}
	}
}

func TestCheckEmbeddedBrokerNamesTheOptions(t *testing.T) {
	cfg, err := LoadAddon("addon", addonEnv(t, `{"smartcar_client_id": "client_x", "smartcar_client_secret": "s"}`, nil))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.CheckEmbeddedBroker()
	var cerr *Error
	if !errors.As(err, &cerr) || !cerr.Options || len(cerr.Problems) != 2 {
		t.Fatalf("err = %#v, want an *Error about two options", err)
	}
	for _, w := range []string{"Configuration tab", "broker_username: required for the embedded broker", "broker_password: required", "Mosquitto broker add-on"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %q", w, err)
		}
	}
	if err := cfg.UseBroker("tcp://core-mosquitto:1883", "addons", "pw"); err != nil || cfg.MQTTURL != "tcp://core-mosquitto:1883" || cfg.EmbeddedBroker() {
		t.Errorf("UseBroker: %v, %q", err, cfg.MQTTURL)
	}
	if err := cfg.UseBroker("gopher://x", "", ""); err == nil {
		t.Error("UseBroker took a URL MQTT_URL refuses")
	}
}
