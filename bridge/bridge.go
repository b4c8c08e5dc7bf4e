// Package bridge connects Home Assistant, over MQTT, to the Smartcar API: it announces
// each vehicle by discovery, turns cover commands into Smartcar calls through one
// worker per vehicle, and publishes states back. It also runs the embedded broker.
package bridge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
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
	// OnNoDoorCommand is told when Smartcar answers that it has no charge port
	// command for a vehicle, so that the next start offers no cover either.
	OnNoDoorCommand func(vehicleID, why string)
	// OnUnknownVehicle is told, once per id, of a vehicle an earlier run
	// announced to Home Assistant that is not served now. The bridge never
	// removes it on its own: only RemoveVehicles does, once Smartcar
	// positively lacks it. It must not block.
	OnUnknownVehicle func(vehicleID string)
	Log              logrus.FieldLogger

	loginProbe time.Duration // tests shorten loginProbeInterval
}

const (
	// shutdownGrace bounds how long an in-flight Smartcar call may go on after the
	// bridge is told to stop: the whole stop takes under 10 s.
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
	opts   Options
	log    logrus.FieldLogger
	fleet  atomic.Pointer[fleet] // replaced, never changed, by the announcer only
	client mqtt.Client
	car    Smartcar
	out    publisher
	login  *loginWatch
	// fleetReq asks the announcer to take the vehicles in pending (new cars, or
	// a car that lost its cover); capacity 1.
	fleetReq chan struct{}
	pendMu   sync.Mutex
	pending  []Vehicle
	leaving  []string    // vehicles to remove, for the announcer
	closing  atomic.Bool // set on shutdown: commands are no longer taken
	// announceReq asks Run's announcer for discovery then states (capacity 1: a
	// burst of HA births costs one announce).
	announceReq chan struct{}
	// gone holds the vehicles RemoveVehicles named: their configs, retained by
	// an earlier run, are cleared whenever the broker hands one back; clear
	// holds those the announcer is to clear now, and goneReq (capacity 1) says
	// there are some. unknown is the vehicles told to OnUnknownVehicle.
	goneMu  sync.Mutex
	gone    map[string]bool
	clear   map[string]bool
	unknown map[string]bool
	goneReq chan struct{}

	serving  atomic.Bool
	started  chan struct{} // closed once Run has connected and announced
	connects atomic.Uint64
	lost     atomic.Uint64
	takeover takeoverWatch
}

// takeoverWatch notices a connection that keeps being dropped soon after it is
// made: the mark of another client connecting with the same client id, which
// makes the broker close the older session, back and forth.
type takeoverWatch struct {
	mu        sync.Mutex
	connected time.Time
	quick     []time.Time // recent losses soon after a connect
	said      bool
}

const (
	takeoverQuick  = 10 * time.Second // a loss this soon after connecting is quick
	takeoverWindow = 5 * time.Minute
	takeoverCount  = 3 // quick losses within the window that make it a takeover
)

func (t *takeoverWatch) connect(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.connected = now
}

// lost records a lost connection and reports, once per run of quick losses,
// whether they now look like a takeover.
func (t *takeoverWatch) lost(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.connected) > takeoverQuick {
		t.quick, t.said = nil, false // a connection that held
		return false
	}
	t.quick = append(slices.DeleteFunc(t.quick, func(at time.Time) bool { return now.Sub(at) > takeoverWindow }), now)
	if len(t.quick) < takeoverCount || t.said {
		return false
	}
	t.said = true
	return true
}

// config is one vehicle's discovery message.
type config struct {
	topic   string
	payload []byte // nil: the vehicle has no entity, and the empty payload clears it
}

// fleet is the vehicles the bridge serves, as one immutable snapshot: paho's
// handler and Status read it from other goroutines while the announcer
// swaps in a new one when a car is connected or loses its cover.
type fleet struct {
	vehicles map[string]Vehicle
	configs  map[string]config  // discovery by vehicle id
	workers  map[string]*worker // vehicles with at least one entity that calls Smartcar
}

