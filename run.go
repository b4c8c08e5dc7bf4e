package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/broker"
	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/lockfile"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
	"github.com/smartcar2mqtt/smartcar2mqtt/status"
)

// daemon wires config → DATA_DIR lock → vehicles from the cache → listeners
// and broker → bridge, and runs until ctx ends. Nothing here waits for
// Smartcar or the network: the vehicle list refreshes in the background, so a
// power cut that brings the server up before the router still starts Home
// Assistant's broker and the bridge at once. The embedded broker starts first
// and stops last.
func daemon(ctx context.Context, cfg *config.Config, log *logrus.Entry, opts daemonOptions) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	lock, err := lockfile.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	usage := smartcar.NewUsage(filepath.Join(cfg.DataDir, smartcar.UsageFile), nil)
	if err := usage.Load(); err != nil {
		log.WithError(err).Warn("call counts start again from zero")
	}
	defer usage.Flush()
	metrics := status.NewMetrics()
	api, err := newSmartcar(ctx, cfg, log, smartcar.CallObservers{usage, metrics, tokenLog{log}})
	if err != nil {
		return err
	}

	fleet := fleetCache(cfg)
	known, err := fleet.Known(api.client.Version(), cfg.SmartcarVehicleIDs)
	var unknown *smartcar.UnknownVehiclesError
	switch {
	case errors.As(err, &unknown):
		return err
	case err != nil:
		log.WithError(err).Warn("the vehicle cache cannot be read: listing the vehicles again")
	case known.ListedAt.IsZero():
		log.Info("no vehicles known yet: listing them from Smartcar in the background")
	default:
		log.WithFields(logrus.Fields{"vehicles": len(known.Vehicles), "listed_at": known.ListedAt.Local().Format(time.RFC3339)}).Info("serving the vehicles known from the last listing; the list refreshes in the background")
	}

	var httpListener net.Listener
	if cfg.HTTPEnabled() {
		if httpListener, err = status.Listen(cfg.HTTPListen); err != nil {
			return err
		}
		defer httpListener.Close()
	}
	mqttOpts := bridge.MQTTOptions{URL: cfg.MQTTURL, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword.Reveal(), CAFile: cfg.MQTTCAFile, ClientID: cfg.MQTTClientID}
	if cfg.EmbeddedBroker() {
		embedded, err := broker.Start(broker.Options{
			Listen: cfg.BrokerListen, Username: cfg.BrokerUsername, Password: cfg.BrokerPassword.Reveal(),
			AllowAnonymous: cfg.BrokerAllowAnonymous, TLSListen: cfg.BrokerTLSListen, TLSCert: cfg.BrokerTLSCert, TLSKey: cfg.BrokerTLSKey,
			DataDir: cfg.DataDir, BaseTopic: cfg.MQTTBaseTopic, Log: log,
		})
		if err != nil {
			return err
		}
		defer embedded.Close()
		creds := embedded.BridgeCredentials()
		mqttOpts.URL, mqttOpts.Username, mqttOpts.Password = creds.URL, creds.Username, creds.Password
	}

	var b *bridge.Bridge
	// The page's Connect flow, once there is one, hears of each listing: the
	// first after an API v2.0 login names that login's cars.
	var connectFlow atomic.Pointer[smartcar.WebConnect]
	keeper := smartcar.NewFleetKeeper(fleet, api.client, cfg.SmartcarVehicleIDs, smartcar.KeeperOptions{
		Changed: func(u smartcar.Update) {
			b.Apply(u) // first: once the flow names the cars, the page finds them under Vehicles
			if wc := connectFlow.Load(); wc != nil {
				wc.Listed(u.Vehicles)
			}
		},
		Trouble: func(err error, retryIn time.Duration) {
			f := smartcar.Describe(err, 0)
			serving := "serving the vehicles known from the last listing"
			if known.ListedAt.IsZero() {
				serving = "no vehicles known yet"
			}
			log.WithFields(logrus.Fields{"error": f.Type + ":" + f.Code, "request_id": f.RequestID}).
				Warnf("cannot list the vehicles from Smartcar: %s; %s, trying again in the background (next in %s)", f.Description, serving, retryIn)
			log.WithError(err).Debug("listing the vehicles failed: the error as the Smartcar client returned it")
		},
		Recovered: func() { log.Info("listed the vehicles from Smartcar again") },
	})
	b, err = bridge.New(api.client, known.Vehicles, bridge.Options{
		MQTT:            mqttOpts,
		BaseTopic:       cfg.MQTTBaseTopic,
		DiscoveryPrefix: cfg.HADiscoveryPrefix,
		HAStatusTopic:   cfg.HAStatusTopic,
		Origin:          discovery.Origin{Name: "smartcar2mqtt", SWVersion: version, SupportURL: supportURL},
		PollInterval:    cfg.SmartcarPollInterval,
		DataDir:         cfg.DataDir,
		OnStale: func(vehicleID string, err error) {
			log.WithField("vehicle", vehicleID).WithError(err).Warn("Smartcar no longer knows this vehicle as before: listing the vehicles again")
			keeper.Stale()
		},
		OnNoDoorCommand: func(vehicleID, why string) {
			if err := fleet.MarkNoDoorCommand(vehicleID, why); err != nil {
				log.WithError(err).Warn("cannot record in the vehicle cache that this vehicle has no charge port command; the next start offers the cover again")
			}
		},
		OnUnknownVehicle: keeper.Suspect,
		Log:              log,
	})
	if err != nil {
		return err
	}
	b.RemoveVehicles(known.Deselected)
	// Start-up is done: collect once and return what it freed. An idle daemon
	// allocates too little to start a collection, and Go's periodic one (every
	// 2 min) only runs after a first, so start-up's garbage would stay resident
	// and the collector's own bookkeeping (about 1 MB, which the runtime keeps
	// for good) would be paid at the first burst of messages instead of here.
	debug.FreeOSMemory()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.Run(gctx) })
	g.Go(func() error {
		select {
		case <-b.Started():
			// The line a user (and a test) waits for: /healthz says ok from here on.
			log.Info("ready: taking charge port commands from Home Assistant")
			if opts.ready != nil {
				opts.ready()
			}
		case <-gctx.Done():
		}
		return nil
	})
	// The vehicle list, and cars `auth` connects while the daemon runs: once
	// Home Assistant has what is known, so a cold start waits for nothing.
	g.Go(func() error {
		select {
		case <-b.Started():
		case <-gctx.Done():
			return nil
		}
		return keeper.Run(gctx, known)
	})
	if httpListener != nil {
		metrics.WatchBridge(b.Status)
		checks := []status.Check{
			{Name: "mqtt", Run: b.CheckMQTT},
			{Name: "token", Run: api.healthy},
			{Name: "bridge", Run: b.CheckServing},
		}
		page := &status.Page{
			Bridge: b.Status, Usage: func() smartcar.UsageSnapshot { return usage.Snapshot(time.Now()) },
			Login: api.healthy, APIVersion: cfg.APIVersion(), PollInterval: cfg.SmartcarPollInterval, Version: version,
		}
		page.Connect, page.ConnectMissing = webConnect(gctx, cfg, api, fleet, keeper)
		if wc, ok := page.Connect.(*smartcar.WebConnect); ok {
			connectFlow.Store(wc)
		}
		routes := status.Routes{Checks: checks, Metrics: metrics, Page: page}
		if cfg.SmartcarWebhookSecret != "" {
			routes.Webhook = status.NewWebhook(status.WebhookOptions{Secret: cfg.SmartcarWebhookSecret.Reveal(), To: b, Metrics: metrics, Log: log})
			log.WithField("listen", cfg.HTTPListen).Info("Smartcar webhook receiver on POST /webhooks/smartcar: Smartcar's callback URL is this path, exposed over HTTPS")
		}
		if opts.ingress != nil {
			ingress := status.OnlyFrom(status.Handler(routes), opts.ingressProxy)
			g.Go(func() error { return status.Serve(gctx, opts.ingress, ingress) })
		}
		routes.Hosts = &status.HostGuard{Allowed: cfg.HTTPAllowedHosts}
		handler := status.Handler(routes)
		g.Go(func() error { return status.Serve(gctx, httpListener, handler) })
	}
	if api.keepAlive != nil {
		g.Go(func() error {
			api.keepAlive(gctx)
			return nil
		})
	}
	g.Go(func() error {
		usage.Report(gctx, 24*time.Hour, func(summary string) { log.Info(summary) })
		return nil
	})
	return g.Wait()
}

