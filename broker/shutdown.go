package broker

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// connTracker follows every connection the broker's listeners accept, from Accept to
// Close, so that Close can stop while clients come and go. mochi-mqtt v2.7.9 cannot
// on its own:
//   - it counts a connection in the WaitGroup its Close waits on only once the
//     connection's goroutine runs, so a connection accepted just before Close can be
//     counted while Close already waits: a misuse of sync.WaitGroup, which the race
//     detector reports (mochi's pull request 508);
//   - its Close disconnects the clients in its list, then waits for every
//     connection, also one still between CONNECT and that list, which then stays
//     connected, and one that never sent CONNECT, which has no deadline.
//
// So Close first stops the listeners itself, waits until mochi has counted every
// connection accepted so far (mochi counts a connection before it first reads from
// it), refuses CONNECT from then on, and cuts the connections that are not sessions;
// the sessions are mochi's to disconnect.
type connTracker struct {
	mu        sync.Mutex
	closing   bool
	conns     map[*trackedConn]struct{}
	listeners []net.Listener
}

func newConnTracker() *connTracker {
	return &connTracker{conns: map[*trackedConn]struct{}{}}
}

// trackedConn is a connection the tracker follows.
type trackedConn struct {
	net.Conn
	tracker  *connTracker
	read     chan struct{} // closed at the first Read: mochi has counted the connection
	readOnce sync.Once
	session  bool // guarded by tracker.mu: it sent CONNECT while the broker was open
	told     bool // guarded by tracker.mu: it was told the broker is shutting down
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.readOnce.Do(func() { close(c.read) })
	return c.Conn.Read(p)
}

func (c *trackedConn) Close() error {
	c.tracker.mu.Lock()
	delete(c.tracker.conns, c)
	c.tracker.mu.Unlock()
	return c.Conn.Close()
}

// trackingListener hands every connection it accepts to the tracker.
type trackingListener struct {
	net.Listener
	tracker *connTracker
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, tracker: l.tracker, read: make(chan struct{})}
	l.tracker.mu.Lock()
	closing := l.tracker.closing
	if !closing {
		l.tracker.conns[tc] = struct{}{}
	}
	l.tracker.mu.Unlock()
	if closing {
		// Accepted in the instant between Close deciding to stop and the listener
		// closing: mochi must not see it, and it ends its accept loop on the error.
		c.Close()
		return nil, net.ErrClosed
	}
	return tc, nil
}

// listen opens a TCP listener whose connections the tracker follows.
func (t *connTracker) listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.listeners = append(t.listeners, l)
	t.mu.Unlock()
	return &trackingListener{Listener: l, tracker: t}, nil
}

func (t *connTracker) closeListeners() {
	t.mu.Lock()
	ls := t.listeners
	t.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

// admit is asked when a client sends CONNECT: true makes the connection a session,
// false (once the broker is closing) refuses it.
func (t *connTracker) admit(conn net.Conn) bool {
	tc := tracked(conn)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	if tc != nil {
		tc.session = true
	}
	return true
}

// tell reports whether the client on conn is to be told now that the broker
// shuts down: true once per connection. Close and a session established
// during it (mochi sends CONNACK before OnSessionEstablished) both reach the
// same client, which must get one DISCONNECT, not two.
func (t *connTracker) tell(conn net.Conn) bool {
	tc := tracked(conn)
	if tc == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc.told {
		return false
	}
	tc.told = true
	return true
}

func (t *connTracker) isClosing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

// shutdown stops accepting and admitting, waits (until deadline) for mochi to have
// counted every accepted connection, and cuts those that are not sessions.
func (t *connTracker) shutdown(deadline time.Time) {
	t.mu.Lock()
	t.closing = true
	accepted := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		accepted = append(accepted, c)
	}
	t.mu.Unlock()
	t.closeListeners()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
wait:
	for _, c := range accepted {
		select {
		case <-c.read:
		case <-timer.C:
			break wait // a goroutine of mochi's that never runs: cut what can be cut
		}
	}

	t.mu.Lock()
	var idle []*trackedConn
	for c := range t.conns {
		if !c.session {
			idle = append(idle, c)
		}
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// closeAll cuts every connection still open.
func (t *connTracker) closeAll() {
	t.mu.Lock()
	all := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		all = append(all, c)
	}
	t.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

// tracked is the trackedConn under conn, which TLS may wrap; nil if there is none.
func tracked(conn net.Conn) *trackedConn {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	c, _ := conn.(*trackedConn)
	return c
}

// shutdownHook keeps the rules of a stop that mochi alone does not:
//   - a client connecting while the broker closes is refused without a packet
//     (OnConnect), or, if it got past that just before, disconnected as soon as its
//     session exists (OnSessionEstablished), so that Close, which waits for every
//     client, never waits for one that arrived after it disconnected the others;
//   - MQTT 3.1.1 and 3.1 have no DISCONNECT from server to client: a server ends a
//     connection by closing it. mochi's DisconnectClient writes a DISCONNECT whatever
//     the client's protocol, and mochi uses it on Close, when a new connection takes
//     over a client id, and when a 3.1.1 client's QoS 1 publish is refused; paho, as
//     Home Assistant uses it, reports a protocol error for each. OnPacketEncode,
//     which mochi calls with every packet just before writing it, closes the
//     connection of such a client instead: the write that follows fails on the
//     closed connection, so not a byte of the DISCONNECT goes out, and mochi carries
//     on as after any failed write. A hook covers all those paths at once, the ones
//     deep inside mochi's packet handling among them.
type shutdownHook struct {
	mqtt.HookBase
	server *mqtt.Server
	conns  *connTracker
}

func (h *shutdownHook) ID() string { return "smartcar2mqtt-shutdown" }

func (h *shutdownHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnSessionEstablished, mqtt.OnPacketEncode}, []byte{b})
}

func (h *shutdownHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if !h.conns.admit(cl.Net.Conn) {
		return packets.ErrServerShuttingDown
	}
	return nil
}

func (h *shutdownHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if h.conns.isClosing() && h.conns.tell(cl.Net.Conn) {
		h.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
	}
}

func (h *shutdownHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Disconnect && cl.Properties.ProtocolVersion < 5 {
		cl.Stop(packets.Code{Code: pk.ReasonCode, Reason: pk.Properties.ReasonString})
	}
	return pk
}
