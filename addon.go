package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/supervisor"
	"github.com/smartcar2mqtt/smartcar2mqtt/status"
)

// ingressProxy is the Supervisor's Ingress proxy, the one client the
// add-on's Ingress port answers.
const ingressProxy = "172.30.32.2"

// supervisorWait is how the add-on keeps asking a Supervisor that does not
// answer (it may be restarting for an update): pauses from first, doubling
// up to max, until total has passed.
type supervisorWait struct {
	first, max, total time.Duration
}

// addon is `smartcar2mqtt addon`: the daemon as a Home Assistant add-on. The
// broker is mqtt_url if set, else the one the Supervisor offers, else the
// embedded one; the web page is also served on the Ingress port.
func addon(ctx context.Context, cfg *config.Config, log *logrus.Entry) error {
	return addonWith(ctx, cfg, log, supervisorWait{first: time.Second, max: 10 * time.Second, total: time.Minute})
}

// addonWith is addon asking the Supervisor as wait says (tests wait less).
func addonWith(ctx context.Context, cfg *config.Config, log *logrus.Entry, wait supervisorWait) error {
	if cfg.MQTTURL == "" {
		if err := supervisorBroker(ctx, cfg, log, wait); err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return nil // stopped while waiting for the Supervisor
			}
			return err
		}
	}
	var opts daemonOptions
	if cfg.HTTPEnabled() {
		ln, err := status.Listen(net.JoinHostPort("", config.IngressPort))
		if err != nil {
			return err
		}
		defer ln.Close()
		opts = daemonOptions{ingress: ln, ingressProxy: ingressProxy}
	}
	return daemon(ctx, cfg, log, opts)
}

// supervisorBroker points cfg at the Supervisor's MQTT broker, or settles on
// the embedded one when the Supervisor says it has none. Any other failure
// is asked again for a while, then is the error: an embedded broker started
// because the Supervisor did not answer would be one Home Assistant never
// uses.
func supervisorBroker(ctx context.Context, cfg *config.Config, log *logrus.Entry, wait supervisorWait) error {
	sv := cfg.Supervisor()
	client := supervisor.Client{URL: sv.URL, Token: sv.Token.Reveal()}
	start, pause := time.Now(), wait.first
	for tries := 1; ; tries++ {
		mqtt, err := client.MQTTService(ctx)
		switch {
		case err == nil:
			log.WithFields(logrus.Fields{"host": mqtt.Host, "port": mqtt.Port}).Info("using the MQTT broker the Supervisor offers (the Mosquitto broker add-on)")
			return cfg.UseBroker(mqtt.URL(), mqtt.Username, config.Secret(mqtt.Password))
		case errors.Is(err, supervisor.ErrNoService):
			log.Info("the Supervisor offers no MQTT broker: running the embedded one (Home Assistant's MQTT integration connects to this add-on with broker_username and broker_password)")
			return cfg.CheckEmbeddedBroker()
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Since(start)+pause > wait.total:
			return fmt.Errorf("%w (%d tries over %s: the Supervisor could not be asked, and the embedded broker is not started instead, as Home Assistant would not see it)",
				err, tries, time.Since(start).Round(time.Second))
		case tries == 1:
			log.WithError(err).Warnf("the Supervisor did not say which MQTT broker to use: asking again for up to %s", wait.total)
		default:
			log.WithError(err).Debug("the Supervisor did not say which MQTT broker to use")
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, wait.max)
	}
}
