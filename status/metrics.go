package status

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Calls counts Smartcar calls for Prometheus; it is a smartcar.CallObserver.
// Labels are endpoint names and outcomes, never a URL, token or vehicle secret.
type Calls struct {
	calls     *prometheus.CounterVec
	refreshes *prometheus.CounterVec
	commands  *prometheus.HistogramVec
}

// NewCalls registers the call metrics on reg.
func NewCalls(reg prometheus.Registerer) *Calls {
	c := &Calls{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartcar2mqtt_smartcar_calls_total",
			Help: "Requests to Smartcar (API and token endpoint), retries included, by endpoint and outcome.",
		}, []string{"endpoint", "outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartcar2mqtt_token_refreshes_total",
			Help: "Access token refreshes, by outcome (ok, OAUTH, network, …).",
		}, []string{"outcome"}),
		commands: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "smartcar2mqtt_command_duration_seconds",
			Help: "Time Smartcar took to answer a charge port door command.",
			// Commands reach a real car: seconds to minutes.
			Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300},
		}, []string{"outcome"}),
	}
	reg.MustRegister(c.calls, c.refreshes, c.commands)
	return c
}

// ObserveCall implements smartcar.CallObserver.
func (c *Calls) ObserveCall(call smartcar.Call) {
	c.calls.WithLabelValues(call.Endpoint, call.Outcome).Inc()
	switch call.Endpoint {
	case smartcar.EndpointToken:
		c.refreshes.WithLabelValues(call.Outcome).Inc()
	case smartcar.EndpointChargePortDoor:
		c.commands.WithLabelValues(call.Outcome).Observe(call.Duration.Seconds())
	}
}

// bridgeCollector turns bridge.Status into metrics at scrape time.
type bridgeCollector struct {
	status func() bridge.Status
	now    func() time.Time

	connected, connects, lost, available, age *prometheus.Desc
}

// RegisterBridge adds the MQTT session and vehicle metrics, read from status at
// every scrape, and the Go runtime and process collectors.
func RegisterBridge(reg prometheus.Registerer, status func() bridge.Status) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&bridgeCollector{
		status:    status,
		now:       time.Now,
		connected: prometheus.NewDesc("smartcar2mqtt_mqtt_connected", "1 while the MQTT session is up.", nil, nil),
		connects:  prometheus.NewDesc("smartcar2mqtt_mqtt_connects_total", "MQTT sessions established; more than one means reconnects.", nil, nil),
		lost:      prometheus.NewDesc("smartcar2mqtt_mqtt_connections_lost_total", "MQTT sessions lost.", nil, nil),
		available: prometheus.NewDesc("smartcar2mqtt_vehicle_available", "1 while the vehicle can be served (its availability topic says online).", []string{"vehicle"}, nil),
		age:       prometheus.NewDesc("smartcar2mqtt_state_age_seconds", "Age of the door state published retained: time since it was last learned from the car.", []string{"vehicle"}, nil),
	})
}

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.connects, c.lost, c.available, c.age} {
		ch <- d
	}
}

func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, boolValue(s.Connected))
	ch <- prometheus.MustNewConstMetric(c.connects, prometheus.CounterValue, float64(s.Connects))
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(s.ConnectionsLost))
	now := c.now()
	for _, v := range s.Vehicles {
		ch <- prometheus.MustNewConstMetric(c.available, prometheus.GaugeValue, boolValue(v.Available), v.ID)
		if !v.KnownAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, now.Sub(v.KnownAt).Seconds(), v.ID)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
