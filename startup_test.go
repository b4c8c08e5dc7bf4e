package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/oauth2"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/lockfile"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// doubledPrefix finds an operation named twice in a row in an error line
// ("list vehicles: list vehicles: …"): the function that fails names its
// operation, and callers add only new context.
func doubledPrefix(line string) string {
	parts := strings.Split(line, ": ")
	for i := 1; i < len(parts); i++ {
		if parts[i] == parts[i-1] {
			return parts[i]
		}
	}
	return ""
}

// holdPort listens on a loopback port for the test's duration.
func holdPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// The errors a user meets first, at start-up: each one exit code 2 when only
// the configuration can fix it, said in one line that names what to change,
// without doubled prefixes, and before any Smartcar call or MQTT session.
func TestStartupErrorsAUserSeesFirst(t *testing.T) {
	sim, srv := v3Sim(t)
	// A vehicle cache as `auth` leaves it: the account's two cars.
	cachedAccount := func(t *testing.T) string {
		dir := t.TempDir()
		f := smartcar.FleetCache{Path: filepath.Join(dir, smartcar.FleetFile)}
		err := f.Save(smartcar.V3, []smartcar.VehicleDetails{
			{Vehicle: smartcar.Vehicle{ID: smartcarsim.TeslaID, UserID: smartcarsim.UserID}},
			{Vehicle: smartcar.Vehicle{ID: smartcarsim.OtherID, UserID: smartcarsim.UserID}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	anon := []string{"BROKER_ALLOW_ANONYMOUS=true", "HTTP_LISTEN=off", "BROKER_LISTEN=127.0.0.1:0"}

	tests := []struct {
		name  string
		setup func(t *testing.T) []string // the environment
		code  int
		want  []string // in stderr
		calls bool     // Smartcar may be called before the error
	}{
		{
			name: "a typo in SMARTCAR_VEHICLE_IDS, known from the cache",
			setup: func(t *testing.T) []string {
				return append(v3Env(srv, cachedAccount(t), "SMARTCAR_VEHICLE_IDS=typo-id"), anon...)
			},
			code: 2, want: []string{`SMARTCAR_VEHICLE_IDS: \"typo-id\" is not on this Smartcar account`, smartcarsim.TeslaID, smartcarsim.OtherID},
		},
		{
			name: "a typo in SMARTCAR_VEHICLE_IDS, found by the first listing",
			setup: func(t *testing.T) []string {
				return append(v3Env(srv, t.TempDir(), "SMARTCAR_VEHICLE_IDS="+smartcarsim.TeslaID+",typo-id"), anon...)
			},
			code: 2, want: []string{`\"typo-id\" is not on this Smartcar account`, smartcarsim.OtherID}, calls: true,
		},
		{
			name: "DATA_DIR held by another daemon",
			setup: func(t *testing.T) []string {
				dir := t.TempDir()
				lock, err := lockfile.Acquire(dir)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { lock.Release() })
				return append(v3Env(srv, dir), anon...)
			},
			code: 2, want: []string{"is in use by another smartcar2mqtt (pid " + strconv.Itoa(os.Getpid()) + ")"},
		},
		{
			name: "BROKER_LISTEN in use",
			setup: func(t *testing.T) []string {
				return append(v3Env(srv, t.TempDir()), "BROKER_ALLOW_ANONYMOUS=true", "HTTP_LISTEN=off", "BROKER_LISTEN="+holdPort(t))
			},
			code: 2, want: []string{`BROKER_LISTEN \"127.0.0.1:`, "address already in use"},
		},
		{
			name: "HTTP_LISTEN in use",
			setup: func(t *testing.T) []string {
				return append(v3Env(srv, t.TempDir()), "BROKER_ALLOW_ANONYMOUS=true", "BROKER_LISTEN=127.0.0.1:0", "HTTP_LISTEN="+holdPort(t))
			},
			code: 2, want: []string{`HTTP_LISTEN \"127.0.0.1:`, "address already in use"},
		},
		{
			name: "a torn API v2.0 token file",
			setup: func(t *testing.T) []string {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, smartcar.TokenFile), []byte(`{"refresh_tok`), 0o600); err != nil {
					t.Fatal(err)
				}
				return append([]string{"DATA_DIR=" + dir, "SMARTCAR_CLIENT_ID=legacy-uuid", "SMARTCAR_CLIENT_SECRET=legacy-secret-Hh2",
					"SMARTCAR_API_URL=" + srv.URL + "/v2.0", "SMARTCAR_TOKEN_URL=" + srv.URL + "/oauth/token"}, anon...)
			},
			code: 1, want: []string{smartcar.TokenFile},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.setup(t)
			before := len(sim.Requests())
			code, _, stderr := runMain(t, env, "run")
			if code != tt.code {
				t.Fatalf("exit code %d, want %d:\n%s", code, tt.code, stderr)
			}
			var last string
			for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if strings.Contains(line, "level=error") {
					last = line
				}
			}
			if last == "" {
				t.Fatalf("no error line:\n%s", stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(last, want) {
					t.Errorf("error line lacks %q:\n%s", want, last)
				}
			}
			if d := doubledPrefix(last); d != "" {
				t.Errorf("%q is said twice in a row: %s", d, last)
			}
			if strings.Contains(stderr, "msg=stopped") {
				t.Errorf("a start-up failure is logged as a stop:\n%s", stderr)
			}
			if strings.Contains(stderr, "connected to the MQTT broker") && !tt.calls {
				t.Errorf("an MQTT session began before the configuration problem was found:\n%s", stderr)
			}
			if n := len(sim.Requests()) - before; n > 0 && !tt.calls {
				t.Errorf("%d Smartcar requests before a configuration problem was found", n)
			}
		})
	}
}

