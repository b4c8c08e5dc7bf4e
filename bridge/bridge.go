// Package bridge connects Home Assistant, over MQTT, to the Smartcar API: it announces
// each vehicle by discovery, turns cover commands into Smartcar calls through one
// worker per vehicle, and publishes states back. It also runs the embedded broker.
package bridge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

// MQTTOptions says how to reach the broker.
type MQTTOptions struct {
	URL      string // tcp://, ssl://, ws://, wss://
	Username string
	Password string
	CAFile   string // extra CA for ssl:// and wss://
	ClientID string
}

// Options configures a Bridge.
type Options struct {
	MQTT            MQTTOptions
	BaseTopic       string
	DiscoveryPrefix string
	HAStatusTopic   string
	Origin          discovery.Origin
	PollInterval    time.Duration // 0: no polling
	// DataDir keeps each vehicle's last known state, so a restart spends no call;
	// "" keeps nothing.
	DataDir string
	// OnStale is told when Smartcar answers 403 or 404 for a vehicle: what is known
	// of the account (the vehicle cache) is out of date.
	OnStale func(vehicleID string, err error)
	Log     logrus.FieldLogger

	loginProbe time.Duration // tests shorten loginProbeInterval
}

const (
	// shutdownGrace bounds how long an in-flight Smartcar call may go on after the
	// bridge is told to stop (SPEC §6: the whole stop takes under 10 s).
	shutdownGrace = 7 * time.Second
	// publishQoS is 0 for discovery, states and attributes. Nothing is lost by it:
	// all of them are retained and republished on every (re)connect and HA birth.
	// And it spares subscribers of the embedded broker a mochi v2.7.9 bug: mochi keeps
	// its own outbound QoS 1 packet ids in the same table as the client's, so a client
	// subscribing while QoS 1 messages flow to it can have its SUBSCRIBE refused as
	// "packet identifier in use" (mochi issue #545's family). HA would then miss states.
	publishQoS = 0
	// willQoS is for the bridge status: the will and the last "offline" at shutdown,
	// which Run waits for.
	willQoS      = 1
	subscribeQoS = 1
	// offlineTimeout bounds the last publish on the way out.
	offlineTimeout = time.Second
)

// Bridge is the MQTT side of the daemon.
type Bridge struct {
	opts    Options
	log     logrus.FieldLogger
	configs []config           // discovery, built once by New
	workers map[string]*worker // by vehicle id; read-only once built
	known   map[string]bool    // every vehicle on the account (in the filter); read-only
	client  mqtt.Client
	closing atomic.Bool // set on shutdown: commands are no longer taken
	// announceReq asks Run's announcer for discovery then states (capacity 1: a
	// burst of HA births costs one announce).
	announceReq chan struct{}
	// gone holds vehicles an earlier run announced that are no longer bridged, for
	// the announcer to clear; goneReq (capacity 1) says there are some.
	goneMu  sync.Mutex
	gone    map[string]bool
	goneReq chan struct{}

	serving  atomic.Bool
	connects atomic.Uint64
	lost     atomic.Uint64
}

// config is one vehicle's discovery message.
type config struct {
	topic   string
	payload []byte // nil: the vehicle has no entity, and the empty payload clears it
}

