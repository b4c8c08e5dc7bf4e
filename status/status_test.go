package status

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

func TestHealthz(t *testing.T) {
	tests := []struct {
		name   string
		checks []Check
		code   int
		want   map[string]string
	}{
		{"all well", []Check{{"mqtt", ok}, {"token", ok}}, 200, map[string]string{"mqtt": "ok", "token": "ok"}},
		{"one part down", []Check{{"mqtt", failing("the MQTT session is down")}, {"token", ok}}, 503,
			map[string]string{"mqtt": "the MQTT session is down", "token": "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(Handler(tt.checks, prometheus.NewRegistry()))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r Report
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code || len(r.Checks) != len(tt.want) {
				t.Fatalf("status %d %+v, want %d %v", resp.StatusCode, r, tt.code, tt.want)
			}
			for k, v := range tt.want {
				if r.Checks[k] != v {
					t.Errorf("check %s = %q, want %q", k, r.Checks[k], v)
				}
			}
			probeErr := Probe(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
			if (probeErr == nil) != (tt.code == 200) {
				t.Errorf("Probe = %v for status %d", probeErr, tt.code)
			}
		})
	}
}

func TestProbeWithNothingListening(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	if err := Probe(context.Background(), addr); err == nil {
		t.Error("Probe succeeded with no daemon")
	}
	if err := Probe(context.Background(), "no-port"); err == nil {
		t.Error("Probe accepted an address without a port")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	calls := NewCalls(reg)
	calls.ObserveCall(smartcar.Call{Endpoint: smartcar.EndpointChargePortDoor, VehicleID: "V1", Outcome: smartcar.OutcomeOK, Status: 200, Duration: 3 * time.Second})
	calls.ObserveCall(smartcar.Call{Endpoint: smartcar.EndpointToken, Outcome: smartcar.TypeOAuth, Status: 400})
	known := time.Now().Add(-time.Minute)
	RegisterBridge(reg, func() bridge.Status {
		return bridge.Status{Connected: true, Connects: 2, ConnectionsLost: 1,
			Vehicles: []bridge.VehicleStatus{{ID: "V1", Available: true, KnownAt: known}, {ID: "V2"}}}
	})
	srv := httptest.NewServer(Handler(nil, reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	for _, want := range []string{
		`smartcar2mqtt_smartcar_calls_total{endpoint="charge_port_door",outcome="ok"} 1`,
		`smartcar2mqtt_token_refreshes_total{outcome="OAUTH"} 1`,
		`smartcar2mqtt_command_duration_seconds_bucket{outcome="ok",le="5"} 1`,
		`smartcar2mqtt_command_duration_seconds_bucket{outcome="ok",le="2"} 0`,
		"smartcar2mqtt_mqtt_connected 1",
		"smartcar2mqtt_mqtt_connects_total 2",
		"smartcar2mqtt_mqtt_connections_lost_total 1",
		`smartcar2mqtt_vehicle_available{vehicle="V1"} 1`,
		`smartcar2mqtt_vehicle_available{vehicle="V2"} 0`,
		`smartcar2mqtt_state_age_seconds{vehicle="V1"} 6`, // 60.x seconds
		"go_goroutines",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(page, `smartcar2mqtt_state_age_seconds{vehicle="V2"}`) {
		t.Error("a state never learned has an age")
	}
}

func ok() error { return nil }

func failing(msg string) func() error { return func() error { return errors.New(msg) } }
