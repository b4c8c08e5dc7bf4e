package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/oauth2"
	"golang.org/x/sync/errgroup"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// The demo's simulated Smartcar application: v3 API credentials and
// Application ID, and a v2.0 OAuth client for SMARTCAR_API_VERSION=v2.
const (
	demoAPIClientID = "client_demo"
	demoAppID       = "demo-application"
	demoV2ClientID  = "demo-client"
	demoSecret      = "demo-secret"
)

// demo runs the whole daemon against the built-in simulated Smartcar (API v3 unless
// SMARTCAR_API_VERSION=v2) and the embedded broker on 127.0.0.1:1883: no account and
// no configuration needed.
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

	// The simulator starts afresh each time, and so does the demo's view of it: as if
	// the user had just connected the car.
	if err := (smartcar.FleetCache{Path: filepath.Join(cfg.DataDir, smartcar.FleetFile)}).Forget(); err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
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
	v := smartcarsim.TeslaID
	fmt.Fprintf(w, `smartcar2mqtt demo: a simulated Tesla (Smartcar API %[9]s) behind the embedded MQTT broker on %[5]s.

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
`, cfg.MQTTBaseTopic, cfg.HADiscoveryPrefix, v, cfg.DataDir, cfg.BrokerListen, brokerPort(cfg.BrokerListen), cfg.SmartcarPollInterval, simulator, cfg.APIVersion())
}

func brokerPort(listen string) string {
	if _, port, err := net.SplitHostPort(listen); err == nil {
		return port
	}
	return "1883"
}
