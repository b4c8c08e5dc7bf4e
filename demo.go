package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/oauth2"
	"golang.org/x/sync/errgroup"

	"github.com/smartcar2mqtt/smartcar2mqtt/broker"
	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
	"github.com/smartcar2mqtt/smartcar2mqtt/status"
)

// The demo's simulated Smartcar application: v3 API credentials and
// Application ID, and a v2.0 OAuth client for SMARTCAR_API_VERSION=v2.
const (
	demoAPIClientID = "client_demo"
	demoAppID       = "demo-application"
	demoV2ClientID  = "demo-client"
	demoSecret      = "demo-secret"
)

// Where the demo goes unless the user says otherwise. Its listeners stay on
// loopback: a demo needs no visitors, and its broker lets anyone in. On the
// user's own broker (MQTT_URL) it keeps to a base topic and a client id of its
// own, so a real smartcar2mqtt on that broker keeps its topics, its devices
// (the bridge only ever clears configs that point at its own base topic) and
// its session (a second client with the same id would take it over).
const (
	demoBrokerListen = "127.0.0.1:1883"
	demoHTTPListen   = "127.0.0.1:8080"
	demoBaseTopic    = "smartcar2mqtt_demo"
	demoClientID     = "smartcar2mqtt-demo"
	// demoAnyPort is where a listener goes when its default address is taken:
	// on a Home Assistant host Mosquitto has 1883, and something often has 8080.
	demoAnyPort = "127.0.0.1:0"
)

// demo runs the whole daemon against the built-in simulated Smartcar (API v3 unless
// SMARTCAR_API_VERSION=v2), with the embedded broker on loopback or, with MQTT_URL,
// on the user's own broker: no account and no configuration needed.
func demo(ctx context.Context, cfg *config.Config, log *logrus.Entry, stdout io.Writer) error {
	// Listeners first: a port in use is found before anything is made or
	// printed, and the banner gives the ports really taken.
	banner, err := demoListeners(cfg)
	if err != nil {
		return err
	}
	if cfg.IsSet("DATA_DIR") {
		// A subdirectory of its own: the demo writes the simulator's login and
		// vehicles, which must never replace a real login kept in the same DATA_DIR
		// (the container image always sets DATA_DIR=/data).
		cfg.DataDir = filepath.Join(cfg.DataDir, "demo")
	} else {
		dir, err := os.MkdirTemp("", "smartcar2mqtt-demo-")
		if err != nil {
			return fmt.Errorf("make the demo's temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	sim := smartcarsim.New(smartcarsim.Options{
		ClientID: demoV2ClientID, ClientSecret: demoSecret,
		APIClientID: demoAPIClientID, APIClientSecret: demoSecret, ApplicationID: demoAppID,
		Latency: 2 * time.Second,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the simulator: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve the simulator: %w", err)
		}
		return nil
	})

	// The simulator starts afresh each time, and so does the demo's view of it: as if
	// the user had just connected the car.
	if err := (smartcar.FleetCache{Path: filepath.Join(cfg.DataDir, smartcar.FleetFile)}).Forget(); err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	banner.simulator = base
	cfg.SmartcarConnectURL = base + "/oauth/authorize"
	if cfg.SmartcarAPIVersion != config.APIV2 {
		cfg.SmartcarAPIVersion = config.APIV3
	}
	cfg.ChooseAPI()
	if cfg.APIVersion() == config.APIV2 {
		cfg.SmartcarClientID, cfg.SmartcarClientSecret = demoV2ClientID, config.Secret(demoSecret)
		cfg.SmartcarAPIURL, cfg.SmartcarTokenURL = base+"/v2.0", base+"/oauth/token"
		if err := smartcar.NewTokenStore(cfg.DataDir).Save(&oauth2.Token{RefreshToken: sim.IssueRefreshToken()}); err != nil {
			return err
		}
	} else {
		cfg.SmartcarClientID, cfg.SmartcarClientSecret, cfg.SmartcarApplicationID = demoAPIClientID, config.Secret(demoSecret), demoAppID
		cfg.SmartcarAPIURL, cfg.SmartcarTokenURL = base+"/v3", base+"/oauth2/token"
	}
	cfg.BrokerAllowAnonymous = true
	if !cfg.IsSet("SMARTCAR_POLL_INTERVAL") {
		// Simulated calls cost nothing: poll often, so plugging the car in or out
		// shows in Home Assistant within the minute.
		cfg.SmartcarPollInterval = 30 * time.Second
	}
	cfg.BrokerTLSCert, cfg.BrokerTLSKey = "", ""
	if cfg.HTTPEnabled() {
		// The simulated Smartcar's webhook, pointed at the daemon's receiver
		// and signed with a token of this run's (or the user's).
		if !cfg.IsSet("SMARTCAR_WEBHOOK_SECRET") {
			cfg.SmartcarWebhookSecret = config.Secret(rand.Text())
		}
		banner.webhook = "http://" + net.JoinHostPort(demoBrokerHost(cfg.HTTPListen), listenPort(cfg.HTTPListen)) + "/webhooks/smartcar"
		sim.SetWebhook(banner.webhook, cfg.SmartcarWebhookSecret.Reveal())
	}

	g.Go(func() error {
		defer srv.Close()
		return daemon(gctx, cfg, log, daemonOptions{ready: func() { printDemoHelp(stdout, cfg, banner) }})
	})
	return g.Wait()
}

