package itest

import (
	"os"
	"testing"
)

// Absent ends a test that needs a tool this machine lacks: it skips with why
// (what is missing and how to get it), or fails when require, the tool's
// REQUIRE_… variable, is 1, as CI sets them all, so CI never skips silently.
func Absent(tb testing.TB, require, why string) {
	tb.Helper()
	if os.Getenv(require) == "1" {
		tb.Fatalf("%s (%s=1: not skipping)", why, require)
	}
	tb.Skip(why)
}