// daemonOptions are what a command adds to the daemon: the add-on's Ingress
// listener, which serves the web page to the Supervisor's proxy only, and
// the demo's word once everything serves.
type daemonOptions struct {
	ingress      net.Listener // nil: none
	ingressProxy string       // the one address allowed on ingress
	// ready, if set, is called once the bridge serves: the demo's banner,
	// whose commands then work as soon as they are printed.
	ready func()
}

// webConnect is the web page's Connect a car for the API generation in use,
// or why it cannot be offered.
func webConnect(ctx context.Context, cfg *config.Config, api smartcarAPI, fleet smartcar.FleetCache, keeper *smartcar.FleetKeeper) (status.Connector, string) {
	if cfg.APIVersion() == config.APIV3 {
		if cfg.SmartcarApplicationID == "" {
			return nil, "Connect needs the Application ID: set SMARTCAR_APPLICATION_ID (smartcar_application_id in the add-on), from Smartcar's dashboard → Configuration"
		}
		c := smartcar.ConnectV3{ApplicationID: cfg.SmartcarApplicationID, ConnectURL: cfg.SmartcarConnectURL,
			RedirectURI: cfg.SmartcarRedirectURI, Mode: cfg.SmartcarMode, Client: api.client}
		// What the daemon knows is what was connected before: no call,
		// unless nothing was ever listed.
		before := func(ctx context.Context) ([]smartcar.VehicleDetails, error) {
			if known, err := fleet.Known(smartcar.V3, nil); err == nil && !known.ListedAt.IsZero() {
				return known.Vehicles, nil
			}
			return api.client.Vehicles(ctx, nil)
		}
		return smartcar.NewWebConnectV3(ctx, c, before, func(_ context.Context, c smartcar.Connected) error {
			// The listing that showed the car is the vehicle cache, as
			// after `auth`; the keeper hands the new car to the bridge.
			if err := fleet.Save(smartcar.V3, c.Vehicles); err != nil {
				return err
			}
			keeper.LookNow()
			return nil
		}), ""
	}
	c := smartcar.Connect{Config: oauthConfig(cfg), Mode: cfg.SmartcarMode, Store: smartcar.NewTokenStore(cfg.DataDir), UserAgent: userAgent()}
	return smartcar.NewWebConnectV2(ctx, c, func(context.Context, smartcar.Connected) error {
		if err := api.adopt(); err != nil {
			return err
		}
		// A new login may see other cars or permissions: list them all.
		keeper.ListNow()
		return nil
	}), ""
}