// New builds a bridge for the given vehicles; Run connects and serves. It fails on
// discovery settings Home Assistant would not take, and skips (logging why) a
// vehicle whose id it would not take.
func New(car Smartcar, vehicles []Vehicle, opts Options) (*Bridge, error) {
	if opts.loginProbe <= 0 {
		opts.loginProbe = loginProbeInterval
	}
	b := &Bridge{
		opts:    opts,
		log:     opts.Log,
		workers: map[string]*worker{},
		known:   map[string]bool{},

		announceReq: make(chan struct{}, 1),
		gone:        map[string]bool{},
		goneReq:     make(chan struct{}, 1),
	}
	// An id from the account that cannot name a topic, a Home Assistant object or a
	// state file (Smartcar's are UUIDs) costs that vehicle, not the others.
	vehicles = slices.DeleteFunc(slices.Clone(vehicles), func(v Vehicle) bool {
		err := discovery.ValidateVehicleID(v.ID)
		if err != nil {
			b.log.WithError(err).Error("vehicle skipped: its id cannot be used in MQTT topics or Home Assistant")
		}
		return err != nil
	})
	settings := discovery.Settings{Prefix: opts.DiscoveryPrefix, BaseTopic: opts.BaseTopic, Origin: opts.Origin}
	for _, v := range vehicles {
		payload, err := discovery.Config(settings, discoveryVehicle(v))
		if err != nil {
			return nil, fmt.Errorf("discovery for vehicle %q: %w", v.ID, err)
		}
		b.configs = append(b.configs, config{topic: discovery.ConfigTopic(opts.DiscoveryPrefix, v.ID), payload: payload})
		b.known[v.ID] = true
	}
	clientOpts, err := b.clientOptions()
	if err != nil {
		return nil, err
	}
	b.client = mqtt.NewClient(clientOpts)
	out := pahoPublisher{client: b.client, log: b.log}
	login := &loginWatch{log: b.log}
	var served []Vehicle
	for _, v := range vehicles {
		fields := logrus.Fields{"vehicle": v.ID, "make": v.Make, "model": v.Model}
		if ok, why := v.ChargePortDoorSupport(); !ok {
			b.log.WithFields(fields).Infof("no charge port cover for this vehicle: %s", why)
		}
		if v.IsTesla() && !v.CanReadCharge() {
			b.log.WithFields(fields).Info("the read_charge permission was not granted: no polling and no charge sensors; the door state stays unknown until a command")
		}
		if hasDoor(v) || v.CanReadCharge() {
			served = append(served, v)
		}
	}
	readers := 0
	for _, v := range served {
		w := &worker{
			vehicle:   v,
			topics:    discovery.VehicleTopics(opts.BaseTopic, v.ID),
			car:       car,
			out:       out,
			log:       b.log.WithField("vehicle", v.ID),
			mail:      newMailbox(),
			memory:    newMemory(opts.DataDir, v.ID),
			login:     login,
			stale:     opts.OnStale,
			poll:      opts.PollInterval,
			probe:     opts.loginProbe,
			state:     stateUnknown,
			available: true,
		}
		if v.CanReadCharge() && opts.PollInterval > 0 {
			// Spread the polls of several cars over the interval instead of
			// spending their calls in one burst.
			w.stagger = opts.PollInterval * time.Duration(readers) / time.Duration(len(served))
			readers++
		}
		b.workers[v.ID] = w
		login.workers = append(login.workers, w)
	}
	return b, nil
}

func (b *Bridge) clientOptions() (*mqtt.ClientOptions, error) {
	o := b.opts.MQTT
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("MQTT_URL: %w", err)
	}
	opts := mqtt.NewClientOptions().
		AddBroker(o.URL).
		SetClientID(o.ClientID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetCleanSession(true). // subscriptions are redone on every connect
		// In order, on paho's router goroutine: the user's last command is the one
		// left queued. Out of order, each message got a goroutine of its own, so OPEN
		// then CLOSE could be taken as CLOSE then OPEN, and a flood spawned a goroutine
		// per message that outlived the call in flight. That is safe because onMessage
		// never blocks and never publishes: HA's birth and the vehicles to remove are
		// handed to the announcer.
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(false). // the first connect is retried by Run, which logs why it failed
		SetMaxReconnectInterval(time.Minute).
		SetKeepAlive(30*time.Second).
		SetConnectTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).
		SetWill(discovery.StatusTopic(b.opts.BaseTopic), discovery.PayloadOffline, willQoS, true).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			b.lost.Add(1)
			b.log.WithError(err).Warn("lost the MQTT connection; reconnecting")
		})
	if u.Scheme == "ssl" || u.Scheme == "wss" || u.Scheme == "mqtts" || u.Scheme == "tls" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("MQTT_CA_FILE: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("MQTT_CA_FILE: no PEM certificate in %s", o.CAFile)
			}
			cfg.RootCAs = pool
		}
		opts.SetTLSConfig(cfg)
	}
	return opts, nil
}

