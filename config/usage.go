package config

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// usageHeader is the part of --help that is not about variables.
const usageHeader = `smartcar2mqtt bridges Smartcar vehicles' charge port doors to Home Assistant over MQTT.

Usage:
  smartcar2mqtt [run]        run the daemon (the default command)
  smartcar2mqtt demo         the daemon against a built-in simulated Smartcar (API v3, or v2
                             with SMARTCAR_API_VERSION=v2) and an anonymous embedded broker
                             on 127.0.0.1:1883; no account needed
  smartcar2mqtt auth         connect a car with Smartcar Connect: prints a link to open in any
                             browser (a phone will do), waits for the new connection, then
                             lists the vehicles now visible
  smartcar2mqtt addon        the daemon as a Home Assistant add-on: options from
                             DATA_DIR/options.json (DATA_DIR /data; each option is a variable
                             in lower case and wins over it), the Supervisor's MQTT broker
                             unless mqtt_url is set, and the web page also on the Ingress
                             port 8099
  smartcar2mqtt healthcheck  exit 0 if the local daemon reports healthy, else 1
  smartcar2mqtt version      print version, commit and Go version
  smartcar2mqtt -h | --help  print this help

Exit codes: 0 clean stop (SIGTERM/SIGINT), 1 any other failure,
2 bad configuration (the message names every offending variable). Found at
start, before any network call: a value out of range, a CA, certificate or key
file that does not load, a DATA_DIR that cannot be created or written, a port
in use. Also 2: a DATA_DIR another smartcar2mqtt is using (one daemon per DATA_DIR),
and a SMARTCAR_VEHICLE_IDS id the account does not have (named, with the account's
ids; known from the vehicle cache at start, or from the first listing).

Smartcar API: v3 for apps created since mid-2026 (their API client id starts with
client_; Connect needs SMARTCAR_APPLICATION_ID), the legacy v2.0 for older apps
(UUID client id, tokens kept in DATA_DIR/token.json). SMARTCAR_API_VERSION=auto
picks by the client id; the daemon logs at start which one it uses and why.

Configuration is read from the environment. An empty value counts as unset.
Durations are Go durations (90s, 15m, 6h). Defaults in parentheses describe
the behaviour when the variable is unset.

`

// usageTable renders one row per variable from the struct tags, through
// envconfig's own tag walk, so the help cannot drift from what Load reads.
// A variable without a literal default shows its `defaultdoc` tag, or "-".
const usageTable = `VARIABLE	DEFAULT	MEANING
{{range .}}{{usage_key .}}	{{with usage_default .}}{{.}}{{else}}{{with .Tags.Get "defaultdoc"}}({{.}}){{else}}-{{end}}{{end}}	{{usage_description .}}
{{end}}`

// Usage writes the --help text: commands, exit codes, and every variable
// with its default and meaning. Errors writing to w are ignored, as for any
// help output.
func Usage(w io.Writer) {
	_, _ = io.WriteString(w, usageHeader)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if err := envconfig.Usagef("", &Config{}, tw, usageTable); err != nil {
		// Only a broken template gets here; the tests render it.
		_, _ = fmt.Fprintf(tw, "(cannot list the variables: %v)\n", err)
	}
	_ = tw.Flush()
}