// fleetMaxAge is how old a vehicle listing `auth` accepts before it lists
// again; the daemon serves any age and refreshes daily in the background.
const fleetMaxAge = 24 * time.Hour

// smartcarAPI is the Smartcar client of the configured generation, with its
// login's health check and, for v2.0, the refresh token's keep-alive.
type smartcarAPI struct {
	client    *smartcar.Client
	healthy   func() error
	keepAlive func(ctx context.Context) // nil: nothing to keep alive
	adopt     func() error              // v2.0: take the login Connect just saved
}

// newSmartcar builds the login and client for the API generation the
// configuration chose, and says which one in the log, and why.
func newSmartcar(ctx context.Context, cfg *config.Config, log *logrus.Entry, calls smartcar.CallObserver) (smartcarAPI, error) {
	clientOpts := []smartcar.Option{
		smartcar.WithUserAgent(userAgent()),
		smartcar.WithTimeout(cfg.SmartcarTimeout),
		smartcar.WithObserver(calls),
		smartcar.WithTrace(func(t smartcar.Trace) { traceCall(log, t) }),
	}
	log.WithFields(logrus.Fields{"api": cfg.APIVersion(), "url": cfg.SmartcarAPIURL}).Infof("using Smartcar API %s: %s", cfg.APIVersion(), cfg.APIVersionReason())
	if cfg.APIVersion() == config.APIV3 {
		if old := smartcar.NewTokenStore(cfg.DataDir).Path(); fileExists(old) {
			log.WithField("file", old).Info("the API v2.0 token file is no longer used with API v3; it is left as it is (delete it once you no longer want to go back to v2)")
		}
		if cfg.SmartcarRefreshToken != "" {
			log.Info("SMARTCAR_REFRESH_TOKEN is ignored: API v3 logs in with SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET")
		}
		tokens := appTokens(ctx, cfg, calls)
		client := smartcar.NewV3Client(cfg.SmartcarAPIURL, tokens, append(clientOpts, smartcar.WithUserFilter(cfg.SmartcarUserID))...)
		return smartcarAPI{client: client, healthy: tokens.Healthy}, nil
	}
	if cfg.SmartcarUserID != "" {
		log.Info("SMARTCAR_USER_ID is ignored: API v2.0 serves the cars of the one login in the token store")
	}
	tokens, err := smartcar.NewTokens(ctx, oauthConfig(cfg), smartcar.NewTokenStore(cfg.DataDir), cfg.SmartcarRefreshToken.Reveal(),
		smartcar.WithTokenUserAgent(userAgent()),
		smartcar.WithTokenObserver(calls),
		smartcar.WithKeepAliveErrors(func(err error) { log.WithError(err).Warn("renewing the Smartcar refresh token failed; will try again") }))
	if err != nil {
		return smartcarAPI{}, err
	}
	if err := tokens.Healthy(); errors.Is(err, smartcar.ErrNoToken) {
		log.Warn("no Smartcar login yet: press Connect a car on the web page (Open Web UI in the add-on); outside the add-on, `smartcar2mqtt auth` or SMARTCAR_REFRESH_TOKEN also work. The daemon waits and picks the login up by itself")
	}
	return smartcarAPI{
		client: smartcar.NewV2Client(cfg.SmartcarAPIURL, tokens, clientOpts...),
		healthy: func() error {
			if err := tokens.Healthy(); errors.Is(err, smartcar.ErrNoToken) {
				return status.Waiting("no Smartcar login yet: press Connect a car on the web page (outside the add-on, smartcar2mqtt auth also works)")
			} else if err != nil {
				return err
			}
			return nil
		},
		// Refresh tokens die after 60 days unused: renew at 30 even when idle.
		keepAlive: func(ctx context.Context) { tokens.KeepAlive(ctx, smartcar.DefaultRefreshMaxAge) },
		adopt:     tokens.Adopt,
	}, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func appTokens(ctx context.Context, cfg *config.Config, calls smartcar.CallObserver) *smartcar.AppTokens {
	return smartcar.NewAppTokens(ctx, smartcar.AppTokensConfig{
		ClientID: cfg.SmartcarClientID, ClientSecret: cfg.SmartcarClientSecret.Reveal(), TokenURL: cfg.SmartcarTokenURL,
		UserAgent: userAgent(), Observer: calls,
	})
}

func fleetCache(cfg *config.Config) smartcar.FleetCache {
	f := smartcar.FleetCache{Path: filepath.Join(cfg.DataDir, smartcar.FleetFile), MaxAge: fleetMaxAge}
	if cfg.APIVersion() == config.APIV3 {
		f.User = cfg.SmartcarUserID
	}
	return f
}

// traceCall is the debug line of one Smartcar request: never a token or body.
func traceCall(log *logrus.Entry, t smartcar.Trace) {
	e := log.WithFields(logrus.Fields{"method": t.Method, "path": t.Path, "status": t.Status,
		"duration": t.Duration.Round(time.Millisecond), "request_id": t.RequestID})
	if t.Err != nil {
		e = e.WithError(t.Err)
	}
	e.Debug("Smartcar request")
}

// tokenLog writes a debug line for every token endpoint request.
type tokenLog struct{ log *logrus.Entry }

func (t tokenLog) ObserveCall(c smartcar.Call) {
	if c.Endpoint == smartcar.EndpointToken {
		t.log.WithFields(logrus.Fields{"outcome": c.Outcome, "status": c.Status, "duration": c.Duration.Round(time.Millisecond)}).Debug("Smartcar token renewal")
	}
}
