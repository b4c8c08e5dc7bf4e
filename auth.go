package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"

	"golang.org/x/oauth2"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// authorize is `smartcar2mqtt auth`: Smartcar Connect in the user's browser, then the
// vehicles the daemon can now see, kept in the vehicle cache for its next look.
func authorize(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	redirect, err := url.Parse(cfg.SmartcarRedirectURI)
	if err != nil {
		return fmt.Errorf("SMARTCAR_REDIRECT_URI: %w", err)
	}
	// Every interface, not just the redirect URI's host: inside a container
	// "localhost" is the container's own, which a browser on the host reaches
	// only through a published port. The state check guards the callback.
	listen := ""
	if redirect.Port() != "" {
		listen = ":" + redirect.Port()
	}
	fmt.Fprintf(stdout, "Smartcar API %s (%s).\n\n", cfg.APIVersion(), cfg.APIVersionReason())
	var vehicles []smartcar.VehicleDetails
	if cfg.APIVersion() == config.APIV3 {
		vehicles, err = authorizeV3(ctx, cfg, stdout, listen)
	} else {
		vehicles, err = authorizeV2(ctx, cfg, stdout, listen)
	}
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, "\nVehicles now visible:\n\n")
	if err := smartcar.PrintVehicles(stdout, vehicles); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nA running smartcar2mqtt picks up new cars by itself within seconds; otherwise start it now.")
	return nil
}

// authorizeV3 waits for the new connection (the redirect, or /connections) and
// keeps the listing that showed it as the vehicle cache: no extra call. Like the v2.0
// flow, it shows every car of the account, SMARTCAR_VEHICLE_IDS or not.
func authorizeV3(ctx context.Context, cfg *config.Config, stdout io.Writer, listen string) ([]smartcar.VehicleDetails, error) {
	client := smartcar.NewV3Client(cfg.SmartcarAPIURL, appTokens(ctx, cfg, nil),
		smartcar.WithUserAgent(userAgent()), smartcar.WithTimeout(cfg.SmartcarTimeout), smartcar.WithUserFilter(cfg.SmartcarUserID))
	connected, err := smartcar.ConnectV3{
		ApplicationID: cfg.SmartcarApplicationID, ConnectURL: cfg.SmartcarConnectURL, RedirectURI: cfg.SmartcarRedirectURI,
		Mode: cfg.SmartcarMode, Client: client, Out: stdout, Listen: listen,
	}.Run(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "\nConnected %d new vehicle(s).\n", len(connected.New))
	if err := fleetCache(cfg).Save(smartcar.V3, connected.Vehicles); err != nil {
		return nil, err
	}
	return connected.Vehicles, nil
}

// authorizeV2 runs Connect's code flow, saves the token pair, and lists the
// vehicles afresh into the cache: a new login may see other vehicles or
// permissions than the cached ones.
func authorizeV2(ctx context.Context, cfg *config.Config, stdout io.Writer, listen string) ([]smartcar.VehicleDetails, error) {
	conf := oauthConfig(cfg)
	store := smartcar.NewTokenStore(cfg.DataDir)
	connect := smartcar.Connect{Config: conf, Mode: cfg.SmartcarMode, Store: store, Out: stdout, UserAgent: userAgent(), Listen: listen}
	if _, err := connect.Run(ctx); err != nil {
		return nil, err
	}
	fleet := fleetCache(cfg)
	if err := fleet.Forget(); err != nil {
		return nil, err
	}
	tokens, err := smartcar.NewTokens(ctx, conf, store, "", smartcar.WithTokenUserAgent(userAgent()))
	if err != nil {
		return nil, err
	}
	client := smartcar.NewV2Client(cfg.SmartcarAPIURL, tokens, smartcar.WithUserAgent(userAgent()), smartcar.WithTimeout(cfg.SmartcarTimeout))
	vehicles, err := fleet.Vehicles(ctx, client, nil)
	if err != nil {
		return nil, fmt.Errorf("logged in, but listing the vehicles failed: %w", err)
	}
	return vehicles, nil
}

func oauthConfig(cfg *config.Config) *oauth2.Config {
	return smartcar.OAuthConfig(cfg.SmartcarClientID, cfg.SmartcarClientSecret.Reveal(), cfg.SmartcarTokenURL, cfg.SmartcarConnectURL, cfg.SmartcarRedirectURI, nil)
}