// demoListeners settles where the demo listens and publishes, before anything
// starts: the embedded broker's address (none with MQTT_URL, where the demo's
// topics and client id are set apart instead) and the HTTP server's. It returns
// what the banner must say about them.
func demoListeners(cfg *config.Config) (demoBanner, error) {
	var b demoBanner
	var err error
	// Each address is held until all are settled, so two free ports picked one
	// after the other are never the same one.
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	if cfg.EmbeddedBroker() {
		if cfg.BrokerListen, b.brokerTaken, err = demoListen(&held, "BROKER_LISTEN", cfg.IsSet("BROKER_LISTEN"), cfg.BrokerListen, demoBrokerListen); err != nil {
			return b, err
		}
		if b.brokerTaken != nil {
			b.brokerTaken.who = "Mosquitto"
		}
	} else {
		if !cfg.IsSet("MQTT_BASE_TOPIC") {
			cfg.MQTTBaseTopic = demoBaseTopic
		}
		if !cfg.IsSet("MQTT_CLIENT_ID") {
			cfg.MQTTClientID = demoClientID
		}
	}
	if cfg.HTTPEnabled() { // HTTP_LISTEN=off leaves it off
		if cfg.HTTPListen, b.httpTaken, err = demoListen(&held, "HTTP_LISTEN", cfg.IsSet("HTTP_LISTEN"), cfg.HTTPListen, demoHTTPListen); err != nil {
			return b, err
		}
	}
	return b, nil
}

// demoListen settles one listener's address: the one the user set, or else def,
// or else, def being unusable, a free loopback port; taken is def's failure then.
// It listens there, adding the listener to held for the caller to let go, so the
// address returned has the real port (never 0) for the banner, and the daemon
// takes it back moments later: it cannot be handed a listener, only an address.
func demoListen(held *[]net.Listener, setting string, set bool, addr, def string) (got string, taken *takenAddr, err error) {
	if !set {
		addr = def
	}
	ln, err := net.Listen("tcp", addr)
	switch {
	case err != nil && set:
		return "", nil, newDemoListenError(setting, addr, err)
	case err != nil:
		taken = &takenAddr{addr: addr, err: err}
		addr = demoAnyPort
		if ln, err = net.Listen("tcp", addr); err != nil {
			return "", nil, fmt.Errorf("listen on a free loopback port for %s, since %s: %w", setting, taken, err)
		}
	}
	*held = append(*held, ln)
	host, _, _ := net.SplitHostPort(addr) // config checked it
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return net.JoinHostPort(host, port), taken, nil
}

// takenAddr is a default address the demo could not listen on, and why.
type takenAddr struct {
	addr string
	err  error
	who  string // who is likely to listen there, if anyone is known to
}