// A fresh API v2.0 install without a login starts all the same: broker up,
// bridge online, healthz 200 saying it waits for `auth`; when auth writes a
// login and the vehicle list, the car appears without a restart.
func TestNoLoginYetWaitsForAuth(t *testing.T) {
	sim, srv := v3Sim(t)
	dataDir := t.TempDir()
	httpAddr := freeAddr(t)
	d := startMain(t, []string{"DATA_DIR=" + dataDir, "SMARTCAR_CLIENT_ID=legacy-uuid", "SMARTCAR_CLIENT_SECRET=legacy-secret-Hh2",
		"SMARTCAR_API_URL=" + srv.URL + "/v2.0", "SMARTCAR_TOKEN_URL=" + srv.URL + "/oauth/token",
		"BROKER_ALLOW_ANONYMOUS=true", "BROKER_LISTEN=127.0.0.1:0", "HTTP_LISTEN=" + httpAddr}, "run")
	d.stderr.WaitLine(t, "no Smartcar login yet", 20*time.Second)
	// Connected is not yet serving: the bridge starts its workers after the
	// broker answers, and /healthz says 503 until then.
	d.stderr.WaitLine(t, "ready: taking charge port commands", 20*time.Second)
	resp, err := http.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	json.NewDecoder(resp.Body).Decode(&report)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(report.Checks["token"], "waiting: no Smartcar login yet") {
		t.Errorf("healthz without a login: %d %+v, want 200 saying it waits", resp.StatusCode, report)
	}

	// `auth`, in another process, writes the login and the vehicle list.
	rt := sim.IssueRefreshToken()
	store := smartcar.NewTokenStore(dataDir)
	if err := store.Save(&oauth2.Token{RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
	if err := (smartcar.FleetCache{Path: filepath.Join(dataDir, smartcar.FleetFile)}).Save(smartcar.V2, []smartcar.VehicleDetails{
		{Vehicle: smartcar.Vehicle{ID: smartcarsim.TeslaID, Make: "TESLA", Model: "Model 3", Year: 2021},
			Permissions: []string{smartcar.PermReadCharge, smartcar.PermControlCharge}, TeslaEndpoints: true},
	}); err != nil {
		t.Fatal(err)
	}
	d.stderr.WaitLine(t, "announcing it to Home Assistant", 30*time.Second)
	d.stop(t)
}

// The add-on's way to a first API v2.0 login, through the daemon: Connect a
// car on the page, approve at Smartcar, paste the address the browser ended
// on. The daemon takes the login up without a restart, announces the cars,
// and the page names them where they are.
func TestNoLoginYetConnectFromThePage(t *testing.T) {
	_, srv := v3Sim(t)
	httpAddr := freeAddr(t)
	d := startMain(t, []string{"DATA_DIR=" + t.TempDir(), "SMARTCAR_CLIENT_ID=legacy-uuid", "SMARTCAR_CLIENT_SECRET=legacy-secret-Hh2",
		"SMARTCAR_API_URL=" + srv.URL + "/v2.0", "SMARTCAR_TOKEN_URL=" + srv.URL + "/oauth/token", "SMARTCAR_CONNECT_URL=" + srv.URL + "/oauth/authorize",
		"BROKER_ALLOW_ANONYMOUS=true", "BROKER_LISTEN=127.0.0.1:0", "HTTP_LISTEN=" + httpAddr}, "run")
	d.stderr.WaitLine(t, "ready: taking charge port commands", 20*time.Second)
	page := "http://" + httpAddr + "/"
	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, page+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", strings.TrimSuffix(page, "/")) // the page's own form
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	start := post("connect", nil)
	if start.StatusCode != http.StatusSeeOther {
		t.Fatalf("Connect a car: %d, want 303 to Smartcar Connect", start.StatusCode)
	}
	approved, err := noRedirect.Get(start.Header.Get("Location")) // the user approves at Smartcar
	if err != nil {
		t.Fatal(err)
	}
	approved.Body.Close()
	if done := post("connect/finish", url.Values{"address": {approved.Header.Get("Location")}}); done.StatusCode != http.StatusSeeOther || done.Header.Get("Location") != "../" {
		t.Fatalf("Finish: %d to %q, want 303 back to the page", done.StatusCode, done.Header.Get("Location"))
	}
	d.stderr.WaitLine(t, "announcing it to Home Assistant", 30*time.Second)

	var state struct {
		Connect struct {
			Phase  string                  `json:"phase"`
			New    []struct{ Name string } `json:"new"`
			Listed bool                    `json:"listed"`
		} `json:"connect"`
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.After(20 * time.Second); len(state.Connect.New) == 0 || !state.Connect.Listed; {
		select {
		case <-deadline:
			t.Fatalf("the page never named the new login's cars under Vehicles: %+v", state.Connect)
		case <-tick.C:
		}
		if err := json.Unmarshal([]byte(fetchPages(t, httpAddr, "/state")[0]), &state); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for _, c := range state.Connect.New {
		names = append(names, c.Name)
	}
	if state.Connect.Phase != "connected" || !slices.Contains(names, "2021 TESLA Model 3") {
		t.Errorf("the page says %+v, want connected with the Tesla", state.Connect)
	}
	if html := fetchPages(t, httpAddr, "/")[0]; len(names) > 1 && !strings.Contains(html, "They are under Vehicles above.") {
		t.Errorf("the page does not say where the %d cars are", len(names))
	}
	d.stop(t)
}

// A restart while Smartcar is out of reach (the server up before the router
// after a power cut), with a vehicle cache a week old, or with credentials
// Smartcar refuses: the daemon starts all the same, its broker up, the bridge
// online and the known car announced; it keeps trying in the background.
func TestColdStartWhatever(t *testing.T) {
	_, srv := v3Sim(t)
	for _, tt := range []struct {
		name string
		env  func(dataDir string) []string
		want string // in the log: what it waits for
	}{
		{"Smartcar out of reach", func(dataDir string) []string {
			closed := "http://" + freeAddr(t)
			return []string{"DATA_DIR=" + dataDir, "SMARTCAR_CLIENT_ID=client_e2e", "SMARTCAR_CLIENT_SECRET=api-secret-Kk8",
				"SMARTCAR_API_URL=" + closed + "/v3", "SMARTCAR_TOKEN_URL=" + closed + "/oauth2/token"}
		}, "NETWORK:CONNECTION_REFUSED"},
		{"credentials refused", func(dataDir string) []string {
			return v3Env(srv, dataDir, "SMARTCAR_CLIENT_SECRET=not-the-secret")
		}, "OAUTH:invalid_client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			fleet := smartcar.FleetCache{Path: filepath.Join(dataDir, smartcar.FleetFile), Now: func() time.Time { return time.Now().Add(-7 * 24 * time.Hour) }}
			if err := fleet.Save(smartcar.V3, []smartcar.VehicleDetails{{
				Vehicle:     smartcar.Vehicle{ID: smartcarsim.TeslaID, UserID: smartcarsim.UserID, Make: "TESLA", Model: "Model 3", Year: 2021},
				Permissions: []string{smartcar.PermReadCharge, smartcar.PermControlCharge},
			}}); err != nil {
				t.Fatal(err)
			}
			brokerAddr := freeAddr(t)
			d := startMain(t, append(tt.env(dataDir), "BROKER_ALLOW_ANONYMOUS=true", "BROKER_LISTEN="+brokerAddr, "HTTP_LISTEN=off"), "run")
			d.stderr.WaitLine(t, "connected to the MQTT broker", 20*time.Second)

			var got itest.Record[mqtt.Message]
			ha := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("ha-cold"))
			if tok := ha.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			defer ha.Disconnect(50)
			config := discovery.ConfigTopic("homeassistant", smartcarsim.TeslaID)
			if tok := ha.SubscribeMultiple(map[string]byte{config: 0, "smartcar2mqtt/status": 0}, func(_ mqtt.Client, m mqtt.Message) { got.Add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			got.WaitFor(t, "the known car's discovery and the bridge online", 20*time.Second, func(ms []mqtt.Message) bool {
				var announced, online bool
				for _, m := range ms {
					announced = announced || m.Topic() == config && len(m.Payload()) > 0
					online = online || m.Topic() == "smartcar2mqtt/status" && string(m.Payload()) == "online"
				}
				return announced && online
			})
			line := d.stderr.WaitLine(t, "cannot list the vehicles from Smartcar", 20*time.Second)
			if !strings.Contains(line, tt.want) {
				t.Errorf("the listing trouble does not say %q:\n%s", tt.want, line)
			}
			if n := strings.Count(d.stderr.Text(), "cannot list the vehicles"); n != 1 {
				t.Errorf("the listing trouble was logged %d times, want once", n)
			}
			d.stop(t)
			for _, m := range got.All() {
				if m.Topic() == config && len(m.Payload()) == 0 {
					t.Error("the known car was removed from Home Assistant")
				}
			}
		})
	}
}

// Two daemons on one DATA_DIR: the second exits 2 naming the first's pid,
// having touched nothing.
func TestSecondDaemonOnOneDataDir(t *testing.T) {
	_, srv := v3Sim(t)
	dataDir := t.TempDir()
	common := []string{"BROKER_ALLOW_ANONYMOUS=true", "BROKER_LISTEN=127.0.0.1:0", "HTTP_LISTEN=off"}
	first := startMain(t, append(v3Env(srv, dataDir), common...), "run")
	first.stderr.WaitLine(t, "connected to the MQTT broker", 20*time.Second)
	code, _, stderr := runMain(t, append(v3Env(srv, dataDir), common...), "run")
	if code != 2 || !strings.Contains(stderr, "is in use by another smartcar2mqtt (pid "+strconv.Itoa(first.cmd.Process.Pid)+")") {
		t.Errorf("second daemon: exit %d\n%s\nwant 2 naming pid %d", code, stderr, first.cmd.Process.Pid)
	}
	if strings.Contains(stderr, "broker started") {
		t.Errorf("the second daemon started a broker before finding the lock:\n%s", stderr)
	}
	first.stop(t)
}