// with returns a copy of f holding v (replacing an earlier v) and w.
func (f *fleet) with(v Vehicle, c config, w *worker) *fleet {
	n := &fleet{vehicles: maps.Clone(f.vehicles), configs: maps.Clone(f.configs), workers: maps.Clone(f.workers)}
	n.vehicles[v.ID], n.configs[v.ID] = v, c
	if w != nil {
		n.workers[v.ID] = w
	}
	return n
}

// New builds a bridge for the given vehicles; Run connects and serves. It fails on
// discovery settings Home Assistant would not take, and skips (logging why) a
// vehicle whose id it would not take.
func New(car Smartcar, vehicles []Vehicle, opts Options) (*Bridge, error) {
	if opts.loginProbe <= 0 {
		opts.loginProbe = loginProbeInterval
	}
	b := &Bridge{
		opts: opts,
		log:  opts.Log,

		fleetReq:    make(chan struct{}, 1),
		announceReq: make(chan struct{}, 1),
		gone:        map[string]bool{},
		clear:       map[string]bool{},
		unknown:     map[string]bool{},
		goneReq:     make(chan struct{}, 1),
		started:     make(chan struct{}),
	}
	if err := b.settings().Validate(); err != nil {
		return nil, err
	}
	clientOpts, err := b.clientOptions()
	if err != nil {
		return nil, err
	}
	b.client = mqtt.NewClient(clientOpts)
	b.out = pahoPublisher{client: b.client, log: b.log}
	b.login = &loginWatch{log: b.log}
	b.car = car

	f := &fleet{vehicles: map[string]Vehicle{}, configs: map[string]config{}, workers: map[string]*worker{}}
	var served []Vehicle
	for _, v := range vehicles {
		c, ok := b.vehicleConfig(v)
		if !ok {
			continue
		}
		f.vehicles[v.ID], f.configs[v.ID] = v, c
		if b.served(v) {
			served = append(served, v)
		}
	}
	readers := 0
	for _, v := range served {
		w := b.newWorker(v)
		if v.CanReadCharge() && opts.PollInterval > 0 {
			// Spread the polls of several cars over the interval instead of
			// spending their calls in one burst.
			w.stagger = opts.PollInterval * time.Duration(readers) / time.Duration(len(served))
			readers++
		}
		f.workers[v.ID] = w
	}
	b.fleet.Store(f)
	return b, nil
}

func (b *Bridge) settings() discovery.Settings {
	return discovery.Settings{Prefix: b.opts.DiscoveryPrefix, BaseTopic: b.opts.BaseTopic, Origin: b.opts.Origin}
}

// vehicleConfig builds v's discovery message. An id from the account that cannot
// name a topic, a Home Assistant object or a state file (Smartcar's are UUIDs)
// costs that vehicle, not the others: logged, and ok is false.
func (b *Bridge) vehicleConfig(v Vehicle) (config, bool) {
	payload, err := discovery.Config(b.settings(), discoveryVehicle(v))
	if err == nil {
		err = discovery.ValidateVehicleID(v.ID)
	}
	if err != nil {
		b.log.WithError(err).WithField("vehicle", v.ID).Error("vehicle skipped: its id cannot be used in MQTT topics or Home Assistant")
		return config{}, false
	}
	return config{topic: discovery.ConfigTopic(b.opts.DiscoveryPrefix, v.ID), payload: payload}, true
}

// served says whether v gets a worker (an entity that calls Smartcar), logging
// once what it lacks.
func (b *Bridge) served(v Vehicle) bool {
	fields := logrus.Fields{"vehicle": v.ID, "make": v.Make, "model": v.Model}
	if ok, why := v.ChargePortDoorSupport(); !ok {
		b.log.WithFields(fields).Infof("no charge port cover for this vehicle: %s", why)
	}
	if !v.CanReadCharge() && slices.Contains(v.Permissions, smartcar.PermControlCharge) {
		b.log.WithFields(fields).Info("the read_charge permission was not granted: no polling and no charge sensors; the door state stays unknown until a command")
	}
	return hasDoor(v) || v.CanReadCharge()
}

