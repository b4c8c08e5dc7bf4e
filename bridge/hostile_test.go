package bridge

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

const (
	burstSize   = 100_000
	burstMarker = "END-OF-BURST" // a bad command the bridge logs: the burst's last message
	// burstWait bounds a hang while a burst is written and handled: generous, since
	// a loaded machine under -race takes tens of seconds over 100,000 messages.
	burstWait = time.Minute
)

// TestHostileCommandTraffic is anyone who can publish to the command topic doing their
// worst: a 1 MB payload, invalid UTF-8, then 100,000 QoS 0 commands while a door call
// is in flight. No Smartcar call beyond the coalescing rule, the bridge still serves,
// and the memory the burst took comes back.
//
// The door call is held open by the test until the bridge has handled the whole burst
// (counted from its log), rather than by a fixed car latency: on a slow machine under
// -race, 100,000 messages take longer than any latency a test can afford, and a call
// ending mid-burst makes the count prove nothing.
func TestHostileCommandTraffic(t *testing.T) {
	forEachBroker(t, smartcarsim.Options{}, func(t *testing.T, e *env) {
		front, seen, drops := e.watchCommands()
		e.startBridge()
		// Not subscribed to the command topic: the test's own copy of the burst
		// would otherwise sit in its heap and in the measurement.
		watch := e.recorder(discovery.StatusTopic(base), teslaTopics.State, teslaTopics.Attributes, teslaTopics.Availability)
		ready(watch, "closed")
		attacker := e.recorder()

		garbage := []string{
			strings.Repeat("A", 1<<20),           // 1 MB
			strings.Repeat("\xff", 1<<20),        // 1 MB of invalid UTF-8
			"OPEN" + strings.Repeat(" x", 1<<19), // OPEN, then 1 MB of something
			"\xff\xfeOPEN", "OPEN\xff", "OP\xc3EN", "CL\xedOSE", "\xc0\xafCLOSE", "OPEN\x00",
			"\xef\xbb\xbfOPEN", // a byte order mark is not whitespace
		}
		for _, p := range garbage {
			attacker.publish(teslaTopics.Command, false, p)
		}
		api := len(e.sim.Requests())
		// A refresh after the garbage is read once the worker has handled the rest.
		waitRead(watch, attacker, teslaTopics)
		if reqs := e.sim.Requests()[api:]; len(reqs) != 1 || !strings.HasSuffix(reqs[0].Path, "/tesla/charge") {
			t.Fatalf("the garbage cost Smartcar calls: %+v", reqs)
		}
		if calls := e.doorCalls(); len(calls) != 0 {
			t.Fatalf("garbage on the command topic made %d door calls", len(calls))
		}
		if got := seen.ignored.Load(); got != int64(len(garbage)) {
			t.Errorf("the bridge logged %d ignored commands, want %d", got, len(garbage))
		}

		idleHeap, idleGoroutines := heapInUse(), runtime.NumGoroutine()
		release := front.holdDoors()
		defer release()
		attacker.publish(teslaTopics.Command, false, "OPEN")
		front.waitDoor(t)
		began := time.Now()
		rawBurst(t, e, burstSize)
		wrote := time.Since(began)
		// In order, the bridge drops each OPEN of the burst (equal to the command in
		// flight, and clearing the queue) and queues each CLOSE; then it logs the
		// marker as a bad command. Once it has done both for everything the broker
		// delivered, it has handled the burst.
		handled := seen.waitBurst(t, func(dropped int64, marker bool) bool {
			return dropped >= burstSize/2-drops.open.Load() && (marker || drops.marker.Load())
		})
		if front.doors.Load() != 1 {
			t.Fatalf("%d door calls reached Smartcar while the first was in flight", front.doors.Load())
		}
		release()
		waitRead(watch, attacker, teslaTopics)
		calls := e.doorCalls()
		if len(calls) == 0 || len(calls) > 2 {
			t.Fatalf("%d commands made %d door calls, want 1 or 2", burstSize+1, len(calls))
		}
		// The burst's last word was CLOSE: in order, it is the one left queued. (Unless
		// the broker dropped it: mochi drops QoS 0 for a client that lags behind.)
		if drops.all.Load() == 0 {
			if len(calls) != 2 {
				t.Fatalf("%d door calls, want 2: the OPEN in flight, then the burst's last word", len(calls))
			}
			checkDoorCall(t, calls[1], "CLOSE")
			if e.sim.ChargePortOpen(tesla) {
				t.Error("the door is open: the burst's last word, CLOSE, was not the last command sent")
			}
		}
		afterHeap, afterGoroutines := heapInUse(), runtime.NumGoroutine()
		t.Logf("%d QoS 0 commands written in %s, handled by the bridge in %s (%d dropped by the broker); %d door calls; heap idle %.1f MB, after %.1f MB; goroutines %d → %d",
			burstSize, wrote.Round(time.Millisecond), handled.Sub(began).Round(time.Millisecond), drops.all.Load(),
			len(calls), mb(idleHeap), mb(afterHeap), idleGoroutines, afterGoroutines)
		if afterHeap > idleHeap+20<<20 {
			t.Errorf("heap after the burst %.1f MB, idle %.1f MB: more than 20 MB kept", mb(afterHeap), mb(idleHeap))
		}
		if afterGoroutines > idleGoroutines+50 {
			t.Errorf("goroutines after the burst %d, idle %d: handlers left behind", afterGoroutines, idleGoroutines)
		}
		neverOffline(t, mustMessages(watch))
	})
}

