package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

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
		{"waiting for a login", []Check{{"mqtt", ok}, {"token", func() error { return fmt.Errorf("tokens: %w", Waiting("no Smartcar login yet")) }}}, 200,
			map[string]string{"mqtt": "ok", "token": "waiting: no Smartcar login yet"}},
		{"waiting and down", []Check{{"mqtt", failing("down")}, {"token", func() error { return Waiting("no login") }}}, 503,
			map[string]string{"mqtt": "down", "token": "waiting: no login"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(Handler(Routes{Checks: tt.checks, Metrics: NewMetrics()}))
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
	m := NewMetrics()
	m.ObserveCall(smartcar.Call{Endpoint: smartcar.EndpointChargePortDoor, VehicleID: "V1", Outcome: smartcar.OutcomeOK, Status: 200, Duration: 3 * time.Second})
	m.ObserveCall(smartcar.Call{Endpoint: smartcar.EndpointChargePortDoor, VehicleID: "V1", Outcome: smartcar.OutcomeOK, Status: 200, Duration: 5 * time.Second}) // on a bound: le is inclusive
	m.ObserveCall(smartcar.Call{Endpoint: smartcar.EndpointChargePortDoor, VehicleID: "V1", Outcome: "VEHICLE_STATE", Status: 409, Duration: 400 * time.Second})
	m.ObserveCall(smartcar.Call{Endpoint: smartcar.EndpointToken, Outcome: smartcar.TypeOAuth, Status: 400})
	known := time.Now().Add(-time.Minute)
	m.WatchBridge(func() bridge.Status {
		return bridge.Status{Connected: true, Connects: 2, ConnectionsLost: 1,
			Vehicles: []bridge.VehicleStatus{{ID: "V1", Available: true, KnownAt: known}, {ID: "V2"}, {ID: "V3", Unbridged: true}}}
	})
	srv := httptest.NewServer(Handler(Routes{Metrics: m}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want Prometheus' text format 0.0.4", ct)
	}
	page := string(body)
	for _, want := range []string{
		`smartcar2mqtt_smartcar_calls_total{endpoint="charge_port_door",outcome="ok"} 2`,
		`smartcar2mqtt_smartcar_calls_total{endpoint="token",outcome="OAUTH"} 1`,
		`smartcar2mqtt_token_refreshes_total{outcome="OAUTH"} 1`,
		`smartcar2mqtt_command_duration_seconds_bucket{outcome="ok",le="2"} 0`,
		`smartcar2mqtt_command_duration_seconds_bucket{outcome="ok",le="5"} 2`,
		`smartcar2mqtt_command_duration_seconds_bucket{outcome="ok",le="+Inf"} 2`,
		`smartcar2mqtt_command_duration_seconds_sum{outcome="ok"} 8`,
		`smartcar2mqtt_command_duration_seconds_bucket{outcome="VEHICLE_STATE",le="300"} 0`,
		`smartcar2mqtt_command_duration_seconds_bucket{outcome="VEHICLE_STATE",le="+Inf"} 1`,
		"smartcar2mqtt_mqtt_connected 1",
		"smartcar2mqtt_mqtt_connects_total 2",
		"smartcar2mqtt_mqtt_connections_lost_total 1",
		`smartcar2mqtt_vehicle_available{vehicle="V1"} 1`,
		`smartcar2mqtt_vehicle_available{vehicle="V2"} 0`,
		`smartcar2mqtt_state_age_seconds{vehicle="V1"} 6`, // 60.x seconds
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(page, `smartcar2mqtt_state_age_seconds{vehicle="V2"}`) {
		t.Error("a state never learned has an age")
	}
	if strings.Contains(page, `vehicle="V3"`) {
		t.Error("a car with no entity in Home Assistant has an availability")
	}

	// Prometheus' own parser is the judge of the format: every family once,
	// with its type, and a histogram it can read.
	families := parseExposition(t, page)
	wantTypes := map[string]dto.MetricType{
		"smartcar2mqtt_smartcar_calls_total":     dto.MetricType_COUNTER,
		"smartcar2mqtt_command_duration_seconds": dto.MetricType_HISTOGRAM,
		"smartcar2mqtt_vehicle_available":        dto.MetricType_GAUGE,
		"smartcar2mqtt_mqtt_connects_total":      dto.MetricType_COUNTER,
		"go_goroutines":                          dto.MetricType_GAUGE,
	}
	for name, typ := range wantTypes {
		f, ok := families[name]
		if !ok {
			t.Errorf("Prometheus' parser finds no family %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	for _, metric := range families["smartcar2mqtt_command_duration_seconds"].GetMetric() {
		h := metric.GetHistogram()
		if metric.GetLabel()[0].GetValue() == "ok" && (h.GetSampleCount() != 2 || h.GetSampleSum() != 8) {
			t.Errorf("parsed histogram for ok: count %d sum %v, want 2 and 8", h.GetSampleCount(), h.GetSampleSum())
		}
	}
	if runtime.GOOS == "linux" {
		if f := families["process_resident_memory_bytes"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() < 1<<20 {
			t.Errorf("process_resident_memory_bytes missing or under 1 MB: %v", f)
		}
	}
}

// TestMetricsEscaping feeds label values and help text that need escaping
// through Prometheus' parser: a vehicle id is checked elsewhere, but the page
// must stay readable whatever an outcome or id holds.
func TestMetricsEscaping(t *testing.T) {
	m := NewMetrics()
	odd := "a\\b \"quoted\"\nnew line"
	m.ObserveCall(smartcar.Call{Endpoint: smartcar.EndpointToken, Outcome: odd})
	m.WatchBridge(func() bridge.Status {
		return bridge.Status{Vehicles: []bridge.VehicleStatus{{ID: odd, Available: true}}}
	})
	var buf strings.Builder
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	families := parseExposition(t, buf.String())
	got := families["smartcar2mqtt_token_refreshes_total"].GetMetric()
	if len(got) != 1 || got[0].GetLabel()[0].GetValue() != odd {
		t.Errorf("outcome label read back as %v, want %q", got, odd)
	}
	if v := families["smartcar2mqtt_vehicle_available"].GetMetric(); len(v) != 1 || v[0].GetLabel()[0].GetValue() != odd {
		t.Errorf("vehicle label read back as %v, want %q", v, odd)
	}
}

func parseExposition(t *testing.T, page string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(page))
	if err != nil {
		t.Fatalf("Prometheus' parser rejects /metrics: %v\n%s", err, page)
	}
	return families
}

func ok() error { return nil }

func failing(msg string) func() error { return func() error { return errors.New(msg) } }
