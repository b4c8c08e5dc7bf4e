package broker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

const (
	base   = "smartcar2mqtt"
	haUser = "homeassistant"
	haPass = "ha-secret*" // a '*' must not act as a wildcard
)

func testLog(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(testWriter{t})
		l.SetLevel(logrus.DebugLevel)
	}
	return l
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startBroker starts a broker on loopback ports with Home Assistant's account and a
// data dir of the test's, and closes it at the end of the test.
func startBroker(t testing.TB, opts Options) *Broker {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Username == "" && !opts.AllowAnonymous {
		opts.Username, opts.Password = haUser, haPass
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.BaseTopic == "" {
		opts.BaseTopic = base
	}
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	b, err := Start(opts)
	if err != nil {
		t.Fatalf("start the broker: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// rawClient speaks MQTT byte by byte over TCP, to see exactly what the broker sends:
// no client library in between that would hide or reject a packet.
type rawClient struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	version byte // 3 (MQTT 3.1), 4 (3.1.1) or 5
}

// connectParams is what a CONNECT carries.
type connectParams struct {
	id, user, pass string
	will           *rawWill
}

type rawWill struct {
	topic, payload string
	retain         bool
}

// dialRaw opens a TCP connection to addr.
func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), version: version}
}

// connectRaw dials addr and sends CONNECT; it returns the client and the CONNACK's
// return (3.1, 3.1.1) or reason (5) code.
func connectRaw(t testing.TB, addr string, version byte, p connectParams) (*rawClient, byte) {
	t.Helper()
	c := dialRaw(t, addr, version)
	rc, err := c.connect(p)
	if err != nil {
		t.Fatalf("MQTT %d connect as %q: %v", version, p.id, err)
	}
	return c, rc
}

func (c *rawClient) connect(p connectParams) (byte, error) {
	var body bytes.Buffer
	switch c.version {
	case 3:
		writeString(&body, "MQIsdp")
	default:
		writeString(&body, "MQTT")
	}
	body.WriteByte(c.version)
	flags := byte(0x02) // clean session
	if p.user != "" {
		flags |= 0x80
	}
	if p.pass != "" {
		flags |= 0x40
	}
	if p.will != nil {
		flags |= 0x04
		if p.will.retain {
			flags |= 0x20
		}
	}
	body.WriteByte(flags)
	body.Write([]byte{0, 60}) // keepalive
	if c.version == 5 {
		body.WriteByte(0) // no properties
	}
	writeString(&body, p.id)
	if p.will != nil {
		if c.version == 5 {
			body.WriteByte(0) // no will properties
		}
		writeString(&body, p.will.topic)
		writeString(&body, p.will.payload)
	}
	if p.user != "" {
		writeString(&body, p.user)
	}
	if p.pass != "" {
		writeString(&body, p.pass)
	}
	if err := c.write(0x10, body.Bytes()); err != nil {
		return 0, err
	}
	typ, ack, err := c.read()
	if err != nil {
		return 0, fmt.Errorf("read CONNACK: %w", err)
	}
	if typ != 0x20 || len(ack) < 2 {
		return 0, fmt.Errorf("got packet 0x%02X % X, want CONNACK", typ, ack)
	}
	return ack[1], nil
}

// publish sends a PUBLISH; with QoS 1 it waits for the PUBACK and returns its reason
// code (0 for 3.1.1, which has none).
func (c *rawClient) publish(topic, payload string, qos byte, retain bool) (byte, error) {
	var body bytes.Buffer
	writeString(&body, topic)
	if qos > 0 {
		body.Write([]byte{0, 1}) // packet id
	}
	if c.version == 5 {
		body.WriteByte(0)
	}
	body.WriteString(payload)
	header := byte(0x30) | qos<<1
	if retain {
		header |= 0x01
	}
	if err := c.write(header, body.Bytes()); err != nil {
		return 0, err
	}
	if qos == 0 {
		return 0, nil
	}
	typ, ack, err := c.read()
	if err != nil {
		return 0, fmt.Errorf("read PUBACK: %w", err)
	}
	if typ != 0x40 {
		return 0, fmt.Errorf("got packet 0x%02X % X, want PUBACK", typ, ack)
	}
	if len(ack) > 2 {
		return ack[2], nil
	}
	return 0, nil
}

// subscribe sends a SUBSCRIBE for one filter and returns the SUBACK's code for it.
func (c *rawClient) subscribe(filter string) (byte, error) {
	var body bytes.Buffer
	body.Write([]byte{0, 2}) // packet id
	if c.version == 5 {
		body.WriteByte(0)
	}
	writeString(&body, filter)
	body.WriteByte(1) // QoS 1
	if err := c.write(0x82, body.Bytes()); err != nil {
		return 0, err
	}
	for {
		typ, ack, err := c.read()
		if err != nil {
			return 0, fmt.Errorf("read SUBACK: %w", err)
		}
		if typ&0xF0 == 0x30 {
			continue // a retained message delivered meanwhile
		}
		if typ != 0x90 || len(ack) < 3 {
			return 0, fmt.Errorf("got packet 0x%02X % X, want SUBACK", typ, ack)
		}
		return ack[len(ack)-1], nil
	}
}

// ping sends PINGREQ and waits for PINGRESP: the broker handles a client's packets
// in order, so everything sent before has been handled.
func (c *rawClient) ping() error {
	if err := c.write(0xC0, nil); err != nil {
		return err
	}
	typ, body, err := c.read()
	if err != nil {
		return fmt.Errorf("read PINGRESP: %w", err)
	}
	if typ != 0xD0 {
		return fmt.Errorf("got packet 0x%02X % X, want PINGRESP", typ, body)
	}
	return nil
}

// disconnect sends DISCONNECT and closes the connection.
func (c *rawClient) disconnect() {
	if c.version == 5 {
		c.write(0xE0, []byte{0})
	} else {
		c.write(0xE0, nil)
	}
	c.conn.Close()
}

func (c *rawClient) write(header byte, body []byte) error {
	var pk bytes.Buffer
	pk.WriteByte(header)
	pk.Write(binary.AppendUvarint(nil, uint64(len(body)))) // MQTT's remaining length is this varint
	pk.Write(body)
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.conn.Write(pk.Bytes())
	return err
}

// read reads one packet: its first byte and its body.
func (c *rawClient) read() (byte, []byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		return typ, nil, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return typ, nil, err
	}
	return typ, body, nil
}

// closedWithoutPacket reports whether the broker closed the connection with nothing
// more sent, or else what it sent.
func (c *rawClient) closedWithoutPacket() (bool, string) {
	typ, body, err := c.read()
	switch {
	case err == nil:
		return false, fmt.Sprintf("packet 0x%02X % X", typ, body)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), isReset(err):
		return true, ""
	default:
		return false, err.Error()
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "connection reset")
}

func writeString(b *bytes.Buffer, s string) {
	b.Write([]byte{byte(len(s) >> 8), byte(len(s))})
	b.WriteString(s)
}

// quietLog discards everything, for benchmarks.
func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