func (t *takenAddr) String() string {
	if errors.Is(t.err, syscall.EADDRINUSE) {
		if t.who != "" {
			return t.addr + " is in use (by " + t.who + ", probably)"
		}
		return t.addr + " is in use"
	}
	return fmt.Sprintf("%s cannot be listened on (%v)", t.addr, listenCause(t.err))
}

// demoListenError is an address the user set that the demo cannot listen on. Its
// message is the one line the user sees, naming what to change; it wraps the
// listener's own error type, so run exits 2 for it, as for the daemon's listeners.
type demoListenError struct {
	setting, addr string
	cause         error // the system's reason, e.g. EADDRINUSE
	err           error // *broker.ListenError or *status.ListenError
}

func newDemoListenError(setting, addr string, err error) error {
	e := &demoListenError{setting: setting, addr: addr, cause: listenCause(err)}
	if setting == "HTTP_LISTEN" {
		e.err = &status.ListenError{Addr: addr, Err: e.cause}
	} else {
		e.err = &broker.ListenError{Setting: setting, Addr: addr, Err: e.cause}
	}
	return e
}

func (e *demoListenError) Error() string {
	why := fmt.Sprintf("cannot be listened on (%v)", e.cause)
	fix := "an address this machine can listen on"
	if errors.Is(e.cause, syscall.EADDRINUSE) {
		who := "another program listens there"
		if e.setting == "BROKER_LISTEN" {
			who = "another MQTT broker, such as Mosquitto, probably listens there"
		}
		why, fix = "is in use ("+who+")", "a free port"
	}
	return fmt.Sprintf("smartcar2mqtt demo: %s %s %s; set %s to %s, or unset it for the demo to pick one",
		e.setting, e.addr, why, e.setting, fix)
}

func (e *demoListenError) Unwrap() error { return e.err }

// listenCause is the reason a listen failed, without the wrapper that repeats
// the address ("listen tcp 127.0.0.1:1883: …").
func listenCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// demoBanner is what the banner says beyond the configuration.
type demoBanner struct {
	simulator string // the simulator's base URL, for the plug and unplug lines
	webhook   string // where the simulator delivers webhooks; "" for nowhere (HTTP_LISTEN=off)
	// The default addresses found unusable, nil when the listener is there.
	brokerTaken, httpTaken *takenAddr
}

