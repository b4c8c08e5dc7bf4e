package broker

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

var protocols = []struct {
	name    string
	version byte
}{
	{"MQTT 3.1", 3},
	{"MQTT 3.1.1", 4},
	{"MQTT 5", 5},
}

// On Close an MQTT 5 client is told the server is shutting down; an MQTT 3.1 or
// 3.1.1 client, whose protocol has no DISCONNECT from the server, sees its
// connection closed with nothing sent.
func TestCloseDisconnectsEachProtocolItsWay(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			b := startBroker(t, Options{AllowAnonymous: true})
			c, rc := connectRaw(t, b.Addr().String(), p.version, connectParams{id: "closing-" + fmt.Sprint(p.version)})
			if rc != 0 {
				t.Fatalf("CONNACK code 0x%02X", rc)
			}
			b.Close()
			expectEnd(t, c, packets.ErrServerShuttingDown.Code)
		})
	}
}

// A client whose session is established while Close disconnects the others
// is told once: mochi sends CONNACK before it runs OnSessionEstablished, so
// Close can find the client listed and the hook can find the broker closing.
// A hook here holds the client between the two until Close has chosen to
// disconnect it, and counts the DISCONNECTs mochi is asked to write.
func TestCloseDuringSessionEstablishedDisconnectsOnce(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			b := startBroker(t, Options{AllowAnonymous: true})
			h := &betweenConnackAndSession{release: make(chan struct{}), disconnecting: make(chan struct{}), established: make(chan struct{})}
			if err := b.server.AddHook(h, nil); err != nil {
				t.Fatal(err)
			}
			c, rc := connectRaw(t, b.Addr().String(), p.version, connectParams{id: "late-" + fmt.Sprint(p.version)})
			if rc != 0 {
				t.Fatalf("CONNACK code 0x%02X", rc)
			}
			closed := make(chan struct{})
			go func() { b.Close(); close(closed) }()
			select {
			case <-h.disconnecting:
			case <-time.After(10 * time.Second):
				t.Fatal("Close never disconnected the client")
			}
			close(h.release)
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return")
			}
			if n := h.disconnects.Load(); n != 1 {
				t.Errorf("%d DISCONNECTs written to one client, want 1", n)
			}
			expectEnd(t, c, packets.ErrServerShuttingDown.Code)
		})
	}
}

// betweenConnackAndSession holds a client after its CONNACK until release,
// and the first DISCONNECT to it until its session is established (or a
// deadline), so both paths that can end it run while it is still open.
type betweenConnackAndSession struct {
	mqtt.HookBase
	release       chan struct{}
	disconnecting chan struct{} // closed when the first DISCONNECT is about to be written
	established   chan struct{} // closed after every OnSessionEstablished before this hook's
	first         sync.Once
	disconnects   atomic.Int32
}

func (h *betweenConnackAndSession) ID() string { return "test-between-connack-and-session" }

func (h *betweenConnackAndSession) Provides(b byte) bool {
	return slices.Contains([]byte{mqtt.OnPacketSent, mqtt.OnPacketEncode, mqtt.OnSessionEstablished}, b)
}

func (h *betweenConnackAndSession) OnPacketSent(_ *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Connack {
		<-h.release
	}
}

func (h *betweenConnackAndSession) OnPacketEncode(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Disconnect {
		h.disconnects.Add(1)
		h.first.Do(func() {
			close(h.disconnecting)
			select {
			case <-h.established:
			case <-time.After(10 * time.Second):
			}
		})
	}
	return pk
}

func (h *betweenConnackAndSession) OnSessionEstablished(*mqtt.Client, packets.Packet) {
	close(h.established)
}

// A new connection with a client's id replaces it: the same rule for the old
// connection as on Close.
func TestTakeOverDisconnectsEachProtocolItsWay(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			b := startBroker(t, Options{AllowAnonymous: true})
			old, _ := connectRaw(t, b.Addr().String(), p.version, connectParams{id: "twin"})
			if _, rc := connectRaw(t, b.Addr().String(), p.version, connectParams{id: "twin"}); rc != 0 {
				t.Fatalf("CONNACK code 0x%02X", rc)
			}
			expectEnd(t, old, packets.ErrSessionTakenOver.Code)
		})
	}
}

// expectEnd reads what ends c's connection: for MQTT 5 a DISCONNECT with reason,
// for the older protocols nothing at all.
func expectEnd(t *testing.T, c *rawClient, reason byte) {
	t.Helper()
	if c.version < 5 {
		if ok, got := c.closedWithoutPacket(); !ok {
			t.Fatalf("MQTT %d client: got %s, want the connection closed with nothing sent", c.version, got)
		}
		return
	}
	typ, body, err := c.read()
	if err != nil || typ != 0xE0 || len(body) == 0 || body[0] != reason {
		t.Fatalf("MQTT 5 client: got packet 0x%02X % X (%v), want DISCONNECT with reason 0x%02X", typ, body, err, reason)
	}
	if ok, got := c.closedWithoutPacket(); !ok {
		t.Fatalf("after DISCONNECT: got %s, want the connection closed", got)
	}
}