func (b *Bridge) newWorker(v Vehicle) *worker {
	w := &worker{
		vehicle:   v,
		topics:    discovery.VehicleTopics(b.opts.BaseTopic, v.ID),
		car:       b.car,
		out:       b.out,
		log:       b.log.WithField("vehicle", v.ID),
		mail:      newMailbox(),
		memory:    newMemory(b.opts.DataDir, v.ID),
		login:     b.login,
		stale:     b.opts.OnStale,
		noDoor:    b.dropDoor,
		poll:      b.opts.PollInterval,
		probe:     b.opts.loginProbe,
		state:     stateUnknown,
		available: true,
	}
	_, why := v.ChargePortDoorSupport()
	w.doorWhy.Store(&why)
	b.login.add(w)
	return w
}

// AddVehicles serves cars connected while the daemon runs (found in the
// vehicle cache that `auth` rewrote): each one new to the bridge gets its
// discovery, a worker and its first read, without a restart. Cars already
// served are left as they are. It never blocks.
func (b *Bridge) AddVehicles(vs []Vehicle) {
	// A car removed earlier that a listing shows again is back.
	b.goneMu.Lock()
	for _, v := range vs {
		delete(b.gone, v.ID)
	}
	b.goneMu.Unlock()
	b.pendMu.Lock()
	b.pending = append(b.pending, vs...)
	b.pendMu.Unlock()
	select {
	case b.fleetReq <- struct{}{}:
	default:
	}
}

// RemoveVehicles removes vehicles Smartcar positively no longer has (or the
// vehicle filter left out): each one's device from Home Assistant and all its
// retained topics, whether this run serves it or an earlier one announced it.
// It never blocks.
func (b *Bridge) RemoveVehicles(ids []string) {
	if len(ids) == 0 {
		return
	}
	b.goneMu.Lock()
	for _, id := range ids {
		b.gone[id] = true
	}
	b.goneMu.Unlock()
	b.pendMu.Lock()
	b.leaving = append(b.leaving, ids...)
	b.pendMu.Unlock()
	select {
	case b.fleetReq <- struct{}{}:
	default:
	}
}

// Apply takes what a vehicle listing changed.
func (b *Bridge) Apply(u smartcar.Update) {
	b.AddVehicles(u.Vehicles)
	b.RemoveVehicles(u.Gone)
}

// dropDoor is a worker's report that Smartcar has no charge port command for
// its vehicle: the cover is removed from Home Assistant, once.
func (b *Bridge) dropDoor(v Vehicle, why string) {
	v.NoDoorCommand = why
	b.AddVehicles([]Vehicle{v})
	if b.opts.OnNoDoorCommand != nil {
		b.opts.OnNoDoorCommand(v.ID, why)
	}
}

// takeFleet applies what AddVehicles and dropDoor asked for, on the announcer's
// goroutine: the only place the fleet changes. start runs a new worker.
func (b *Bridge) takeFleet(start func(*worker)) {
	b.pendMu.Lock()
	vs, leaving := b.pending, b.leaving
	b.pending, b.leaving = nil, nil
	b.pendMu.Unlock()
	for _, id := range leaving {
		b.remove(id)
	}
	for _, v := range vs {
		f := b.fleet.Load()
		old, known := f.vehicles[v.ID]
		lostDoor := known && v.NoDoorCommand != "" && old.NoDoorCommand == ""
		if known && !lostDoor || b.isGone(v.ID) {
			continue
		}
		if lostDoor {
			// Same vehicle, same worker: only its discovery loses the cover.
			old.NoDoorCommand = v.NoDoorCommand
			v = old
		}
		c, ok := b.vehicleConfig(v)
		if !ok {
			continue
		}
		var w *worker
		if !known && b.served(v) {
			w = b.newWorker(v)
		}
		b.fleet.Store(f.with(v, c, w))
		switch {
		case lostDoor:
			b.log.WithField("vehicle", v.ID).Warnf("%s: its cover is removed from Home Assistant; the other entities stay", v.NoDoorCommand)
		case c.payload == nil:
			b.log.WithFields(logrus.Fields{"vehicle": v.ID, "make": v.Make, "model": v.Model}).
				Info("vehicle found on the Smartcar account, with neither the charge port command nor the charge read: nothing to announce to Home Assistant")
		default:
			b.log.WithFields(logrus.Fields{"vehicle": v.ID, "make": v.Make, "model": v.Model}).Info("vehicle found on the Smartcar account: announcing it to Home Assistant")
		}
		b.client.Publish(c.topic, publishQoS, true, c.payload)
		if w != nil {
			start(w)
			w.mail.requestRepublish()
		}
	}
}