// printDemoHelp is the banner: where the demo is, and what to type to try it.
// Every address in it is one the demo listens or publishes on, and it says who
// can reach the anonymous embedded broker, from the address it listens on.
func printDemoHelp(w io.Writer, cfg *config.Config, b demoBanner) {
	v := smartcarsim.TeslaID
	topics := discovery.VehicleTopics(cfg.MQTTBaseTopic, v)
	var (
		conn    string // how mosquitto_sub and mosquitto_pub reach the broker
		watch   string // the topics to watch
		brokerP string // the embedded broker's port
	)
	if cfg.EmbeddedBroker() {
		var host string
		host, brokerP = demoBrokerHost(cfg.BrokerListen), listenPort(cfg.BrokerListen)
		conn = "-h " + host + " -p " + brokerP
		watch = "-t " + shellQuote(cfg.MQTTBaseTopic+"/#") + " -t " + shellQuote(cfg.HADiscoveryPrefix+"/#")
		fmt.Fprintf(w, "smartcar2mqtt demo: a simulated Tesla (Smartcar API %s) behind the embedded MQTT broker on %s.\n",
			cfg.APIVersion(), cfg.BrokerListen)
		if b.brokerTaken != nil {
			fmt.Fprintf(w, "%s, so the demo's broker took port %s; set BROKER_LISTEN to choose.\n", b.brokerTaken, brokerP)
		}
	} else {
		var note string
		conn, note = externalBrokerArgs(cfg)
		// Only the demo's own device config: the user's broker holds those of
		// every device of their Home Assistant.
		watch = "-t " + shellQuote(cfg.MQTTBaseTopic+"/#") + " -t " + shellQuote(discovery.ConfigTopic(cfg.HADiscoveryPrefix, v))
		fmt.Fprintf(w, "smartcar2mqtt demo: a simulated Tesla (Smartcar API %s) on your MQTT broker %s (MQTT_URL),\n"+
			"as client %s, under %s/, apart from a real smartcar2mqtt's topics.\n",
			cfg.APIVersion(), cfg.MQTTURL, cfg.MQTTClientID, cfg.MQTTBaseTopic)
		if note != "" {
			fmt.Fprintln(w, note)
		}
		if cfg.MQTTPassword != "" {
			fmt.Fprintln(w, "The password is not shown: add -P <password> to each mosquitto_sub and mosquitto_pub line.")
		}
	}
	if b.httpTaken != nil {
		fmt.Fprintf(w, "%s, so /healthz and /metrics took port %s; set HTTP_LISTEN to choose (or off).\n", b.httpTaken, listenPort(cfg.HTTPListen))
	}

	// With the HTTP server on, the simulated Smartcar delivers a plug-in by
	// its webhook at once; without it, only a read shows it.
	pollNote, plugNote := "", "The daemon learns it at its next read, or at once with the read above (HTTP_LISTEN is off, so\nno webhook from the simulated Smartcar reaches it).\n"
	if b.webhook != "" {
		pollNote = ", and only once a day while webhook deliveries arrive"
		plugNote = "The simulated Smartcar delivers the change at once by its webhook, signed, to\n" + b.webhook + ": plugged_in and the door change with no Smartcar call.\n"
	}
	fmt.Fprintf(w, `
Watch everything it publishes:
  mosquitto_sub %[1]s -v %[2]s

Open and close the charge port (the simulated car takes 2 s):
  mosquitto_pub %[1]s -t %[3]s -m OPEN
  mosquitto_pub %[1]s -t %[3]s -m CLOSE

Read the car now (one simulated Smartcar call; it also polls every %[5]s%[8]s):
  mosquitto_pub %[1]s -t %[4]s -m PRESS

Plug the simulated car in or out, as you would at the car:
  curl -X POST %[6]s/simulator/vehicles/%[7]s/plug
  curl -X POST %[6]s/simulator/vehicles/%[7]s/unplug
%[9]s
`, conn, watch, shellQuote(topics.Command), shellQuote(topics.Refresh), cfg.SmartcarPollInterval, b.simulator, v, pollNote, plugNote)

	switch host, loopback := demoBrokerReach(cfg.BrokerListen); {
	case !cfg.EmbeddedBroker():
		u, _ := url.Parse(cfg.MQTTURL) // config checked it
		fmt.Fprintf(w, `Home Assistant: nothing to add. Through its MQTT integration, already connected to
%[1]s, the device "Tesla Model 3 2021" appears with the "Charge port" cover and its
sensors.
Stopped, the demo leaves its retained messages on your broker, and Home Assistant shows
the cars as unavailable. To remove both once the demo is stopped (this ends after 2 s):
  mosquitto_sub %[2]s -v --remove-retained --retained-only -W 2 -t %[3]s -t %[4]s -t %[5]s
`, u.Host, conn, shellQuote(cfg.MQTTBaseTopic+"/#"),
			shellQuote(discovery.ConfigTopic(cfg.HADiscoveryPrefix, smartcarsim.TeslaID)),
			shellQuote(discovery.ConfigTopic(cfg.HADiscoveryPrefix, smartcarsim.OtherID)))
	case loopback:
		fmt.Fprintf(w, `Home Assistant on this machine: Settings → Devices & services → Add integration → MQTT,
broker %[1]s, port %[2]s, no username. The device "Tesla Model 3 2021" appears with
the "Charge port" cover and its sensors.
The broker listens on loopback only. For a Home Assistant on another machine, or one
whose MQTT integration already uses a broker (such as Mosquitto), run the demo with
MQTT_URL=tcp://<that broker>:1883 (and MQTT_USERNAME, MQTT_PASSWORD if it asks).
`, host, brokerP)
	default:
		if host == "" {
			host = "<this machine's address>"
		}
		fmt.Fprintf(w, `Home Assistant: Settings → Devices & services → Add integration → MQTT, broker
%[1]s, port %[2]s, no username. The device "Tesla Model 3 2021" appears with the
"Charge port" cover and its sensors.
WARNING: the broker listens on %[3]s (BROKER_LISTEN=%[4]s):
it is reachable from the network, and anonymous: anyone who reaches this machine can
connect without a username and open the simulated charge port.
BROKER_LISTEN=127.0.0.1:%[2]s keeps it on this machine.
`, host, brokerP, demoListenWhere(cfg.BrokerListen), cfg.BrokerListen)
	}

	fmt.Fprintln(w)
	if cfg.HTTPEnabled() {
		h := "http://" + net.JoinHostPort(demoBrokerHost(cfg.HTTPListen), listenPort(cfg.HTTPListen))
		fmt.Fprintf(w, "The web page, with the cars and Connect a car (the simulator approves at once): %s/\n", h)
		fmt.Fprintf(w, "Health and metrics: %[1]s/healthz and %[1]s/metrics\n", h)
	}
	fmt.Fprintf(w, "State is kept in %s. Stop with Ctrl-C.\n", cfg.DataDir)
}