// Retained messages are saved by Close, all of them, while clients of every
// protocol connect and leave in a tight loop: the interleaving in which mochi-mqtt
// v2.7.9's Close can hang or miss its clients.
func TestCloseKeepsRetainedMessagesWhileClientsComeAndGo(t *testing.T) {
	const rounds, messages = 50, 5
	for round := range rounds {
		dir := t.TempDir()
		b := startBroker(t, Options{AllowAnonymous: true, DataDir: dir})
		want := publishRetained(t, b, round, messages)

		stop := make(chan struct{})
		active, wait := churn(b.Addr().String(), 6, stop)
		<-active
		b.Close()
		close(stop)
		wait()

		store, err := openRetainedStore(filepath.Join(dir, "broker-retained.json"), testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := store.StoredRetainedMessages()
		store.Stop()
		got := map[string]string{}
		for _, m := range stored {
			got[m.TopicName] = string(m.Payload)
		}
		for topic, payload := range want {
			if got[topic] != payload {
				t.Fatalf("round %d: retained %q = %q after Close, want %q (saved: %v)", round, topic, got[topic], payload, got)
			}
		}
	}
}

// publishRetained publishes retained messages as MQTT 3.1.1 (QoS 1) and MQTT 5
// (QoS 0) clients, and returns them once the broker has taken each.
func publishRetained(t testing.TB, b *Broker, round, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	v4, _ := connectRaw(t, b.Addr().String(), 4, connectParams{id: fmt.Sprintf("pub4-%d", round)})
	v5, _ := connectRaw(t, b.Addr().String(), 5, connectParams{id: fmt.Sprintf("pub5-%d", round)})
	for i := range n {
		topic, payload := fmt.Sprintf("kept/%d/v4/%d", round, i), fmt.Sprintf("payload %d", i)
		if _, err := v4.publish(topic, payload, 1, true); err != nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
		want[topic] = payload
		topic = fmt.Sprintf("kept/%d/v5/%d", round, i)
		if _, err := v5.publish(topic, payload, 0, true); err != nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
		want[topic] = payload
	}
	if err := v5.ping(); err != nil { // the QoS 0 publishes are handled
		t.Fatal(err)
	}
	v4.disconnect()
	v5.disconnect()
	return want
}

// churn keeps clients coming and going at addr until stop is closed: one session of
// each protocol version stays until the broker ends it, and churners connect and
// leave over and over, in every way a connection can end (DISCONNECT, dropped,
// never having sent CONNECT) and with every protocol version. active is closed once
// the staying sessions are up and a churner has connected; wait waits for all to end.
func churn(addr string, churners int, stop <-chan struct{}) (active <-chan struct{}, wait func()) {
	ready := make(chan struct{}, len(protocols)+churners)
	up := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range len(protocols) + 1 {
			select {
			case <-ready:
			case <-stop:
				return
			}
		}
		close(up)
	})
	dial := func(version byte) *rawClient {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		return &rawClient{conn: conn, r: bufio.NewReader(conn), version: version}
	}
	for _, p := range protocols {
		wg.Go(func() {
			c := dial(p.version)
			if c == nil {
				return
			}
			defer c.conn.Close()
			if rc, err := c.connect(connectParams{id: fmt.Sprintf("stay-%d", p.version)}); err == nil && rc == 0 {
				ready <- struct{}{}
			}
			c.read() // until the broker ends it
		})
	}
	for w := range churners {
		wg.Go(func() {
			signalled := false
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := dial(protocols[(w+i)%len(protocols)].version)
				if c == nil {
					<-stop // the broker has closed: wait for the end rather than spin
					return
				}
				if i%4 == 3 {
					c.conn.Close() // never sent CONNECT
					continue
				}
				rc, err := c.connect(connectParams{id: fmt.Sprintf("churn-%d", w)})
				if err == nil && rc == 0 && !signalled {
					ready <- struct{}{}
					signalled = true
				}
				if i%2 == 0 {
					c.disconnect()
				} else {
					c.conn.Close()
				}
			}
		})
	}
	return up, wg.Wait
}

// The last write of the retained store happens once, however many stop it at once.
func TestRetainedStoreWritesOnceOnStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retained.json")
	s, err := openRetainedStore(path, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	s.OnRetainMessage(nil, packets.Packet{TopicName: "a/b", Payload: []byte("x"), FixedHeader: packets.FixedHeader{Retain: true, Qos: 1}}, 1)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { s.Stop() })
	}
	wg.Wait()
	if s.writes != 1 {
		t.Errorf("%d writes, want 1", s.writes)
	}
	again, err := openRetainedStore(path, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	stored, _ := again.StoredRetainedMessages()
	if len(stored) != 1 || stored[0].TopicName != "a/b" || string(stored[0].Payload) != "x" {
		t.Errorf("stored %+v", stored)
	}
}

// BenchmarkBrokerClose measures Close while clients connect and leave in a tight
// loop, with retained messages to save; one Close per iteration, 200 of them with
//
//	go test -run '^$' -bench BrokerClose -benchtime 200x ./broker
//
// It reports the slowest and the median Close, and asserts nothing about time.
func BenchmarkBrokerClose(b *testing.B) {
	var took []time.Duration
	round := 0
	for b.Loop() {
		br := startBroker(b, Options{AllowAnonymous: true, Log: quietLog()})
		publishRetained(b, br, round, 3)
		round++
		stop := make(chan struct{})
		active, wait := churn(br.Addr().String(), 6, stop)
		<-active
		start := time.Now()
		br.Close()
		took = append(took, time.Since(start))
		close(stop)
		wait()
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "max-close-ms")
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "p50-close-ms")
}
