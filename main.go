// Command smartcar2mqtt bridges a car's charge port door, through the Smartcar API,
// to Home Assistant over MQTT. This file only wires the parts together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/oauth2"
	"golang.org/x/sync/errgroup"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
	"github.com/smartcar2mqtt/smartcar2mqtt/status"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

const supportURL = "https://github.com/smartcar2mqtt/smartcar2mqtt"

// Exit codes (SPEC §2).
const (
	exitOK        = 0
	exitFailure   = 1
	exitBadConfig = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	command := "run"
	if len(args) > 0 {
		command = args[0]
	}
	switch command {
	case "-h", "--help", "help":
		config.Usage(stdout)
		return exitOK
	case "version":
		fmt.Fprintf(stdout, "smartcar2mqtt %s (commit %s, %s)\n", version, buildCommit(), runtime.Version())
		return exitOK
	case "run", "demo", "auth", "healthcheck":
	default:
		fmt.Fprintf(stderr, "smartcar2mqtt: unknown command %q\n\n", command)
		config.Usage(stderr)
		return exitBadConfig
	}

	cfg, err := config.Load(command)
	if err != nil {
		fmt.Fprintf(stderr, "smartcar2mqtt: %v\n(smartcar2mqtt --help lists every variable)\n", err)
		return exitBadConfig
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	switch command {
	case "demo":
		err = demo(ctx, cfg, log, stdout)
	case "auth":
		err = authorize(ctx, cfg, stdout)
	case "healthcheck":
		if err := healthcheck(ctx, cfg); err != nil {
			fmt.Fprintf(stderr, "smartcar2mqtt: %v\n", err)
			return exitFailure
		}
		return exitOK
	default:
		err = daemon(ctx, cfg, log)
	}
	if err != nil {
		log.WithError(err).Error("stopped")
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

// daemon wires config → tokens → Smartcar client → vehicles → broker → bridge, and runs
// until ctx ends. The embedded broker starts first and stops last.
func daemon(ctx context.Context, cfg *config.Config, log *logrus.Entry) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	usage := smartcar.NewUsage(filepath.Join(cfg.DataDir, smartcar.UsageFile), nil)
	if err := usage.Load(); err != nil {
		log.WithError(err).Warn("call counts start again from zero")
	}
	defer usage.Flush()
	metrics := status.NewMetrics()
	calls := smartcar.CallObservers{usage, metrics}
	tokens, err := smartcar.NewTokens(ctx, oauthConfig(cfg), smartcar.NewTokenStore(cfg.DataDir), cfg.SmartcarRefreshToken.Reveal(),
		smartcar.WithTokenUserAgent(userAgent()),
		smartcar.WithTokenObserver(calls),
		smartcar.WithKeepAliveErrors(func(err error) { log.WithError(err).Warn("renewing the Smartcar refresh token failed; will try again") }))
	if err != nil {
		return fmt.Errorf("%w (run smartcar2mqtt auth, or set SMARTCAR_REFRESH_TOKEN)", err)
	}
	client := smartcar.NewClient(cfg.SmartcarAPIURL, tokens,
		smartcar.WithUserAgent(userAgent()),
		smartcar.WithTimeout(cfg.SmartcarTimeout),
		smartcar.WithObserver(calls))

	fleet := smartcar.FleetCache{Path: filepath.Join(cfg.DataDir, smartcar.FleetFile), MaxAge: 24 * time.Hour}
	details, err := fleet.Vehicles(ctx, client, cfg.SmartcarVehicleIDs)
	if err != nil {
		return fmt.Errorf("find the vehicles on the Smartcar account: %w", err)
	}
	log.WithField("vehicles", len(details)).Info("vehicles found")

	mqttOpts := bridge.MQTTOptions{URL: cfg.MQTTURL, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword.Reveal(), CAFile: cfg.MQTTCAFile, ClientID: cfg.MQTTClientID}
	if cfg.EmbeddedBroker() {
		broker, err := bridge.StartBroker(bridge.BrokerOptions{
			Listen: cfg.BrokerListen, Username: cfg.BrokerUsername, Password: cfg.BrokerPassword.Reveal(),
			AllowAnonymous: cfg.BrokerAllowAnonymous, TLSListen: cfg.BrokerTLSListen, TLSCert: cfg.BrokerTLSCert, TLSKey: cfg.BrokerTLSKey,
			DataDir: cfg.DataDir, BaseTopic: cfg.MQTTBaseTopic, Log: log,
		})
		if err != nil {
			return err
		}
		defer broker.Close()
		creds := broker.BridgeCredentials()
		mqttOpts.URL, mqttOpts.Username, mqttOpts.Password = creds.URL, creds.Username, creds.Password
	}

	b, err := bridge.New(client, details, bridge.Options{
		MQTT:            mqttOpts,
		BaseTopic:       cfg.MQTTBaseTopic,
		DiscoveryPrefix: cfg.HADiscoveryPrefix,
		HAStatusTopic:   cfg.HAStatusTopic,
		Origin:          discovery.Origin{Name: "smartcar2mqtt", SWVersion: version, SupportURL: supportURL},
		PollInterval:    cfg.SmartcarPollInterval,
		DataDir:         cfg.DataDir,
		OnStale: func(vehicleID string, err error) {
			log.WithField("vehicle", vehicleID).WithError(err).Warn("Smartcar no longer knows this vehicle as before: the vehicle list is read again at the next start")
			if err := fleet.Forget(); err != nil {
				log.WithError(err).Warn("cannot drop the vehicle cache")
			}
		},
		Log: log,
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.Run(gctx) })
	if cfg.HTTPEnabled() {
		metrics.WatchBridge(b.Status)
		checks := []status.Check{
			{Name: "mqtt", Run: b.CheckMQTT},
			{Name: "token", Run: tokens.Healthy},
			{Name: "bridge", Run: b.CheckServing},
		}
		g.Go(func() error { return status.Serve(gctx, cfg.HTTPListen, status.Handler(checks, metrics)) })
	}
	g.Go(func() error {
		// Refresh tokens die after 60 days unused: renew at 30 even when idle.
		tokens.KeepAlive(gctx, smartcar.DefaultRefreshMaxAge)
		return nil
	})
	g.Go(func() error {
		usage.Report(gctx, 24*time.Hour, func(summary string) { log.Info(summary) })
		return nil
	})
	return g.Wait()
}

// authorize is `smartcar2mqtt auth`: Smartcar Connect in the user's browser, the
// token pair into DATA_DIR, then the vehicles the daemon can now see.
func authorize(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	conf := oauthConfig(cfg)
	redirect, err := url.Parse(conf.RedirectURL)
	if err != nil {
		return fmt.Errorf("SMARTCAR_REDIRECT_URI: %w", err)
	}
	store := smartcar.NewTokenStore(cfg.DataDir)
	connect := smartcar.Connect{
		Config: conf, Mode: cfg.SmartcarMode, Store: store, Out: stdout, UserAgent: userAgent(),
		// Every interface, not just the redirect URI's host: inside a container
		// "localhost" is the container's own, which a browser on the host reaches
		// only through a published port. The state check guards the callback.
		Listen: ":" + redirect.Port(),
	}
	if redirect.Port() == "" {
		connect.Listen = ""
	}
	if _, err := connect.Run(ctx); err != nil {
		return err
	}
	// A new login may see other vehicles or permissions than the cached ones:
	// list them afresh, into the cache, so the daemon's next start need not.
	fleet := smartcar.FleetCache{Path: filepath.Join(cfg.DataDir, smartcar.FleetFile)}
	if err := fleet.Forget(); err != nil {
		return err
	}
	tokens, err := smartcar.NewTokens(ctx, conf, store, "", smartcar.WithTokenUserAgent(userAgent()))
	if err != nil {
		return err
	}
	client := smartcar.NewClient(cfg.SmartcarAPIURL, tokens, smartcar.WithUserAgent(userAgent()), smartcar.WithTimeout(cfg.SmartcarTimeout))
	vehicles, err := fleet.Vehicles(ctx, client, nil)
	if err != nil {
		return fmt.Errorf("logged in, but listing the vehicles failed: %w", err)
	}
	fmt.Fprint(stdout, "\nVehicles now visible:\n\n")
	if err := smartcar.PrintVehicles(stdout, vehicles); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nA running smartcar2mqtt picks up the new login by itself; otherwise start it now.")
	return nil
}

// healthcheck is `smartcar2mqtt healthcheck`: the container's HEALTHCHECK, with no
// shell or curl in the image.
func healthcheck(ctx context.Context, cfg *config.Config) error {
	if !cfg.HTTPEnabled() {
		return errors.New("HTTP_LISTEN is off: there is no /healthz to ask")
	}
	return status.Probe(ctx, cfg.HTTPListen)
}

func oauthConfig(cfg *config.Config) *oauth2.Config {
	return smartcar.OAuthConfig(cfg.SmartcarClientID, cfg.SmartcarClientSecret.Reveal(), cfg.SmartcarTokenURL, cfg.SmartcarConnectURL, cfg.SmartcarRedirectURI, nil)
}

func userAgent() string { return "smartcar2mqtt/" + version }

// demo runs the whole daemon against the built-in simulated Tesla and the embedded
// broker on 127.0.0.1:1883: no account and no configuration needed.
func demo(ctx context.Context, cfg *config.Config, log *logrus.Entry, stdout io.Writer) error {
	if cfg.IsSet("DATA_DIR") {
		// A subdirectory of its own: the demo writes the simulator's login and
		// vehicles, which must never replace a real login kept in the same DATA_DIR
		// (the container image always sets DATA_DIR=/data).
		cfg.DataDir = filepath.Join(cfg.DataDir, "demo")
	} else {
		dir, err := os.MkdirTemp("", "smartcar2mqtt-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	const clientID, clientSecret = "demo-client", "demo-secret"
	sim := smartcar.NewSimulator(smartcar.SimOptions{ClientID: clientID, ClientSecret: clientSecret, Latency: 2 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})

	// The simulator starts afresh each time, so the demo's login does too: as if the
	// user had just completed Smartcar Connect.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	if err := smartcar.NewTokenStore(cfg.DataDir).Save(&oauth2.Token{RefreshToken: sim.IssueRefreshToken()}); err != nil {
		return err
	}
	if err := (smartcar.FleetCache{Path: filepath.Join(cfg.DataDir, smartcar.FleetFile)}).Forget(); err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	cfg.SmartcarClientID, cfg.SmartcarClientSecret = clientID, config.Secret(clientSecret)
	cfg.SmartcarAPIURL, cfg.SmartcarTokenURL, cfg.SmartcarConnectURL = base+"/v2.0", base+"/oauth/token", base+"/oauth/authorize"
	cfg.MQTTURL = ""
	cfg.BrokerAllowAnonymous = true
	if !cfg.IsSet("SMARTCAR_POLL_INTERVAL") {
		// Simulated calls cost nothing: poll often, so plugging the car in or out
		// shows in Home Assistant within the minute.
		cfg.SmartcarPollInterval = 30 * time.Second
	}
	if !cfg.IsSet("BROKER_LISTEN") {
		cfg.BrokerListen = "127.0.0.1:1883"
	}
	cfg.BrokerTLSCert, cfg.BrokerTLSKey = "", ""

	printDemoHelp(stdout, cfg, base)
	g.Go(func() error {
		defer srv.Close()
		return daemon(gctx, cfg, log)
	})
	return g.Wait()
}

func printDemoHelp(w io.Writer, cfg *config.Config, simulator string) {
	v := smartcar.SimTeslaID
	fmt.Fprintf(w, `smartcar2mqtt demo: a simulated Tesla behind the embedded MQTT broker on %[5]s.

Watch everything it publishes:
  mosquitto_sub -h 127.0.0.1 -p %[6]s -v -t '%[1]s/#' -t '%[2]s/#'

Open and close the charge port (the simulated car takes 2 s):
  mosquitto_pub -h 127.0.0.1 -p %[6]s -t '%[1]s/%[3]s/charge_port/set' -m OPEN
  mosquitto_pub -h 127.0.0.1 -p %[6]s -t '%[1]s/%[3]s/charge_port/set' -m CLOSE

Read the car now (one simulated Smartcar call; it also polls every %[7]s):
  mosquitto_pub -h 127.0.0.1 -p %[6]s -t '%[1]s/%[3]s/refresh' -m PRESS

Plug the simulated car in or out, as you would at the car:
  curl -X POST %[8]s/simulator/vehicles/%[3]s/plug
  curl -X POST %[8]s/simulator/vehicles/%[3]s/unplug

Home Assistant: Settings → Devices & services → Add integration → MQTT, broker
127.0.0.1, port %[6]s, no username (the demo broker listens on loopback only, so run
Home Assistant on this machine). The device "Tesla Model 3 2021" appears with the
"Charge port" cover and its sensors.

State is kept in %[4]s. Stop with Ctrl-C.
`, cfg.MQTTBaseTopic, cfg.HADiscoveryPrefix, v, cfg.DataDir, cfg.BrokerListen, brokerPort(cfg.BrokerListen), cfg.SmartcarPollInterval, simulator)
}

func brokerPort(listen string) string {
	if _, port, err := net.SplitHostPort(listen); err == nil {
		return port
	}
	return "1883"
}

func newLogger(cfg *config.Config, out io.Writer) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(out)
	if lvl, err := logrus.ParseLevel(cfg.LogLevel); err == nil {
		l.SetLevel(lvl)
	}
	if cfg.LogFormat == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	}
	return logrus.NewEntry(l)
}

func buildCommit() string {
	if commit != "" {
		return commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