// Run connects, serves until ctx is cancelled, then shuts down in order: stop taking
// commands, let in-flight calls finish within the grace, publish offline, disconnect.
func (b *Bridge) Run(ctx context.Context) error {
	if err := b.connect(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	call, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	var wg sync.WaitGroup
	for _, w := range b.workers {
		wg.Go(func() { w.run(ctx, call) })
	}
	wg.Go(func() { b.announcer(ctx) })
	b.serving.Store(true)

	<-ctx.Done()
	b.serving.Store(false)
	b.closing.Store(true)
	grace := time.AfterFunc(shutdownGrace, abandon)
	wg.Wait()
	grace.Stop()

	t := b.client.Publish(discovery.StatusTopic(b.opts.BaseTopic), willQoS, true, discovery.PayloadOffline)
	if !t.WaitTimeout(offlineTimeout) || t.Error() != nil {
		b.log.WithError(t.Error()).Warn("could not publish offline before disconnecting; the broker will send the will")
	}
	b.client.Disconnect(250)
	b.log.Info("MQTT session closed")
	return nil
}

// connect makes the first connection, retrying with backoff and saying why it fails;
// later losses are paho's auto-reconnect's job.
func (b *Bridge) connect(ctx context.Context) error {
	where := redactURL(b.opts.MQTT.URL)
	backoff := time.Second
	for {
		t := b.client.Connect()
		select {
		case <-t.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		if t.Error() == nil {
			return nil
		}
		b.log.WithError(t.Error()).WithField("broker", where).Warnf("cannot connect to the MQTT broker; retrying in %s", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// onConnect runs on every (re)connect, in its own goroutine (paho starts it so).
func (b *Bridge) onConnect(c mqtt.Client) {
	b.connects.Add(1)
	b.log.WithField("broker", redactURL(b.opts.MQTT.URL)).Info("connected to the MQTT broker")
	filters := map[string]byte{
		b.opts.BaseTopic + "/+/charge_port/set": subscribeQoS,
		b.opts.BaseTopic + "/+/refresh":         subscribeQoS,
		b.opts.HAStatusTopic:                    subscribeQoS,
		// Our retained configs, to find vehicles that have left the account or the
		// filter since the last run and remove them from Home Assistant.
		discovery.ConfigFilter(b.opts.DiscoveryPrefix): subscribeQoS,
	}
	t := c.SubscribeMultiple(filters, b.onMessage)
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.log.WithError(t.Error()).Error("subscribing to the command topics failed; commands will not be received until the next reconnect")
	} else {
		// A refusal comes back only as the SUBACK's return code (0x80).
		for filter, code := range t.(*mqtt.SubscribeToken).Result() {
			if code > 2 {
				b.log.WithField("filter", filter).Errorf("the broker refused the subscription (code %#x): check its ACL for this user", code)
			}
		}
	}
	b.announce()
}

// announce says the bridge is online and publishes discovery, then every state.
func (b *Bridge) announce() {
	c := b.client
	c.Publish(discovery.StatusTopic(b.opts.BaseTopic), publishQoS, true, discovery.PayloadOnline)
	for _, cfg := range b.configs {
		// A nil payload clears a config left by an earlier run (a vehicle that lost its
		// cover): an empty retained message is HA's "remove".
		c.Publish(cfg.topic, publishQoS, true, cfg.payload)
	}
	for _, w := range b.workers {
		w.mail.requestRepublish()
	}
}

// announcer publishes discovery and states when Home Assistant asks (its birth), and
// removes the vehicles no longer bridged, off paho's router goroutine, until ctx ends.
func (b *Bridge) announcer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.announceReq:
			b.announce()
		case <-b.goneReq:
			b.clearGone()
		}
	}
}

// onMessage never blocks: it parses and hands over to a worker's mailbox.
func (b *Bridge) onMessage(_ mqtt.Client, m mqtt.Message) {
	// Built only when something is logged: most messages are not, and a flood of
	// them should not allocate a log entry each.
	log := func() *logrus.Entry { return b.log.WithField("topic", m.Topic()) }
	if m.Topic() == b.opts.HAStatusTopic {
		// A retained birth is an old one: announce already ran on connect.
		if !m.Retained() && string(m.Payload()) == "online" {
			log().Info("Home Assistant came online; publishing discovery and states")
			select {
			case b.announceReq <- struct{}{}:
			default: // one is already pending
			}
		}
		return
	}
	if id, ok := discovery.VehicleFromConfigTopic(b.opts.DiscoveryPrefix, m.Topic()); ok {
		if m.Retained() {
			b.clearIfGone(id, m.Payload())
		}
		return
	}
	if b.closing.Load() {
		log().Warn("shutting down: message ignored")
		return
	}
	r := parseTopic(b.opts.BaseTopic, m.Topic())
	w, ok := b.workers[r.vehicleID]
	if r.kind == routeNone || !ok {
		log().Warn("message for an unknown vehicle or topic ignored")
		return
	}
	if m.Retained() {
		// A retained command would fire again on every restart.
		log().Warnf("retained message ignored; clear it with: mosquitto_pub -r -n -t '%s'", m.Topic())
		return
	}
	switch r.kind {
	case routeRefresh:
		w.mail.requestRead()
	case routeCommand:
		if ok, why := w.vehicle.ChargePortDoorSupport(); !ok {
			log().Warnf("command ignored: %s", why)
			return
		}
		a, err := parseCommand(m.Payload())
		if err != nil {
			log().WithError(err).Warn("bad command ignored")
			return
		}
		if !w.mail.putCommand(a) {
			// Debug: a flood of repeats would otherwise flood the log too.
			log().WithField("action", a).Debug("same command already in flight: dropped")
		}
	}
}

// clearIfGone notices a vehicle that an earlier run announced and that is no longer
// on the account or in SMARTCAR_VEHICLE_IDS, and hands it to the announcer to clear.
// It runs on paho's router goroutine, so it never blocks and never publishes: the
// set holds each id once however often its config comes back.
func (b *Bridge) clearIfGone(vehicleID string, config []byte) {
	if len(config) == 0 || b.known[vehicleID] {
		return
	}
	// Only configs this daemon wrote: another instance with another base topic may
	// share the discovery prefix.
	if !bytes.Contains(config, []byte(strconv.Quote(discovery.StatusTopic(b.opts.BaseTopic)))) {
		return
	}
	b.goneMu.Lock()
	b.gone[vehicleID] = true
	b.goneMu.Unlock()
	select {
	case b.goneReq <- struct{}{}:
	default: // the announcer has been told already and will take this id too
	}
}

// clearGone removes the vehicles clearIfGone found: each one's device from Home
// Assistant (an empty retained config) and all its retained topics from the broker.
func (b *Bridge) clearGone() {
	b.goneMu.Lock()
	ids := b.gone
	b.gone = map[string]bool{}
	b.goneMu.Unlock()
	for id := range ids {
		b.log.WithField("vehicle", id).Info("vehicle no longer bridged (gone from the account or from SMARTCAR_VEHICLE_IDS): removing it from Home Assistant")
		topics := append([]string{discovery.ConfigTopic(b.opts.DiscoveryPrefix, id)}, discovery.VehicleTopics(b.opts.BaseTopic, id).Retained()...)
		for _, topic := range topics {
			b.client.Publish(topic, publishQoS, true, []byte{})
		}
	}
}

type pahoPublisher struct {
	client mqtt.Client
	log    logrus.FieldLogger
}

// publish hands the message to paho without waiting: while the connection is down
// paho drops it, and onConnect republishes everything anyway.
func (p pahoPublisher) publish(topic string, retained bool, payload []byte) {
	t := p.client.Publish(topic, publishQoS, retained, payload)
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			p.log.WithError(err).WithField("topic", topic).Debug("publish failed")
		}
	default:
	}
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
