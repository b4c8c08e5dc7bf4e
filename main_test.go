package main

import (
	"bufio"
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
	code, _, stderr := runMain(t, []string{"SMARTCAR_TIMEOUT=soon", "LOG_LEVEL=loud"}, "run")
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, name := range []string{"SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "SMARTCAR_TIMEOUT", "LOG_LEVEL"} {
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
	sim := smartcar.NewSimulator(smartcar.SimOptions{ClientID: "cid", ClientSecret: "csecret-value"})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	callback := freeAddr(t)
	dataDir := t.TempDir()

	cmd := exec.Command(testBinary(t), "auth")
	cmd.Env = []string{
		"SMARTCAR2MQTT_BE_MAIN=1", "DATA_DIR=" + dataDir,
		"SMARTCAR_CLIENT_ID=cid", "SMARTCAR_CLIENT_SECRET=csecret-value",
		"SMARTCAR_CONNECT_URL=" + srv.URL + "/oauth/authorize",
		"SMARTCAR_TOKEN_URL=" + srv.URL + "/oauth/token",
		"SMARTCAR_API_URL=" + srv.URL + "/v2.0",
		"SMARTCAR_REDIRECT_URI=http://" + callback + "/callback",
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	var out strings.Builder
	var connectURL string
	deadline := time.After(20 * time.Second)
	for connectURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("auth ended before printing a URL:\n%s\n%s", out.String(), stderr.String())
			}
			out.WriteString(l + "\n")
			if u := strings.TrimSpace(l); strings.HasPrefix(u, srv.URL+"/oauth/authorize?") {
				connectURL = u
			}
		case <-deadline:
			t.Fatalf("no Connect URL printed:\n%s", out.String())
		}
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
	for l := range lines {
		out.WriteString(l + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("auth: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	text := out.String()
	for _, want := range []string{"Model 3", smartcar.SimTeslaID, "Mustang"} {
		if !strings.Contains(text, want) {
			t.Errorf("auth output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text+stderr.String(), "csecret-value") {
		t.Error("auth printed the client secret")
	}
	tok, err := smartcar.NewTokenStore(dataDir).Load()
	if err != nil || tok.RefreshToken == "" {
		t.Fatalf("token store after auth: %v %+v", err, tok)
	}
}

// The demo as a user (and Docker's HEALTHCHECK) sees it: healthy once up, and
// neither /healthz nor /metrics shows a secret.
func TestDemoHealthAndMetrics(t *testing.T) {
	httpAddr := freeAddr(t)
	dataDir := t.TempDir()
	exe := testBinary(t)
	env := []string{"SMARTCAR2MQTT_BE_MAIN=1", "DATA_DIR=" + dataDir, "HTTP_LISTEN=" + httpAddr, "BROKER_LISTEN=127.0.0.1:0"}
	cmd := exec.Command(exe, "demo")
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Up when it says it connected to the broker: wait on that line, not a clock.
	up := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stderr)
		once := false
		for s.Scan() {
			if !once && strings.Contains(s.Text(), "connected to the MQTT broker") {
				close(up)
				once = true
			}
		}
	}()
	select {
	case <-up:
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not connect within 20 s")
	}

	probe := exec.Command(exe, "healthcheck")
	probe.Env = env
	if out, err := probe.CombinedOutput(); err != nil {
		t.Fatalf("healthcheck: %v\n%s", err, out)
	}
	var pages []string
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d\n%s", path, resp.StatusCode, body)
		}
		pages = append(pages, string(body))
	}
	if !strings.Contains(pages[1], `smartcar2mqtt_smartcar_calls_total{endpoint="tesla_charge",outcome="ok"}`) {
		t.Errorf("/metrics lacks the call counts:\n%s", pages[1])
	}
	// The demo keeps to DATA_DIR/demo: a real login beside it is never touched.
	if _, err := smartcar.NewTokenStore(dataDir).Load(); !errors.Is(err, smartcar.ErrNoToken) {
		t.Errorf("the demo wrote a token store at DATA_DIR itself: %v", err)
	}
	tok, err := smartcar.NewTokenStore(filepath.Join(dataDir, "demo")).Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken, "demo-secret"} {
		for i, page := range pages {
			if secret != "" && strings.Contains(page, secret) {
				t.Errorf("page %d shows a secret", i)
			}
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("demo did not stop cleanly on SIGTERM: %v", err)
	}
	probe = exec.Command(exe, "healthcheck")
	probe.Env = env
	if err := probe.Run(); err == nil {
		t.Error("healthcheck says healthy after the daemon stopped")
	}
}
