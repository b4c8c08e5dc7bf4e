package itest

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium finds a headless-capable Chromium (Debian's chromium, or a Chrome)
// for the real-browser tests, or skips the test (fails it with
// REQUIRE_BROWSER=1, which CI sets).
func Chromium(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless-shell"} {
		if bin, err := exec.LookPath(name); err == nil {
			return bin
		}
	}
	Absent(tb, "REQUIRE_BROWSER", "no Chromium installed: the real-browser test needs it (apt-get install chromium, or run .ci/run)")
	return ""
}

// ChromiumNeedsNoSandbox says whether Chromium must run with --no-sandbox:
// as root (CI, containers) it refuses to start inside its own sandbox.
func ChromiumNeedsNoSandbox() bool {
	return os.Geteuid() == 0
}
