package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretRedacts(t *testing.T) {
	s := Secret("hunter2")
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s", "%T %v"} {
		if got := fmt.Sprintf(format, s); strings.Contains(got, "hunter2") || strings.Contains(got, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("Sprintf(%q) = %q leaks", format, got)
		}
	}
	if got := s.String(); got != "[redacted]" {
		t.Errorf("String() = %q", got)
	}
	if got := Secret("").String(); got != "" {
		t.Errorf("empty String() = %q, want empty (unset stays visible)", got)
	}
	if txt, err := s.MarshalText(); err != nil || string(txt) != "[redacted]" {
		t.Errorf("MarshalText() = %q, %v", txt, err)
	}
	if got := s.Reveal(); got != "hunter2" {
		t.Errorf("Reveal() = %q", got)
	}
	b, err := json.Marshal(map[string]any{"s": s, "p": &s, "l": []Secret{s}})
	if err != nil || strings.Contains(string(b), "hunter2") {
		t.Errorf("json = %s, %v", b, err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "s", s)
	if strings.Contains(buf.String(), "hunter2") {
		t.Errorf("slog leaks: %s", buf.String())
	}
}

// TestConfigPrintsNoSecret: a whole Config may be logged.
func TestConfigPrintsNoSecret(t *testing.T) {
	secrets := map[string]string{
		"SMARTCAR_CLIENT_SECRET": "secret-client-AAA",
		"SMARTCAR_REFRESH_TOKEN": "secret-refresh-BBB",
		"MQTT_PASSWORD":          "secret-mqtt-CCC",
		"BROKER_PASSWORD":        "secret-broker-DDD",
	}
	env := with(valid(), "MQTT_USERNAME", "u")
	for k, v := range secrets {
		env[k] = v
	}
	cfg, cerr := load(t, "run", env)
	if cerr != nil {
		t.Fatal(cerr)
	}
	if cfg.SmartcarClientSecret.Reveal() != secrets["SMARTCAR_CLIENT_SECRET"] ||
		cfg.SmartcarRefreshToken.Reveal() != secrets["SMARTCAR_REFRESH_TOKEN"] ||
		cfg.MQTTPassword.Reveal() != secrets["MQTT_PASSWORD"] ||
		cfg.BrokerPassword.Reveal() != secrets["BROKER_PASSWORD"] {
		t.Fatal("secrets not loaded")
	}
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", cfg),
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#v":  fmt.Sprintf("%#v", cfg),
		"*%v":  fmt.Sprintf("%v", *cfg),
		"*%+v": fmt.Sprintf("%+v", *cfg),
		"*%#v": fmt.Sprintf("%#v", *cfg),
		"json": string(j),
	}
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s output contains %q:\n%s", name, s, out)
			}
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s output shows no redaction marker:\n%s", name, out)
		}
	}
}
