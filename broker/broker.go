// Package broker is the embedded MQTT broker the daemon runs when no external one
// is configured: a mochi-mqtt server with its listeners (plain, TLS, and a loopback
// one for the daemon itself), the access rules that keep the daemon's state topics
// its own, and the file that keeps retained messages across restarts. It knows
// nothing of Smartcar: the daemon reaches it like any other broker.
package broker

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/sirupsen/logrus"
)

// Options configures the broker.
type Options struct {
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

// Broker is an in-process mochi-mqtt broker. The daemon reaches it like any other
// broker, over a loopback listener of its own with a credential made at start-up, so
// there is one code path for embedded and external brokers.
type Broker struct {
	server *mqtt.Server
	store  *retainedStore
	conns  *connTracker
	log    logrus.FieldLogger
	public net.Listener
	tls    net.Listener // nil without BROKER_TLS_CERT/KEY
	bridge Credentials

	closeOnce sync.Once
}

// Close's bounds: after closeGrace every connection still open is cut; if the
// broker has still not stopped closeForceGrace later, the retained messages are
// saved without it. A stop never waits longer than the two together, plus the
// file write.
const (
	closeGrace      = 3 * time.Second
	closeForceGrace = time.Second
)

// Credentials is what the daemon presents to the broker.
type Credentials struct {
	URL, Username, Password string
}

// ListenError is a listener that could not start: a configuration problem (a port
// in use, an address not on this host, a certificate that does not load), which
// callers can tell from a failure at run time with errors.As.
type ListenError struct {
	Setting string // the variable at fault: BROKER_LISTEN, BROKER_TLS_LISTEN, BROKER_TLS_CERT or BROKER_TLS_KEY
	Addr    string // its value: the address, or for BROKER_TLS_CERT and BROKER_TLS_KEY the file
	Err     error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("%s %q: %v", e.Setting, e.Addr, cause(e.Err))
}

func (e *ListenError) Unwrap() error { return e.Err }

// cause drops the wrappers of the net and os packages that repeat what the
// ListenError already says ("listen tcp 127.0.0.1:1883: bind: …", "open cert.pem: …"),
// keeping the reason itself.
func cause(err error) error {
	for {
		switch e := err.(type) {
		case *net.OpError:
			if e.Err == nil {
				return err
			}
			err = e.Err
		case *os.SyscallError:
			err = e.Err
		case *os.PathError:
			err = e.Err
		default:
			return err
		}
	}
}

// Start listens on the configured addresses and serves until Close.
func Start(opts Options) (*Broker, error) {
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("make the daemon's broker credential: %w", err)
	}
	creds := Credentials{Username: "smartcar2mqtt-bridge-" + hex.EncodeToString(secret[:4]), Password: hex.EncodeToString(secret[4:])}

	// The certificate is read before anything listens: a bad file must not leave
	// a half-started broker behind.
	var cert tls.Certificate
	if opts.TLSCert != "" {
		var err error
		if cert, err = loadCertificate(opts.TLSCert, opts.TLSKey); err != nil {
			return nil, err
		}
	}

	log := opts.Log.WithField("component", "broker")
	caps := mqtt.NewDefaultServerCapabilities()
	// mochi deletes retained messages after 24 h by default; discovery and states must
	// outlive that, so no server-imposed expiry (0 disables it).
	caps.MaximumMessageExpiryInterval = 0
	server := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: false,
		Logger:       slog.New(newSlogHandler(log, slog.LevelWarn)),
	})

	conns := newConnTracker()
	store, err := openRetainedStore(filepath.Join(opts.DataDir, "broker-retained.json"), opts.Log)
	if err != nil {
		return nil, err
	}
	hooks := []mqtt.Hook{
		&shutdownHook{server: server, conns: conns},
		&retainGuard{topicAliasMax: caps.TopicAliasMaximum},
		&accessHook{
			server:    server,
			log:       log,
			bridge:    creds,
			user:      opts.Username,
			password:  opts.Password,
			anonymous: opts.AllowAnonymous,
			base:      opts.BaseTopic,
			open:      openTopics(opts.BaseTopic),
		},
		store,
	}
	for _, h := range hooks {
		if err := server.AddHook(h, nil); err != nil {
			store.Stop()
			return nil, fmt.Errorf("add hook %s to the broker: %w", h.ID(), err)
		}
	}

	b := &Broker{server: server, store: store, conns: conns, log: log, bridge: creds}
	fail := func(err error) (*Broker, error) {
		conns.closeListeners()
		store.Stop()
		return nil, err
	}
	public, err := conns.listen(opts.Listen)
	if err != nil {
		return fail(&ListenError{Setting: "BROKER_LISTEN", Addr: opts.Listen, Err: err})
	}
	b.public = public
	internal, err := conns.listen("127.0.0.1:0")
	if err != nil {
		return fail(fmt.Errorf("listen on the broker's loopback address for the daemon: %w", err))
	}
	b.bridge.URL = "tcp://" + internal.Addr().String()
	if err := server.AddListener(listeners.NewNet("mqtt", public)); err != nil {
		return fail(fmt.Errorf("add the broker's listener: %w", err))
	}
	if err := server.AddListener(listeners.NewNet("bridge", internal)); err != nil {
		return fail(fmt.Errorf("add the broker's loopback listener: %w", err))
	}
	if opts.TLSCert != "" {
		raw, err := conns.listen(opts.TLSListen)
		if err != nil {
			return fail(&ListenError{Setting: "BROKER_TLS_LISTEN", Addr: opts.TLSListen, Err: err})
		}
		// TLS sits on top of the tracked listener, so that cutting a connection at
		// close cuts the TCP connection under it, whatever state TLS is in.
		b.tls = tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err := server.AddListener(listeners.NewNet("mqtts", b.tls)); err != nil {
			return fail(fmt.Errorf("add the broker's TLS listener: %w", err))
		}
	}
	if err := server.Serve(); err != nil {
		return fail(fmt.Errorf("start the broker: %w", err))
	}
	log.WithField("listen", public.Addr().String()).Info("embedded MQTT broker started")
	return b, nil
}

