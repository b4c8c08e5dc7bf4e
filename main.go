// Command smartcar2mqtt bridges a car's charge port door, through the Smartcar API,
// to Home Assistant over MQTT. This file only wires the parts together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/status"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

const supportURL = "https://github.com/smartcar2mqtt/smartcar2mqtt"

// Exit codes: 0 clean stop, 1 anything else, 2 bad configuration.
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

// healthcheck is `smartcar2mqtt healthcheck`: the container's HEALTHCHECK, with no
// shell or curl in the image.
func healthcheck(ctx context.Context, cfg *config.Config) error {
	if !cfg.HTTPEnabled() {
		return errors.New("HTTP_LISTEN is off: there is no /healthz to ask")
	}
	return status.Probe(ctx, cfg.HTTPListen)
}

func userAgent() string { return "smartcar2mqtt/" + version }

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