// remove takes vehicle id out of the fleet, on the announcer's goroutine. Its
// worker, if it has one, stops and clears the vehicle's retained topics itself
// (it owns them: a call in flight may still publish); the device goes now.
func (b *Bridge) remove(id string) {
	f := b.fleet.Load()
	v, known := f.vehicles[id]
	if known {
		n := &fleet{vehicles: maps.Clone(f.vehicles), configs: maps.Clone(f.configs), workers: maps.Clone(f.workers)}
		delete(n.vehicles, id)
		delete(n.configs, id)
		delete(n.workers, id)
		b.fleet.Store(n)
		b.log.WithFields(logrus.Fields{"vehicle": id, "make": v.Make, "model": v.Model}).Warn("Smartcar no longer lists this vehicle for this application (or SMARTCAR_VEHICLE_IDS leaves it out): removing it from Home Assistant")
	}
	if !known {
		b.log.WithField("vehicle", id).Info("Smartcar no longer lists this vehicle, which an earlier run announced: removing it from Home Assistant")
	}
	if w := f.workers[id]; w != nil {
		b.client.Publish(discovery.ConfigTopic(b.opts.DiscoveryPrefix, id), publishQoS, true, []byte{})
		w.leave()
		return
	}
	b.clearVehicle(id)
}

func (b *Bridge) isGone(id string) bool {
	b.goneMu.Lock()
	defer b.goneMu.Unlock()
	return b.gone[id]
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
			if b.takeover.lost(time.Now()) {
				b.log.WithField("client_id", o.ClientID).Error("another MQTT client keeps taking over this client id: the broker drops each connection soon after the other client connects. " +
					"Is a second smartcar2mqtt (or another program) using MQTT_CLIENT_ID=" + o.ClientID + " on this broker? Give each its own MQTT_CLIENT_ID")
			}
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
	start := func(w *worker) {
		stop, leave := context.WithCancel(ctx)
		w.leave = leave
		wg.Go(func() {
			w.run(stop, call)
			if ctx.Err() == nil {
				// Stopped while the bridge runs: its vehicle was removed.
				w.clearRetained()
			}
		})
	}
	for _, w := range b.fleet.Load().workers {
		start(w)
	}
	// The announcer starts workers of cars connected later; wg.Wait below
	// waits for them too, since the announcer adds them before it returns.
	wg.Go(func() { b.announcer(ctx, start) })
	b.serving.Store(true)
	close(b.started)

	<-ctx.Done()
	b.serving.Store(false)
	b.closing.Store(true)
	grace := time.AfterFunc(shutdownGrace, abandon)
	wg.Wait()
	grace.Stop()

	// Only on an open connection: the broker sent the will when the last one
	// dropped, and a QoS 1 publish queued while paho reconnects would be
	// resent by its resume, which races the new connection's writer over the
	// packet (a data race in paho, eclipse-paho/paho.mqtt.golang#703).
	if b.client.IsConnectionOpen() {
		t := b.client.Publish(discovery.StatusTopic(b.opts.BaseTopic), willQoS, true, discovery.PayloadOffline)
		if !t.WaitTimeout(offlineTimeout) || t.Error() != nil {
			b.log.WithError(t.Error()).Warn("could not publish offline before disconnecting; the broker will send the will")
		}
	} else {
		b.log.Info("not connected to the MQTT broker while stopping: the broker has sent the will (offline)")
	}
	b.client.Disconnect(250)
	b.log.Info("MQTT session closed")
	return nil
}

// Started is closed once Run has made its first connection and announced
// what it knows: what a cold start owes Home Assistant before anything else.
func (b *Bridge) Started() <-chan struct{} { return b.started }

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
		b.log.WithError(t.Error()).WithField("broker", where).Warnf("cannot connect to the MQTT broker%s; retrying in %s", connectAdvice(t.Error()), backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// connectAdvice says what to check when the broker refused the connection.
func connectAdvice(err error) string {
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return ": it refused the login: check MQTT_USERNAME and MQTT_PASSWORD against the broker's accounts"
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return ": it refused the client id: check MQTT_CLIENT_ID"
	}
	return ""
}

