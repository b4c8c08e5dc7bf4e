package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// TestMain lets the test binary play the real program in a child process, so exit
// codes are observed as a user's shell (or Docker) sees them.
func TestMain(m *testing.M) {
	if os.Getenv("SMARTCAR2MQTT_BE_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// freeAddr is a loopback address with a port nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testBinary is this test binary, which TestMain turns into the program.
func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// runMain runs the program with exactly env as its environment.
func runMain(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(testBinary(t), args...)
	cmd.Env = append([]string{"SMARTCAR2MQTT_BE_MAIN=1", "DATA_DIR=" + t.TempDir()}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run: %v", err)
	}
	return code, out.String(), errOut.String()
}

// child is the program running as a child process.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr *itest.Output
	exited         chan struct{}
	err            error // cmd.Wait's, once exited is closed
}

// startMain starts the program with exactly env as its environment; it is killed
// at the end of the test if still running.
func startMain(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(testBinary(t), args...), stdout: &itest.Output{}, stderr: &itest.Output{}, exited: make(chan struct{})}
	c.cmd.Env = append([]string{"SMARTCAR2MQTT_BE_MAIN=1"}, env...)
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr // exec copies them; Wait waits for the copies
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		c.stdout.Close()
		c.stderr.Close()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

// startDemo starts `smartcar2mqtt demo` with env.
func startDemo(t *testing.T, env ...string) *child {
	t.Helper()
	return startMain(t, env, "demo")
}

// wait waits up to timeout for the child to exit, and fails the test if it did
// not, or did not exit cleanly.
func (c *child) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.exited:
		if c.err != nil {
			t.Errorf("%s: %v\nstdout:\n%s\nstderr:\n%s", c.cmd.Args[1], c.err, c.stdout.Text(), c.stderr.Text())
		}
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v:\n%s", c.cmd.Args[1], timeout, c.stderr.Text())
	}
}

// stop sends SIGTERM, as docker stop does, and waits for a clean exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.wait(t, 15*time.Second)
}

// fetchPages GETs each path from the daemon's HTTP server at addr, wants status
// 200, and returns the bodies.
func fetchPages(t *testing.T, addr string, paths ...string) []string {
	t.Helper()
	pages := make([]string, 0, len(paths))
	for _, path := range paths {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d\n%s", path, resp.StatusCode, body)
		}
		pages = append(pages, string(body))
	}
	return pages
}