// demoBrokerReach says who can reach a listener on listen: loopback only, or the
// network. host is the address Home Assistant gives for it: the listen address's
// own host, or "" for every interface (any address of this machine then).
func demoBrokerReach(listen string) (host string, loopback bool) {
	h, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", false
	}
	ip := net.ParseIP(h)
	switch {
	case h == "" || ip != nil && ip.IsUnspecified():
		return "", false
	case h == "localhost" || ip != nil && ip.IsLoopback():
		return h, true
	}
	// Another address of this machine, or a name for one: the network reaches it.
	return h, false
}

// demoBrokerHost is the host a client on this machine reaches a listener on
// listen by: loopback for every interface.
func demoBrokerHost(listen string) string {
	if host, _ := demoBrokerReach(listen); host != "" {
		return host
	}
	return "127.0.0.1"
}

// demoListenWhere names the interfaces a listener on listen is on.
func demoListenWhere(listen string) string {
	if host, _ := demoBrokerReach(listen); host != "" {
		return host
	}
	return "every interface"
}

// externalBrokerArgs are mosquitto_sub's and mosquitto_pub's arguments to reach
// the broker of MQTT_URL as the demo does (never the password), and a note when
// those clients cannot follow the URL exactly.
func externalBrokerArgs(cfg *config.Config) (args, note string) {
	u, _ := url.Parse(cfg.MQTTURL) // config checked it
	port, tls := u.Port(), false
	switch u.Scheme {
	case "ssl", "mqtts":
		tls = true
		if port == "" {
			port = "8883"
		}
	case "ws", "wss":
		// mosquitto_sub and mosquitto_pub speak MQTT over TCP only: the URL's
		// port is the WebSocket one, so they are left on their default.
		tls, port = u.Scheme == "wss", ""
		note = "mosquitto_sub and mosquitto_pub do not speak WebSocket: add -p <port> of your broker's MQTT listener."
	default:
		if port == "" {
			port = "1883"
		}
	}
	args = "-h " + u.Hostname()
	if port != "" {
		args += " -p " + port
	}
	if tls {
		if cfg.MQTTCAFile != "" {
			args += " --cafile " + shellWord(cfg.MQTTCAFile)
		} else {
			args += " --capath /etc/ssl/certs"
		}
	}
	if cfg.MQTTUsername != "" {
		args += " -u " + shellWord(cfg.MQTTUsername)
	}
	return args, note
}

// shellQuote is s in single quotes, as one shell word: topics always are, so
// that + and # stay MQTT's.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellWord is s as one shell word: as it is when no character of it means
// anything to a shell, else quoted.
func shellWord(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@,+=", r))
	}) {
		return s
	}
	return shellQuote(s)
}

// listenPort is the port of a listen address the demo has settled.
func listenPort(listen string) string {
	if _, port, err := net.SplitHostPort(listen); err == nil {
		return port
	}
	return "1883"
}
