package bridge

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/sirupsen/logrus"
)

// BrokerOptions configures the embedded broker that runs when no external one is given.
type BrokerOptions struct {
	Listen         string // BROKER_LISTEN, e.g. ":1883"
	Username       string // Home Assistant's account
	Password       string
	AllowAnonymous bool
	TLSListen      string // used only when TLSCert and TLSKey are set
	TLSCert        string
	TLSKey         string
	DataDir        string // retained messages are kept here across restarts
	BaseTopic      string // the daemon's own topics, guarded from other clients
	Log            logrus.FieldLogger
}

// Broker is an in-process mochi-mqtt broker. The bridge reaches it like any other
// broker, over a loopback listener of its own with a credential made at start-up, so
// there is one code path for embedded and external brokers.
type Broker struct {
	server   *mqtt.Server
	store    *retainedStore
	log      logrus.FieldLogger
	public   net.Listener
	internal net.Listener
	tls      net.Listener // nil without BROKER_TLS_CERT/KEY
	bridge   Credentials

	closeOnce sync.Once
}

// brokerCloseTimeout bounds mochi's Close. mochi-mqtt v2.7.9 can deadlock in it
// when a client disconnects while the server closes (its issue 488, unfixed in the
// last release): a stop must never hang on that.
const brokerCloseTimeout = 3 * time.Second

// Credentials is what the bridge presents to the embedded broker.
type Credentials struct {
	URL, Username, Password string
}

// StartBroker listens on the configured addresses and serves until Close.
func StartBroker(opts BrokerOptions) (*Broker, error) {
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("make bridge credential: %w", err)
	}
	creds := Credentials{Username: "smartcar2mqtt-bridge-" + hex.EncodeToString(secret[:4]), Password: hex.EncodeToString(secret[4:])}

	caps := mqtt.NewDefaultServerCapabilities()
	// mochi deletes retained messages after 24 h by default; discovery and states must
	// outlive that, so no server-imposed expiry (0 disables it).
	caps.MaximumMessageExpiryInterval = 0
	server := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: false,
		Logger:       slog.New(newSlogHandler(opts.Log.WithField("component", "broker"), slog.LevelWarn)),
	})

	guard := &retainGuard{topicAliasMax: caps.TopicAliasMaximum}
	if err := server.AddHook(guard, nil); err != nil {
		return nil, fmt.Errorf("add retain guard: %w", err)
	}
	access := &accessHook{
		bridge:    creds,
		user:      opts.Username,
		password:  opts.Password,
		anonymous: opts.AllowAnonymous,
		base:      opts.BaseTopic,
	}
	if err := server.AddHook(access, nil); err != nil {
		return nil, fmt.Errorf("add access hook: %w", err)
	}
	store, err := openRetainedStore(filepath.Join(opts.DataDir, "broker-retained.json"), opts.Log)
	if err != nil {
		return nil, err
	}
	if err := server.AddHook(store, nil); err != nil {
		return nil, fmt.Errorf("add retained store: %w", err)
	}

	b := &Broker{server: server, store: store, log: opts.Log, bridge: creds}
	fail := func(err error) (*Broker, error) {
		b.closeListeners()
		store.Stop()
		return nil, err
	}
	if b.public, err = net.Listen("tcp", opts.Listen); err != nil {
		return fail(fmt.Errorf("embedded broker: listen on BROKER_LISTEN %q: %w", opts.Listen, err))
	}
	if b.internal, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return fail(fmt.Errorf("embedded broker: loopback listener: %w", err))
	}
	b.bridge.URL = "tcp://" + b.internal.Addr().String()
	if err := server.AddListener(listeners.NewNet("mqtt", b.public)); err != nil {
		return fail(err)
	}
	if err := server.AddListener(listeners.NewNet("bridge", b.internal)); err != nil {
		return fail(err)
	}
	if opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return fail(fmt.Errorf("embedded broker: load BROKER_TLS_CERT/BROKER_TLS_KEY: %w", err))
		}
		tl, err := tls.Listen("tcp", opts.TLSListen, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return fail(fmt.Errorf("embedded broker: listen on BROKER_TLS_LISTEN %q: %w", opts.TLSListen, err))
		}
		if err := server.AddListener(listeners.NewNet("mqtts", tl)); err != nil {
			tl.Close()
			return fail(err)
		}
		b.tls = tl
	}
	if err := server.Serve(); err != nil {
		return fail(fmt.Errorf("embedded broker: %w", err))
	}
	opts.Log.WithField("listen", b.public.Addr().String()).Info("embedded MQTT broker started")
	return b, nil
}

// BridgeCredentials is how the bridge connects to this broker.
func (b *Broker) BridgeCredentials() Credentials { return b.bridge }

// Addr is the public listener's address (useful when BROKER_LISTEN asks for port 0).
func (b *Broker) Addr() net.Addr { return b.public.Addr() }

// TLSAddr is the TLS listener's address, nil when the broker has none.
func (b *Broker) TLSAddr() net.Addr {
	if b.tls == nil {
		return nil
	}
	return b.tls.Addr()
}

// Close disconnects every client, stops the listeners and flushes retained messages,
// within brokerCloseTimeout whatever mochi does. It may be called more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		closed := make(chan struct{})
		go func() {
			b.server.Close() // always nil
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(brokerCloseTimeout):
			// mochi is stuck before it stops its hooks: free the ports and save the
			// retained messages here. If it ever returns, it stops them again: a no-op.
			b.log.Warnf("the embedded broker did not stop within %s (a known mochi-mqtt deadlock when a client leaves during shutdown); closing its listeners and saving retained messages without it", brokerCloseTimeout)
			b.closeListeners()
			b.store.Stop()
		}
	})
	return nil
}

func (b *Broker) closeListeners() {
	for _, l := range []net.Listener{b.public, b.internal, b.tls} {
		if l != nil {
			l.Close()
		}
	}
}