// watchCommands sets e up for a flood of commands: the bridge reaches Smartcar
// through a flakySmartcar (to hold a door call in flight), logs to a commandLog,
// and what the embedded broker drops is counted, all of them waking the same wait.
func (e *env) watchCommands() (*flakySmartcar, *commandLog, *dropCounter) {
	front := e.throughFront()
	// The door call the test holds must outlast any wait for the burst: were it to
	// time out first, the bridge would move on mid-burst and the count prove nothing.
	e.clientOpts = append(e.clientOpts, smartcar.WithTimeout(2*burstWait))
	seen := &commandLog{}
	e.log = seen.logger(e.t)
	drops := &dropCounter{notify: seen.notify}
	if e.broker != nil {
		if err := e.broker.AddHook(drops, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	return front, seen, drops
}

// dropCounter counts the messages the embedded broker drops because a client's queue
// is full (mochi drops them then, whatever their QoS; the test's mosquitto keeps
// them: see newEnv).
type dropCounter struct {
	mochi.HookBase
	all      atomic.Int64 // every message dropped
	commands atomic.Int64 // those to the Tesla's command topic (the bridge is its only subscriber)
	open     atomic.Int64 // those of them that say OPEN
	marker   atomic.Bool  // burstMarker was dropped
	notify   func()
}

func (h *dropCounter) ID() string { return "test-drop-counter" }

func (h *dropCounter) Provides(b byte) bool { return b == mochi.OnPublishDropped }

func (h *dropCounter) OnPublishDropped(_ *mochi.Client, pk packets.Packet) {
	h.all.Add(1)
	if pk.TopicName != teslaTopics.Command {
		return
	}
	h.commands.Add(1)
	switch string(pk.Payload) {
	case "OPEN":
		h.open.Add(1)
	case burstMarker:
		h.marker.Store(true)
	}
	h.notify()
}

// rawBurst connects with a minimal MQTT 3.1.1 client of its own and writes n QoS 0
// commands to the Tesla's command topic in one go, alternating OPEN and CLOSE and
// ending with CLOSE, then burstMarker: as fast as a hostile client can, without paho's
// per-message overhead in the way.
func rawBurst(t *testing.T, e *env, n int) {
	t.Helper()
	u, err := url.Parse(e.userURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(burstWait)) // the broker may read slowly, but must read

	var connect []byte
	connect = appendString(connect, "MQTT")
	flags := byte(0x02) // clean session
	if e.user != "" {
		flags |= 0xC0 // username, password
	}
	connect = append(connect, 4, flags, 0, 60) // protocol level 4, keep alive 60 s
	connect = appendString(connect, fmt.Sprintf("raw-burst-%d", time.Now().UnixNano()))
	if e.user != "" {
		connect = appendString(connect, e.user)
		connect = appendString(connect, e.pass)
	}
	w := bufio.NewWriterSize(conn, 64<<10)
	writePacket(w, 0x10, connect)
	if err := w.Flush(); err != nil {
		t.Fatalf("raw client: connect: %v", err)
	}
	var connack [4]byte
	if _, err := io.ReadFull(conn, connack[:]); err != nil || connack[0] != 0x20 || connack[3] != 0 {
		t.Fatalf("raw client: CONNACK % x: %v", connack, err)
	}
	topic := appendString(nil, teslaTopics.Command)
	for i := range n {
		cmd := "OPEN"
		if i%2 == 1 {
			cmd = "CLOSE"
		}
		writePacket(w, 0x30, append(topic[:len(topic):len(topic)], cmd...))
	}
	writePacket(w, 0x30, append(topic[:len(topic):len(topic)], burstMarker...))
	writePacket(w, 0xE0, nil) // DISCONNECT: the broker handles it after the burst
	if err := w.Flush(); err != nil {
		t.Fatalf("raw client: burst: %v", err)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func writePacket(w *bufio.Writer, header byte, body []byte) {
	w.WriteByte(header)
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		w.WriteByte(d)
		if n == 0 {
			break
		}
	}
	w.Write(body)
}

// commandLog counts what the bridge logs about commands, without keeping the lines:
// the burst makes tens of thousands, and the heap is being measured.
type commandLog struct {
	t        *testing.T
	ignored  atomic.Int64 // "bad command ignored"
	received atomic.Int64 // "command received": every valid command the bridge took
	dropped  atomic.Int64 // "same command already in flight: dropped"
	marker   atomic.Bool  // burstMarker was ignored as a bad command
	last     atomic.Int64 // when the last drop was logged, in Unix nanoseconds

	// changes wakes waitBurst at each change of the counts (here, or the broker's
	// dropCounter). Its items are of size zero: the record grows by nothing,
	// however long the burst.
	changes itest.Record[struct{}]
}

func (c *commandLog) logger(t *testing.T) *logrus.Logger {
	c.t = t
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.DebugLevel)
	l.AddHook(c)
	return l
}

func (c *commandLog) Levels() []logrus.Level { return logrus.AllLevels }

func (c *commandLog) Fire(e *logrus.Entry) error {
	if testing.Verbose() && e.Level <= logrus.WarnLevel {
		// Warnings only: not 50,000 lines of "dropped" through t.Log.
		if line, err := e.String(); err == nil {
			c.t.Log(strings.TrimRight(line, "\n"))
		}
	}
	switch e.Message {
	case "bad command ignored":
		if err, ok := e.Data[logrus.ErrorKey].(error); ok && strings.Contains(err.Error(), burstMarker) {
			c.marker.Store(true)
			c.notify()
			break
		}
		c.ignored.Add(1)
	case "command received":
		c.received.Add(1)
		c.notify()
	case "same command already in flight: dropped":
		// last first: once waitBurst sees the drop counted, it reads the time of a
		// drop at least as late.
		c.last.Store(time.Now().UnixNano())
		c.dropped.Add(1)
		c.notify()
	}
	return nil
}

// notify says that a count changed; a count is always changed before its notify.
func (c *commandLog) notify() { c.changes.Add(struct{}{}) }

// waitBurst waits until done holds for the number of commands dropped as already in
// flight and whether the marker was seen (asked again at every change), and returns
// when the last drop was logged.
func (c *commandLog) waitBurst(t *testing.T, done func(dropped int64, marker bool) bool) time.Time {
	t.Helper()
	handled := false
	defer func() {
		// The wait fails the test with runtime.Goexit, which runs this: say how far
		// the bridge got.
		t.Helper()
		if !handled {
			t.Logf("%d commands taken by the bridge, %d dropped as already in flight, marker seen %v", c.received.Load(), c.dropped.Load(), c.marker.Load())
		}
	}()
	// watchCommands made the door call the test holds outlast this wait.
	c.changes.WaitFor(t, "the bridge to handle the burst", burstWait, func([]struct{}) bool {
		return done(c.dropped.Load(), c.marker.Load())
	})
	handled = true
	return time.Unix(0, c.last.Load())
}

// heapInUse is the live heap after a full collection, in bytes.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // the second one frees what the first one's finalizers let go
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// waitRead presses a vehicle's Refresh and waits for the result of that read:
// attributes of a successful poll made after the press (a republished older read
// does not count). A worker takes a queued command before a read, so once it
// returns, every command published before the press has been handled too.
func waitRead(watch, user *recorder, vehicle discovery.Topics) {
	watch.t.Helper()
	pressed := time.Now()
	user.publish(vehicle.Refresh, false, "PRESS")
	watch.waitAttributes(0, vehicle.Attributes, func(a map[string]any) bool {
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(a["last_read_at"])) // changed by a read that worked only
		return err == nil && !at.Before(pressed)
	})
}
