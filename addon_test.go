package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

const supervisorToken = "supervisor-token-Zq7"

// fakeSupervisor answers /services/mqtt as the Supervisor does: the broker
// of the Mosquitto add-on with an account for this add-on, or, for a nil
// broker, its "Service not enabled". It counts the requests it was asked.
func fakeSupervisor(t *testing.T, broker map[string]any) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	return troubledSupervisor(t, broker, 0, nil)
}

// troubledSupervisor is fakeSupervisor that first answers failing times
// (-1: always) with fail, as a Supervisor that is restarting or broken would.
func troubledSupervisor(t *testing.T, broker map[string]any, failing int64, fail http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := asked.Add(1)
		if failing < 0 || n <= failing {
			fail(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer "+supervisorToken:
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"result": "error", "message": "Unauthorized"})
		case r.Method != http.MethodGet || r.URL.Path != "/services/mqtt":
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"result": "error", "message": "not found"})
		case broker == nil:
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"result": "error", "message": "Service not enabled", "data": map[string]any{}})
		default:
			json.NewEncoder(w).Encode(map[string]any{"result": "ok", "data": broker})
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &asked
}

// writeOptions writes the add-on's options.json as the Supervisor does.
func writeOptions(t *testing.T, dataDir string, options map[string]any) {
	t.Helper()
	data, err := json.Marshal(options)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, config.OptionsFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// simOptions are the options a user types, pointed at the simulator.
func simOptions(srv *httptest.Server, extra map[string]any) map[string]any {
	o := map[string]any{
		"smartcar_client_id": "client_e2e", "smartcar_client_secret": "api-secret-Kk8", "smartcar_application_id": "app-e2e",
		"smartcar_api_url": srv.URL + "/v3", "smartcar_token_url": srv.URL + "/oauth2/token", "smartcar_connect_url": srv.URL + "/oauth/authorize",
		"smartcar_vehicle_ids": []string{smartcarsim.TeslaID},
	}
	for k, v := range extra {
		o[k] = v
	}
	return o
}

// waitCover waits for the Tesla's device with its charge port cover on the
// broker at url, as Home Assistant would see it.
func waitCover(t *testing.T, url, username, password string) {
	t.Helper()
	var got itest.Record[mqtt.Message]
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("ha-addon-test").SetUsername(username).SetPassword(password)
	ha := mqtt.NewClient(opts)
	if tok := ha.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", url, tok.Error())
	}
	defer ha.Disconnect(50)
	topic := discovery.ConfigTopic("homeassistant", smartcarsim.TeslaID)
	if tok := ha.Subscribe(topic, 0, func(_ mqtt.Client, m mqtt.Message) { got.Add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	got.WaitFor(t, "the car's device with its charge port cover", 20*time.Second, func(ms []mqtt.Message) bool {
		for _, m := range ms {
			var device struct {
				Components map[string]struct {
					Platform string `json:"p"`
				} `json:"cmps"`
			}
			if json.Unmarshal(m.Payload(), &device) != nil {
				continue
			}
			for _, c := range device.Components {
				if c.Platform == "cover" {
					return true
				}
			}
		}
		return false
	})
}

// mosquittoWithAccount runs mosquitto where the account the Supervisor hands
// out is checked: a wrong password is refused.
func mosquittoWithAccount(t *testing.T, user, password string) *itest.Mosquitto {
	t.Helper()
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		itest.Absent(t, "REQUIRE_MOSQUITTO", "mosquitto_passwd not installed: the Supervisor's broker test needs it (apt-get install mosquitto, or run .ci/run)")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", file, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	// mosquitto started as root reads it as its own user.
	for _, p := range []string{filepath.Dir(dir), dir} {
		os.Chmod(p, 0o755)
	}
	os.Chmod(file, 0o644)
	return itest.NewMosquitto(t, "tcp", "password_file "+file+"\n")
}

// The add-on as the Supervisor runs it: options.json in /data, the
// Supervisor's token in the environment, and the broker it offers.
func TestAddonUsesTheSupervisorsBroker(t *testing.T) {
	_, sim := v3Sim(t)
	broker := mosquittoWithAccount(t, "addons", "mqtt-pass-Rr4")
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(broker.URL(), "tcp://"))
	portNum, _ := strconv.Atoi(port)
	sv, asked := fakeSupervisor(t, map[string]any{"host": host, "port": portNum, "ssl": false, "protocol": "3.1.1", "username": "addons", "password": "mqtt-pass-Rr4"})

	dataDir := t.TempDir()
	httpAddr := freeAddr(t)
	writeOptions(t, dataDir, simOptions(sim, map[string]any{"http_listen": httpAddr}))
	d := startMain(t, []string{"DATA_DIR=" + dataDir, "SUPERVISOR_URL=" + sv.URL, "SUPERVISOR_TOKEN=" + supervisorToken}, "addon")
	d.stderr.WaitLine(t, "using the MQTT broker the Supervisor offers", 20*time.Second)
	waitCover(t, broker.URL(), "", "")
	if asked.Load() != 1 {
		t.Errorf("the Supervisor was asked %d times, want once", asked.Load())
	}

	// The cover can be announced before the bridge serves: wait for the word.
	d.stderr.WaitLine(t, "ready: taking charge port commands", 20*time.Second)
	fetchPages(t, httpAddr, "/healthz")
	// The container's HEALTHCHECK inside the add-on asks where the options say.
	if code, _, stderr := runMain(t, []string{"DATA_DIR=" + dataDir, "SUPERVISOR_TOKEN=" + supervisorToken}, "healthcheck"); code != 0 {
		t.Errorf("healthcheck in the add-on: exit %d\n%s", code, stderr)
	}
	// The Ingress port answers only the Supervisor's proxy; this test is not it.
	resp, err := http.Get("http://127.0.0.1:" + config.IngressPort + "/healthz")
	if err != nil {
		t.Fatalf("the Ingress port: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("the Ingress port answered %d to a stranger, want 403", resp.StatusCode)
	}
	d.stop(t)
	for _, secret := range []string{"mqtt-pass-Rr4", "api-secret-Kk8", supervisorToken} {
		if strings.Contains(d.stderr.Text()+d.stdout.Text(), secret) {
			t.Errorf("a secret reached the log:\n%s", d.stderr.Text())
		}
	}
}

// Without a broker add-on, the embedded broker serves Home Assistant with
// the account from the options.
func TestAddonWithoutSupervisorBrokerRunsTheEmbeddedOne(t *testing.T) {
	_, sim := v3Sim(t)
	sv, _ := fakeSupervisor(t, nil)
	dataDir := t.TempDir()
	brokerAddr := freeAddr(t)
	writeOptions(t, dataDir, simOptions(sim, map[string]any{
		"http_listen": "off", "broker_listen": brokerAddr, "broker_username": "homeassistant", "broker_password": "ha-pass-Mm3",
	}))
	d := startMain(t, []string{"DATA_DIR=" + dataDir, "SUPERVISOR_URL=" + sv.URL, "SUPERVISOR_TOKEN=" + supervisorToken}, "addon")
	d.stderr.WaitLine(t, "offers no MQTT broker", 20*time.Second)
	d.stderr.WaitLine(t, "connected to the MQTT broker", 20*time.Second)
	waitCover(t, "tcp://"+brokerAddr, "homeassistant", "ha-pass-Mm3")
	d.stop(t)
}

// What a user gets wrong in the Configuration tab stops the add-on with exit
// 2, naming the option, before the Supervisor or Smartcar is asked anything.
func TestAddonBadOptions(t *testing.T) {
	for _, tt := range []struct {
		name     string
		options  any // nil: no options.json
		want     []string
		noBroker bool // the Supervisor has no broker
	}{
		{"no client id", map[string]any{"smartcar_client_secret": "s3cret-Pp1"}, []string{"smartcar_client_id: required"}, false},
		{"unknown option", map[string]any{"smartcar_client_id": "client_x", "smartcar_client_secret": "s3cret-Pp1", "smartcar_clinet_secret": "x"}, []string{"smartcar_clinet_secret: is not an option"}, false},
		{"bad poll interval", map[string]any{"smartcar_client_id": "client_x", "smartcar_client_secret": "s3cret-Pp1", "smartcar_poll_interval": "soon"}, []string{"smartcar_poll_interval:", `"soon" is not a duration`}, false},
		{"a number where a list goes", map[string]any{"smartcar_client_id": "client_x", "smartcar_client_secret": "s3cret-Pp1", "smartcar_vehicle_ids": []any{1}}, []string{"smartcar_vehicle_ids: must be a list of strings"}, false},
		{"not JSON", "{\"smartcar_client_secret\": \"s3cret-Pp1\"", []string{"options.json:", "not valid JSON"}, false},
		{"no options.json", nil, []string{"options.json:", "does not exist"}, false},
		{"no broker and no account", map[string]any{"smartcar_client_id": "client_x", "smartcar_client_secret": "s3cret-Pp1", "http_listen": "off"},
			[]string{"broker_username: required for the embedded broker", "broker_password: required", "Mosquitto broker add-on"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sv, asked := fakeSupervisor(t, nil)
			dataDir := t.TempDir()
			switch o := tt.options.(type) {
			case string:
				os.WriteFile(filepath.Join(dataDir, config.OptionsFile), []byte(o), 0o600)
			case map[string]any:
				writeOptions(t, dataDir, o)
			}
			code, _, stderr := runMain(t, []string{"DATA_DIR=" + dataDir, "SUPERVISOR_URL=" + sv.URL, "SUPERVISOR_TOKEN=" + supervisorToken, "BROKER_LISTEN=" + freeAddr(t)}, "addon")
			if code != exitBadConfig {
				t.Errorf("exit %d, want %d\n%s", code, exitBadConfig, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("the message does not say %q:\n%s", w, stderr)
				}
			}
			if !strings.Contains(stderr, "Configuration tab") {
				t.Errorf("the message does not send the user to the add-on's Configuration tab:\n%s", stderr)
			}
			if tt.noBroker && strings.Contains(stderr, `\n`) {
				t.Errorf("the log line shows line breaks as \\n:\n%s", stderr)
			}
			if strings.Contains(stderr, "s3cret-Pp1") {
				t.Errorf("the secret reached the message:\n%s", stderr)
			}
			if want := int64(0); tt.noBroker {
				want = 1
				if asked.Load() != want {
					t.Errorf("the Supervisor was asked %d times, want %d", asked.Load(), want)
				}
			} else if asked.Load() != want {
				t.Errorf("the Supervisor was asked %d times before the options were checked", asked.Load())
			}
		})
	}
}

// addonInProcess loads the add-on's Config from options as LoadAddon does in
// the add-on, with the Supervisor at svURL, and a logger writing to out.
func addonInProcess(t *testing.T, svURL string, options map[string]any, out *itest.Output) (*config.Config, *logrus.Entry) {
	t.Helper()
	dataDir := t.TempDir()
	writeOptions(t, dataDir, options)
	env := map[string]string{"DATA_DIR": dataDir, "SUPERVISOR_URL": svURL, "SUPERVISOR_TOKEN": supervisorToken}
	cfg, err := config.LoadAddon("addon", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg, newLogger(cfg, out)
}

// withEmbeddedAccount are the add-on's options against sim, with an account
// for the embedded broker: were the add-on to fall back to it, it would run,
// and the tests see that it did not.
func withEmbeddedAccount(t *testing.T, sim *httptest.Server) map[string]any {
	return simOptions(sim, map[string]any{
		"http_listen": "off", "broker_listen": freeAddr(t), "broker_username": "homeassistant", "broker_password": "ha-pass-Mm3",
	})
}

// fastWait asks the Supervisor again within milliseconds, for a fraction of a
// second: the add-on's own wait is a minute.
var fastWait = supervisorWait{first: time.Millisecond, max: 10 * time.Millisecond, total: 300 * time.Millisecond}

// runAddon runs the add-on in this process until it returns, or fails the
// test after timeout (then stopping it).
func runAddon(t *testing.T, ctx context.Context, cfg *config.Config, log *logrus.Entry, wait supervisorWait, timeout time.Duration, out *itest.Output) error {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- addonWith(ctx, cfg, log, wait) }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		cancel()
		<-done
		t.Fatalf("the add-on still ran after %s; its log:\n%s", timeout, out.Text())
		return nil
	}
}

// A Supervisor that answers 500 while it starts: the add-on asks again, and
// uses its broker once it answers.
func TestAddonWaitsForTheSupervisor(t *testing.T) {
	_, sim := v3Sim(t)
	broker := mosquittoWithAccount(t, "addons", "mqtt-pass-Rr4")
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(broker.URL(), "tcp://"))
	portNum, _ := strconv.Atoi(port)
	sv, asked := troubledSupervisor(t, map[string]any{"host": host, "port": portNum, "username": "addons", "password": "mqtt-pass-Rr4"}, 3,
		func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"result":"error","message":"Supervisor is starting"}`))
		})
	var out itest.Output
	cfg, log := addonInProcess(t, sv.URL, withEmbeddedAccount(t, sim), &out)

	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- addonWith(ctx, cfg, log, fastWait) }()
	t.Cleanup(func() { // before its DATA_DIR goes, even if the test fails
		stop()
		if err := <-done; err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	waitCover(t, broker.URL(), "", "")
	if asked.Load() != 4 {
		t.Errorf("the Supervisor was asked %d times, want 4 (three 500s, then its broker)", asked.Load())
	}
	log1 := out.Text()
	for _, want := range []string{"HTTP 500: Supervisor is starting", "using the MQTT broker the Supervisor offers"} {
		if !strings.Contains(log1, want) {
			t.Errorf("the log does not say %q:\n%s", want, log1)
		}
	}
	if n := strings.Count(log1, "asking again"); n != 1 {
		t.Errorf("%d warnings about asking again, want one:\n%s", n, log1)
	}
	if strings.Contains(log1, "embedded MQTT broker") {
		t.Errorf("the embedded broker ran:\n%s", log1)
	}
}

// A Supervisor that cannot be asked is not the Supervisor saying it has no
// broker: the add-on stops, with exit 1, rather than run an embedded broker
// Home Assistant would never see.
func TestAddonStopsWhenTheSupervisorCannotBeAsked(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tt := range []struct {
		name string
		fail http.HandlerFunc // nil: nothing listens
		want string
	}{
		{"500", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"result":"error","message":"Unknown error, see Supervisor logs"}`))
		}, "HTTP 500: Unknown error"},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>bad gateway</html>"))
		}, "HTTP 502, not the Supervisor's JSON"},
		{"no answer", nil, "connection refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, sim := v3Sim(t)
			url, asked := closed.URL, &atomic.Int64{}
			if tt.fail != nil {
				var sv *httptest.Server
				sv, asked = troubledSupervisor(t, nil, -1, tt.fail)
				url = sv.URL
			}
			var out itest.Output
			cfg, log := addonInProcess(t, url, withEmbeddedAccount(t, sim), &out)
			err := runAddon(t, t.Context(), cfg, log, fastWait, 20*time.Second, &out)
			if err == nil {
				t.Fatalf("no error; the log:\n%s", out.Text())
			}
			for _, want := range []string{"ask the Supervisor for its MQTT broker", tt.want, "the Supervisor could not be asked", "the embedded broker is not started"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not say %q: %v", want, err)
				}
			}
			if code := exitCode(err); code != exitFailure {
				t.Errorf("exit %d, want %d: the options are not at fault", code, exitFailure)
			}
			if tt.fail != nil && asked.Load() < 2 {
				t.Errorf("the Supervisor was asked %d times, want it asked again", asked.Load())
			}
			if strings.Contains(out.Text(), "embedded MQTT broker") {
				t.Errorf("the embedded broker ran:\n%s", out.Text())
			}
			if strings.Contains(out.Text()+err.Error(), supervisorToken) {
				t.Errorf("the Supervisor's token reached the log or the error")
			}
		})
	}
}

// Stopping the add-on while it waits for the Supervisor stops it at once,
// cleanly, without starting anything.
func TestAddonStopsWhileWaitingForTheSupervisor(t *testing.T) {
	_, sim := v3Sim(t)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	sv, asked := troubledSupervisor(t, nil, -1, func(w http.ResponseWriter, _ *http.Request) {
		stop() // SIGTERM from the Supervisor, while the add-on waits for it
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"result":"error","message":"busy"}`))
	})
	var out itest.Output
	cfg, log := addonInProcess(t, sv.URL, withEmbeddedAccount(t, sim), &out)
	hour := supervisorWait{first: time.Hour, max: time.Hour, total: 2 * time.Hour}
	if err := runAddon(t, ctx, cfg, log, hour, 20*time.Second, &out); err != nil {
		t.Errorf("stopped while waiting: %v, want a clean stop", err)
	}
	if asked.Load() != 1 || strings.Contains(out.Text(), "embedded MQTT broker") {
		t.Errorf("asked %d times (want 1); the log:\n%s", asked.Load(), out.Text())
	}
}
