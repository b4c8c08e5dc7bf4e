package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets the test binary play the real program in a child process, so exit
// codes are observed as a user's shell (or Docker) sees them.
func TestMain(m *testing.M) {
	if os.Getenv("SMARTCAR2MQTT_BE_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// runMain runs the program with exactly env as its environment.
func runMain(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append([]string{"SMARTCAR2MQTT_BE_MAIN=1", "DATA_DIR=" + t.TempDir()}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
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
	for _, command := range []string{"run"} {
		for _, name := range []string{"SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "BROKER_USERNAME", "BROKER_PASSWORD"} {
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