func TestRequiredVariablesStopStartup(t *testing.T) {
	full := map[string]string{
		"SMARTCAR_CLIENT_ID":     "id",
		"SMARTCAR_CLIENT_SECRET": "s3cr3t-value",
		"BROKER_USERNAME":        "ha",
		"BROKER_PASSWORD":        "pw",
	}
	required := map[string][]string{
		"run":  {"SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "BROKER_USERNAME", "BROKER_PASSWORD"},
		"auth": {"SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET"},
	}
	for command, names := range required {
		for _, name := range names {
			for _, how := range []string{"missing", "empty"} {
				t.Run(command+"/"+name+"/"+how, func(t *testing.T) {
					var env []string
					for k, v := range full {
						switch {
						case k != name:
							env = append(env, k+"="+v)
						case how == "empty":
							env = append(env, k+"=")
						}
					}
					code, _, stderr := runMain(t, env, command)
					if code != 2 {
						t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
					}
					if !strings.Contains(stderr, name) {
						t.Errorf("stderr does not name %s:\n%s", name, stderr)
					}
					if strings.Contains(stderr, "s3cr3t-value") {
						t.Errorf("stderr shows the client secret:\n%s", stderr)
					}
				})
			}
		}
	}
}

func TestEveryProblemIsNamedAtOnce(t *testing.T) {
	// The base topic and the vehicle id are ones discovery could not publish
	// under: refused at start-up, not after it.
	code, _, stderr := runMain(t, []string{"SMARTCAR_TIMEOUT=soon", "LOG_LEVEL=loud",
		"MQTT_BASE_TOPIC=car\u0085s", "SMARTCAR_VEHICLE_IDS=a.b"}, "run")
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, name := range []string{"SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "SMARTCAR_TIMEOUT", "LOG_LEVEL", "MQTT_BASE_TOPIC", "SMARTCAR_VEHICLE_IDS"} {
		if !strings.Contains(stderr, name) {
			t.Errorf("stderr does not name %s:\n%s", name, stderr)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, stdout, _ := runMain(t, nil, "--help")
	if code != 0 || !strings.Contains(stdout, "SMARTCAR_POLL_INTERVAL") || !strings.Contains(stdout, "demo") {
		t.Errorf("--help: exit %d, output:\n%s", code, stdout)
	}
	code, stdout, _ = runMain(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "smartcar2mqtt ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("version: exit %d, output %q", code, stdout)
	}
	code, _, stderr := runMain(t, nil, "frobnicate")
	if code != 2 || !strings.Contains(stderr, "frobnicate") {
		t.Errorf("unknown command: exit %d, stderr %q", code, stderr)
	}
}

// `smartcar2mqtt auth` end to end: the child prints the Connect URL, a real HTTP
// client plays the browser through the simulator's Connect and back to the child's
// callback, and the child stores the tokens and lists the vehicles.
func TestAuthCommand(t *testing.T) {
	sim := smartcarsim.New(smartcarsim.Options{ClientID: "cid", ClientSecret: "csecret-value"})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	callback := freeAddr(t)
	dataDir := t.TempDir()

	c := startMain(t, []string{
		"DATA_DIR=" + dataDir,
		"SMARTCAR_CLIENT_ID=cid", "SMARTCAR_CLIENT_SECRET=csecret-value",
		"SMARTCAR_CONNECT_URL=" + srv.URL + "/oauth/authorize",
		"SMARTCAR_TOKEN_URL=" + srv.URL + "/oauth/token",
		"SMARTCAR_API_URL=" + srv.URL + "/v2.0",
		"SMARTCAR_REDIRECT_URI=http://" + callback + "/callback",
	}, "auth")
	connectURL := strings.TrimSpace(c.stdout.WaitLine(t, srv.URL+"/oauth/authorize?", 20*time.Second))
	if !strings.HasPrefix(connectURL, srv.URL+"/oauth/authorize?") {
		t.Fatalf("the Connect URL is not alone on its line: %q", connectURL)
	}
	// The browser: Connect redirects to the callback, which the child serves; the
	// child is listening before it prints the URL.
	resp, err := http.Get(connectURL)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("callback page status %d", resp.StatusCode)
	}
	c.wait(t, 20*time.Second)
	text := c.stdout.Text()
	for _, want := range []string{"Model 3", smartcarsim.TeslaID, "Mustang"} {
		if !strings.Contains(text, want) {
			t.Errorf("auth output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text+c.stderr.Text(), "csecret-value") {
		t.Error("auth printed the client secret")
	}
	tok, err := smartcar.NewTokenStore(dataDir).Load()
	if err != nil || tok.RefreshToken == "" {
		t.Fatalf("token store after auth: %v %+v", err, tok)
	}
}

// The demo as a user (and Docker's HEALTHCHECK) sees it, on API v3 by default and on
// the legacy v2.0 path: healthy once up, both pages served, and its state kept apart
// from a real login. TestLogAudit checks that no page shows a secret.
func TestDemoHealthAndMetrics(t *testing.T) {
	for _, tt := range []struct {
		name, env, readMetric, startLine string
	}{
		{"v3 by default", "SMARTCAR_API_VERSION=", `endpoint="signals",outcome="ok"`, "using Smartcar API v3"},
		{"v2", "SMARTCAR_API_VERSION=v2", `endpoint="tesla_charge",outcome="ok"`, "using Smartcar API v2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			httpAddr := freeAddr(t)
			dataDir := t.TempDir()
			d := startDemo(t, tt.env, "DATA_DIR="+dataDir, "HTTP_LISTEN="+httpAddr, "BROKER_LISTEN=127.0.0.1:0", "LOG_LEVEL=debug")
			d.stderr.WaitLine(t, tt.startLine, 20*time.Second)
			// Up when it says it serves: wait on that line, not a clock.
			d.stderr.WaitLine(t, "ready: taking charge port commands", 20*time.Second)
			// The vehicles are listed in the background, then read: wait for the read.
			d.stderr.WaitLine(t, `why="after a read"`, 20*time.Second)

			probe := exec.Command(d.cmd.Path, "healthcheck")
			probe.Env = d.cmd.Env
			if out, err := probe.CombinedOutput(); err != nil {
				t.Fatalf("healthcheck: %v\n%s", err, out)
			}
			pages := fetchPages(t, httpAddr, "/healthz", "/metrics")
			if !strings.Contains(pages[1], "smartcar2mqtt_smartcar_calls_total{"+tt.readMetric+"}") {
				t.Errorf("/metrics lacks the call counts of the read:\n%s", pages[1])
			}
			// The demo keeps to DATA_DIR/demo: a real login beside it is never touched.
			if _, err := smartcar.NewTokenStore(dataDir).Load(); !errors.Is(err, smartcar.ErrNoToken) {
				t.Errorf("the demo wrote a token store at DATA_DIR itself: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dataDir, smartcar.FleetFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the demo wrote a vehicle cache at DATA_DIR itself: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "demo", smartcar.FleetFile)); err != nil {
				t.Errorf("no vehicle cache at DATA_DIR/demo: %v", err)
			}

			d.stop(t)
			probe = exec.Command(d.cmd.Path, "healthcheck")
			probe.Env = d.cmd.Env
			if err := probe.Run(); err == nil {
				t.Error("healthcheck says healthy after the daemon stopped")
			}
		})
	}
}