// onConnect runs on every (re)connect, in its own goroutine (paho starts it so).
func (b *Bridge) onConnect(c mqtt.Client) {
	b.connects.Add(1)
	b.takeover.connect(time.Now())
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
	f := b.fleet.Load()
	c.Publish(discovery.StatusTopic(b.opts.BaseTopic), publishQoS, true, discovery.PayloadOnline)
	for _, cfg := range f.configs {
		// A nil payload clears a config left by an earlier run (a vehicle that lost its
		// cover): an empty retained message is HA's "remove".
		c.Publish(cfg.topic, publishQoS, true, cfg.payload)
	}
	for _, w := range f.workers {
		w.mail.requestRepublish()
	}
}

// announcer publishes discovery and states when Home Assistant asks (its birth),
// takes cars connected since the start, and removes the vehicles no longer bridged,
// off paho's router goroutine, until ctx ends.
func (b *Bridge) announcer(ctx context.Context, start func(*worker)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.announceReq:
			b.announce()
		case <-b.fleetReq:
			b.takeFleet(start)
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
	w, ok := b.fleet.Load().workers[r.vehicleID]
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
		if debugEnabled(b.log) {
			log().Debug("refresh asked: reading the car")
		}
		w.mail.requestRead()
	case routeCommand:
		if why := *w.doorWhy.Load(); why != "" {
			log().Warnf("command ignored: %s", why)
			return
		}
		a, err := parseCommand(m.Payload())
		if err != nil {
			log().WithError(err).Warn("bad command ignored")
			return
		}
		queued := w.mail.putCommand(a)
		// Debug lines only when they are written: a flood of commands must not
		// allocate a log entry each.
		if debugEnabled(b.log) {
			log().WithField("action", a).Debug("command received")
			if !queued {
				log().WithField("action", a).Debug("same command already in flight: dropped")
			}
		}
	}
}

// clearIfGone looks at a config an earlier run retained for a vehicle this run
// does not serve: one RemoveVehicles named is handed to the announcer to clear;
// any other is only reported (OnUnknownVehicle), since neither an empty or
// failed listing nor a start from an old cache proves the car is gone. It runs
// on paho's router goroutine, so it never blocks and never publishes.
func (b *Bridge) clearIfGone(vehicleID string, config []byte) {
	f := b.fleet.Load()
	if _, known := f.vehicles[vehicleID]; len(config) == 0 || known {
		return
	}
	// Only configs this daemon wrote: another instance with another base topic may
	// share the discovery prefix.
	if !bytes.Contains(config, []byte(strconv.Quote(discovery.StatusTopic(b.opts.BaseTopic)))) {
		return
	}
	b.goneMu.Lock()
	gone, told := b.gone[vehicleID], b.unknown[vehicleID]
	if gone {
		b.clear[vehicleID] = true
	} else {
		b.unknown[vehicleID] = true
	}
	b.goneMu.Unlock()
	switch {
	case gone:
		select {
		case b.goneReq <- struct{}{}:
		default: // the announcer has been told already and will take this id too
		}
	case !told && b.opts.OnUnknownVehicle != nil:
		b.opts.OnUnknownVehicle(vehicleID)
	}
}

// clearGone clears the configs clearIfGone handed over.
func (b *Bridge) clearGone() {
	b.goneMu.Lock()
	ids := b.clear
	b.clear = map[string]bool{}
	b.goneMu.Unlock()
	for id := range ids {
		b.clearVehicle(id)
	}
}

// clearVehicle removes a vehicle no worker serves: its device from Home
// Assistant (an empty retained config) and all its retained topics.
func (b *Bridge) clearVehicle(id string) {
	topics := append([]string{discovery.ConfigTopic(b.opts.DiscoveryPrefix, id)}, discovery.VehicleTopics(b.opts.BaseTopic, id).Retained()...)
	for _, topic := range topics {
		b.client.Publish(topic, publishQoS, true, []byte{})
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

// debugEnabled says whether log writes debug lines; one that cannot say is
// taken to write them.
func debugEnabled(log logrus.FieldLogger) bool {
	switch l := log.(type) {
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.DebugLevel)
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
