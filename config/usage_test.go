package config

import (
	"bufio"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	var b strings.Builder
	Usage(&b)
	out := b.String()

	rows := map[string]string{} // variable -> rest of its table row
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if key, rest, ok := strings.Cut(sc.Text(), " "); ok {
			rows[key] = rest
		}
	}
	for _, v := range variables(&Config{}) {
		row, ok := rows[v.key]
		if !ok {
			t.Errorf("no row for %s", v.key)
			continue
		}
		fields := strings.Fields(row)
		switch {
		case v.def != "":
			if fields[0] != v.def {
				t.Errorf("%s: default column %q, want %q", v.key, fields[0], v.def)
			}
		case v.defaultDoc != "":
			if !strings.HasPrefix(strings.TrimSpace(row), "("+v.defaultDoc+")") {
				t.Errorf("%s: row %q, want it to show (%s)", v.key, row, v.defaultDoc)
			}
		default:
			if fields[0] != "-" {
				t.Errorf("%s: default column %q, want -", v.key, fields[0])
			}
		}
		if !strings.Contains(row, v.desc) {
			t.Errorf("%s: row %q lacks its meaning %q", v.key, row, v.desc)
		}
	}
	for _, want := range []string{
		"smartcar2mqtt [run]", "smartcar2mqtt demo", "smartcar2mqtt auth",
		"smartcar2mqtt healthcheck", "smartcar2mqtt version", "--help",
		"Exit codes: 0", "1 any other failure", "2 bad configuration",
		"empty value counts as unset", "off disables",
		"before any network call", "DATA_DIR that cannot be created or written",
		"one daemon per DATA_DIR", "500 per vehicle",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	if strings.Contains(out, "cannot list the variables") {
		t.Errorf("template failed:\n%s", out)
	}
}
