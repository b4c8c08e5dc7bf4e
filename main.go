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
	// The image is FROM scratch, without /usr/share/zoneinfo: embed it so TZ
	// (set by the Supervisor or docker) gives local times in the log and page.
	_ "time/tzdata"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/broker"
	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/lockfile"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
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
	case "run", "demo", "auth", "addon", "healthcheck":
	default:
		fmt.Fprintf(stderr, "smartcar2mqtt: unknown command %q\n\n", command)
		config.Usage(stderr)
		return exitBadConfig
	}

	var cfg *config.Config
	var err error
	if command == "addon" || command == "healthcheck" && config.InAddon(os.LookupEnv) {
		cfg, err = config.LoadAddon(command, os.LookupEnv)
	} else {
		cfg, err = config.Load(command)
	}
	if err != nil {
		badConfig(stderr, command, err)
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
	case "addon":
		err = addon(ctx, cfg, log)
	case "healthcheck":
		if err := healthcheck(ctx, cfg); err != nil {
			fmt.Fprintf(stderr, "smartcar2mqtt: %v\n", err)
			return exitFailure
		}
		return exitOK
	default:
		err = daemon(ctx, cfg, log, daemonOptions{})
	}
	if err != nil {
		if cfgErr := (*config.Error)(nil); errors.As(err, &cfgErr) {
			// Found once the command ran (the add-on's embedded broker needs
			// an account only when the Supervisor has none): said as at start.
			badConfig(stderr, command, err)
			return exitBadConfig
		}
		// The error is the message: each part of it names its own operation.
		code := exitCode(err)
		log.WithField("exit_code", code).Error(err)
		return code
	}
	log.Info("stopped")
	return exitOK
}

// badConfig says what is wrong with the configuration, one problem a line
// (a log line would show the line breaks as \n), and where the settings are
// described.
func badConfig(stderr io.Writer, command string, err error) {
	hint := "smartcar2mqtt --help lists every variable"
	if command == "addon" {
		hint = "the add-on's Documentation tab lists every option"
	}
	fmt.Fprintf(stderr, "smartcar2mqtt: %v\n(%s)\n", err, hint)
}

// exitCode is 2 for what only the user's configuration can fix (a variable,
// a port in use, a DATA_DIR another daemon holds, a vehicle id the account
// lacks), 1 for anything else.
func exitCode(err error) int {
	var (
		cfgErr     *config.Error
		unknown    *smartcar.UnknownVehiclesError
		held       *lockfile.HeldError
		brokerPort *broker.ListenError
		httpPort   *status.ListenError
	)
	switch {
	case errors.As(err, &cfgErr), errors.As(err, &unknown), errors.As(err, &held),
		errors.As(err, &brokerPort), errors.As(err, &httpPort):
		return exitBadConfig
	}
	return exitFailure
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
