package main

import (
	"context"
	"errors"
	"net"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/supervisor"
	"github.com/smartcar2mqtt/smartcar2mqtt/status"
)

// ingressProxy is the Supervisor's Ingress proxy, the one client the
// add-on's Ingress port answers.
const ingressProxy = "172.30.32.2"

// addon is `smartcar2mqtt addon`: the daemon as a Home Assistant add-on. The
// broker is mqtt_url if set, else the one the Supervisor offers, else the
// embedded one; the web page is also served on the Ingress port.
func addon(ctx context.Context, cfg *config.Config, log *logrus.Entry) error {
	if cfg.MQTTURL == "" {
		if err := supervisorBroker(ctx, cfg, log); err != nil {
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
// the embedded one when there is none.
func supervisorBroker(ctx context.Context, cfg *config.Config, log *logrus.Entry) error {
	sv := cfg.Supervisor()
	mqtt, err := supervisor.Client{URL: sv.URL, Token: sv.Token.Reveal()}.MQTTService(ctx)
	if err == nil {
		log.WithFields(logrus.Fields{"host": mqtt.Host, "port": mqtt.Port}).Info("using the MQTT broker the Supervisor offers (the Mosquitto broker add-on)")
		return cfg.UseBroker(mqtt.URL(), mqtt.Username, config.Secret(mqtt.Password))
	}
	if errors.Is(err, supervisor.ErrNoService) {
		log.Info("the Supervisor offers no MQTT broker: running the embedded one (Home Assistant's MQTT integration connects to this add-on with broker_username and broker_password)")
	} else {
		log.WithError(err).Warn("running the embedded MQTT broker: the Supervisor could not be asked for its broker")
	}
	return cfg.CheckEmbeddedBroker()
}
