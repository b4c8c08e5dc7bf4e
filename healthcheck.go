package main

import (
	"context"
	"errors"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/status"
)

// healthcheck is `smartcar2mqtt healthcheck`: the container's HEALTHCHECK, with no
// shell or curl in the image.
func healthcheck(ctx context.Context, cfg *config.Config) error {
	if !cfg.HTTPEnabled() {
		return errors.New("HTTP_LISTEN is off: there is no /healthz to ask")
	}
	return status.Probe(ctx, cfg.HTTPListen)
}