// loadCertificate reads BROKER_TLS_CERT and BROKER_TLS_KEY, and says which of the
// two is at fault when they do not make a certificate.
func loadCertificate(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &ListenError{Setting: "BROKER_TLS_CERT", Addr: certFile, Err: err}
	}
	if !hasCertificate(certPEM) {
		return tls.Certificate{}, &ListenError{Setting: "BROKER_TLS_CERT", Addr: certFile, Err: errors.New("no PEM certificate in the file")}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, &ListenError{Setting: "BROKER_TLS_KEY", Addr: keyFile, Err: err}
	}
	// The certificate parses, so what fails now is the key or the pair: a key
	// that is not PEM, or not the certificate's.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, &ListenError{Setting: "BROKER_TLS_KEY", Addr: keyFile, Err: err}
	}
	return cert, nil
}

// hasCertificate reports whether data holds at least one PEM certificate that
// parses.
func hasCertificate(data []byte) bool {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return false
		}
		if block.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(block.Bytes); err == nil {
				return true
			}
		}
	}
}

// AddHook adds a mochi hook to the running broker, to watch what it does (tests
// count the messages it drops with one). The broker's own rules stay first.
func (b *Broker) AddHook(h mqtt.Hook, config any) error {
	if err := b.server.AddHook(h, config); err != nil {
		return fmt.Errorf("add hook %s to the broker: %w", h.ID(), err)
	}
	return nil
}

// BridgeCredentials is how the daemon connects to this broker.
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

// Close stops the listeners, disconnects every client and saves the retained
// messages, within closeGrace+closeForceGrace whatever the clients or mochi do.
// MQTT 5 clients are told why (DISCONNECT, server shutting down); MQTT 3.1.1 and
// 3.1 clients see their connection closed, the only way those protocols have for
// a server to end one. It may be called more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(b.close)
	return nil
}

func (b *Broker) close() {
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	// No connection is accepted or admitted from here on, and the connections that
	// never became a session are cut: mochi would wait for them (a client that
	// connected but never sent CONNECT) and knows nothing to disconnect.
	b.conns.shutdown(time.Now().Add(closeGrace))

	stopped := make(chan struct{})
	go func() {
		// mochi-mqtt v2.7.9's own Close deadlocks when a client leaves while it
		// disconnects the others (its issue 488): it lists them under a read lock
		// that it takes twice, and a client leaving asks for the write lock in
		// between. So the clients are disconnected here, and mochi's Close runs only
		// once every client's goroutine has ended, when no client changes that list
		// any more (the tracker has made sure no new one starts).
		b.disconnectClients()
		b.server.Listeners.ClientsWg.Wait()
		b.server.Close() // always nil; stops the hooks, the retained store among them
		close(stopped)
	}()
	select {
	case <-stopped:
		return
	case <-grace.C:
	}
	// A client that does not read keeps its DISCONNECT from being written, and its
	// goroutine alive: cut every connection.
	b.log.Warnf("clients of the embedded broker did not all leave within %s; cutting their connections", closeGrace)
	b.conns.closeAll()
	select {
	case <-stopped:
		return
	case <-time.After(closeForceGrace):
	}
	// mochi is stuck before it stops its hooks: save the retained messages here.
	// Should it ever return, it stops the store again, which does nothing.
	b.log.Warn("the embedded broker did not stop (a mochi-mqtt deadlock); saving retained messages without it")
	b.store.Stop()
}

// disconnectClients ends every client's connection: an MQTT 5 client is told the
// server is shutting down, an older one sees its connection closed (shutdownHook).
func (b *Broker) disconnectClients() {
	for _, cl := range b.server.Clients.GetAll() {
		if !cl.Closed() && b.conns.tell(cl.Net.Conn) {
			b.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
