package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// v3Sim is a simulated Smartcar application with v3 credentials and, for the
// moves from v2.0, the legacy OAuth client too.
func v3Sim(t *testing.T) (*smartcarsim.Simulator, *httptest.Server) {
	t.Helper()
	sim := smartcarsim.New(smartcarsim.Options{
		ClientID: "legacy-uuid", ClientSecret: "legacy-secret-Hh2",
		APIClientID: "client_e2e", APIClientSecret: "api-secret-Kk8", ApplicationID: "app-e2e",
	})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv
}

func v3Env(srv *httptest.Server, dataDir string, extra ...string) []string {
	return append([]string{
		"DATA_DIR=" + dataDir,
		"SMARTCAR_CLIENT_ID=client_e2e", "SMARTCAR_CLIENT_SECRET=api-secret-Kk8", "SMARTCAR_APPLICATION_ID=app-e2e",
		"SMARTCAR_CONNECT_URL=" + srv.URL + "/oauth/authorize",
		"SMARTCAR_TOKEN_URL=" + srv.URL + "/oauth2/token",
		"SMARTCAR_API_URL=" + srv.URL + "/v3",
	}, extra...)
}

// cachedVehicles reads the vehicle cache as auth left it for the daemon.
func cachedVehicles(t *testing.T, dataDir string) (api string, ids []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, smartcar.FleetFile))
	if err != nil {
		t.Fatalf("vehicle cache: %v", err)
	}
	var f struct {
		API      string `json:"api"`
		Vehicles []struct {
			ID string `json:"id"`
		} `json:"vehicles"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	for _, v := range f.Vehicles {
		ids = append(ids, v.ID)
	}
	return f.API, ids
}

// `auth` with only v3 credentials: the link carries the Application ID; it is done
// when the browser comes back to localhost, or, on a headless server where the link
// was opened on a phone, when the new connection shows in /connections.
func TestAuthCommandV3(t *testing.T) {
	t.Run("callback", func(t *testing.T) {
		sim, srv := v3Sim(t)
		sim.QueueConnect(smartcarsim.Vehicle{ID: "car-from-connect", UserID: "new-user", Make: "TESLA", Model: "Model Y", Year: 2024},
			[]string{smartcar.PermReadVehicleInfo, smartcar.PermReadCharge, smartcar.PermControlCharge})
		dataDir := t.TempDir()
		c := startMain(t, v3Env(srv, dataDir, "SMARTCAR_REDIRECT_URI=http://"+freeAddr(t)+"/callback"), "auth")
		link := strings.TrimSpace(c.stdout.WaitLine(t, srv.URL+"/oauth/authorize?", 20*time.Second))
		if !strings.Contains(link, "client_id=app-e2e") {
			t.Errorf("the Connect link does not carry the Application ID: %s", link)
		}
		resp, err := http.Get(link) // the browser, sent back to the child's callback
		if err != nil {
			t.Fatalf("browser: %v", err)
		}
		resp.Body.Close()
		c.wait(t, 20*time.Second)
		text := c.stdout.Text()
		for _, want := range []string{"Smartcar API v3", "car-from-connect", "new-user", "Model Y", "picks up new cars by itself"} {
			if !strings.Contains(text, want) {
				t.Errorf("auth output lacks %q:\n%s", want, text)
			}
		}
		api, ids := cachedVehicles(t, dataDir)
		if api != smartcar.V3 || !strings.Contains(strings.Join(ids, ","), "car-from-connect") {
			t.Errorf("vehicle cache %s %v, want v3 with the new car", api, ids)
		}
		if _, err := os.Stat(filepath.Join(dataDir, smartcar.TokenFile)); !os.IsNotExist(err) {
			t.Errorf("v3 auth wrote a token file: %v", err)
		}
		if strings.Contains(text+c.stderr.Text(), "api-secret-Kk8") {
			t.Error("auth printed the client secret")
		}
	})
	t.Run("headless, link opened elsewhere", func(t *testing.T) {
		sim, srv := v3Sim(t)
		dataDir := t.TempDir()
		c := startMain(t, v3Env(srv, dataDir, "SMARTCAR_REDIRECT_URI=https://example.invalid/callback"), "auth")
		link := strings.TrimSpace(c.stdout.WaitLine(t, srv.URL+"/oauth/authorize?", 20*time.Second))
		// The phone: Connect approves; its redirect goes nowhere this machine serves.
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noFollow.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://example.invalid/callback?") {
			t.Fatalf("Connect answered %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		c.wait(t, 30*time.Second)
		if !strings.Contains(c.stdout.Text(), "Connected 1 new vehicle") {
			t.Errorf("auth output:\n%s", c.stdout.Text())
		}
		if _, ids := cachedVehicles(t, dataDir); len(ids) != 3 {
			t.Errorf("vehicle cache holds %v, want the two cars and the new one", ids)
		}
		if len(sim.Requests()) > 20 {
			t.Errorf("%d requests to notice one connection", len(sim.Requests()))
		}
	})
}

// retainedConfig is the Tesla's discovery config as the embedded broker kept it.
func retainedConfig(t *testing.T, dataDir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "broker-retained.json"))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []struct {
		Topic   string `json:"topic"`
		Payload []byte `json:"payload"`
	}
	if err := json.Unmarshal(data, &msgs); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Topic == "homeassistant/device/smartcar2mqtt_"+smartcarsim.TeslaID+"/config" {
			return string(m.Payload)
		}
	}
	t.Fatalf("no retained discovery for the Tesla in %s", data)
	return ""
}

func uniqueIDs(t *testing.T, config string) []string {
	t.Helper()
	var doc struct {
		Device struct {
			Identifiers []string `json:"ids"`
		} `json:"dev"`
		Cmps map[string]struct {
			UniqueID string `json:"unique_id"`
		} `json:"cmps"`
	}
	if err := json.Unmarshal([]byte(config), &doc); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range doc.Cmps {
		ids = append(ids, c.UniqueID)
	}
	slices.Sort(ids)
	return append(doc.Device.Identifiers, ids...)
}

// TestMoveFromV2ToV3 follows the README's steps: an installation running on API v2.0
// gets v3 credentials and is restarted. Home Assistant keeps every entity (same
// device, same unique ids); the old token file is left alone and the log says it is
// no longer used.
func TestMoveFromV2ToV3(t *testing.T) {
	sim, srv := v3Sim(t)
	dataDir := t.TempDir()
	common := []string{"DATA_DIR=" + dataDir, "BROKER_LISTEN=127.0.0.1:0", "BROKER_ALLOW_ANONYMOUS=true", "HTTP_LISTEN=off"}

	v2 := startMain(t, append(common,
		"SMARTCAR_CLIENT_ID=legacy-uuid", "SMARTCAR_CLIENT_SECRET=legacy-secret-Hh2",
		"SMARTCAR_REFRESH_TOKEN="+sim.IssueRefreshToken(),
		"SMARTCAR_TOKEN_URL="+srv.URL+"/oauth/token", "SMARTCAR_API_URL="+srv.URL+"/v2.0"), "run")
	v2.stderr.WaitLine(t, "using Smartcar API v2", 20*time.Second)
	// No vehicle cache yet: the listing comes in the background.
	v2.stderr.WaitLine(t, "announcing it to Home Assistant", 20*time.Second)
	v2.stop(t)
	before := retainedConfig(t, dataDir)
	token, err := os.ReadFile(filepath.Join(dataDir, smartcar.TokenFile))
	if err != nil {
		t.Fatal(err)
	}

	v3 := startMain(t, append(common, v3Env(srv, dataDir)...), "run")
	v3.stderr.WaitLine(t, "using Smartcar API v3", 20*time.Second)
	v3.stderr.WaitLine(t, "token file is no longer used", 20*time.Second)
	v3.stderr.WaitLine(t, "connected to the MQTT broker", 20*time.Second)
	v3.stop(t)
	after := retainedConfig(t, dataDir)

	if b, a := uniqueIDs(t, before), uniqueIDs(t, after); len(b) < 3 || strings.Join(b, ",") != strings.Join(a, ",") {
		t.Errorf("the Tesla's entities changed with the API:\nv2 %v\nv3 %v", b, a)
	}
	if now, _ := os.ReadFile(filepath.Join(dataDir, smartcar.TokenFile)); !bytes.Equal(now, token) {
		t.Error("the v2.0 token file was changed by the v3 daemon")
	}
	if !strings.Contains(v3.stderr.Text(), "client id starts with client_") {
		t.Errorf("the start-up log does not say why v3:\n%s", v3.stderr.Text())
	}
}
