package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		payload string
		want    smartcar.Action
		wantErr bool
	}{
		{"OPEN", smartcar.Open, false},
		{"CLOSE", smartcar.Close, false},
		{"open", smartcar.Open, false},
		{" Close \n", smartcar.Close, false},
		{"\tOPEN\r\n", smartcar.Open, false},
		{"", "", true},
		{"STOP", "", true},
		{"OPENED", "", true},
		{"OPEN CLOSE", "", true},
		{`{"action":"OPEN"}`, "", true},
		{"\x00OPEN", "", true},
		{strings.Repeat("x", 1<<16), "", true},
	}
	for _, tt := range tests {
		got, err := parseCommand([]byte(tt.payload))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseCommand(%.20q) = %q, %v; want %q, error %v", tt.payload, got, err, tt.want, tt.wantErr)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("parseCommand error for a %d-byte payload is %d bytes long: payloads must be cut in logs", len(tt.payload), len(err.Error()))
		}
	}
}

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic string
		want  route
	}{
		{"smartcar2mqtt/V1/charge_port/set", route{"V1", routeCommand}},
		{"smartcar2mqtt/V1/refresh", route{"V1", routeRefresh}},
		{"smartcar2mqtt/V1/charge_port/state", route{}},
		{"smartcar2mqtt/V1/charge_port/set/x", route{}},
		{"smartcar2mqtt/status", route{}},
		{"other/V1/refresh", route{}},
		{"smartcar2mqttX/V1/refresh", route{}},
		{"homeassistant/status", route{}},
	}
	for _, tt := range tests {
		if got := parseTopic("smartcar2mqtt", tt.topic); got != tt.want {
			t.Errorf("parseTopic(%q) = %+v, want %+v", tt.topic, got, tt.want)
		}
	}
}

func TestMailboxKeepsOnlyTheLatestCommand(t *testing.T) {
	m := newMailbox()
	m.putCommand(smartcar.Open)
	m.putCommand(smartcar.Close)
	if j, a := m.take(); j != jobCommand || a != smartcar.Close {
		t.Fatalf("take = %v %q, want the latest command CLOSE", j, a)
	}
	// CLOSE in flight: another CLOSE is dropped, OPEN queues, then CLOSE again cancels it.
	if m.putCommand(smartcar.Close) {
		t.Error("a command equal to the one in flight was queued")
	}
	if !m.putCommand(smartcar.Open) {
		t.Error("OPEN while CLOSE is in flight was not queued")
	}
	m.putCommand(smartcar.Close)
	if j, _ := m.take(); j != jobNone {
		t.Errorf("take = %v; the latest wish equals the command in flight, so nothing is pending", j)
	}
	m.done()
	if !m.putCommand(smartcar.Close) {
		t.Error("after done, CLOSE was not queued")
	}
}

func TestMailboxOrderAndCoalescing(t *testing.T) {
	m := newMailbox()
	m.requestRead()
	m.requestRead()
	m.putCommand(smartcar.Open)
	m.requestRepublish()
	var got []job
	for {
		j, _ := m.take()
		if j == jobNone {
			break
		}
		got = append(got, j)
	}
	want := []job{jobRepublish, jobCommand, jobRead}
	if len(got) != len(want) {
		t.Fatalf("jobs %v, want %v (reads coalesced)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("jobs %v, want %v", got, want)
		}
	}
}

func BenchmarkMailboxPutCommand(b *testing.B) {
	m := newMailbox()
	actions := []smartcar.Action{smartcar.Open, smartcar.Close}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.putCommand(actions[i%2])
		select {
		case <-m.wake:
		default:
		}
	}
}

// TestValidCommandParsesWithoutGarbage: each message of a flood goes through these
// three; a valid command must not leave garbage behind.
func TestValidCommandParsesWithoutGarbage(t *testing.T) {
	payload := []byte(" open\n")
	allocs := testing.AllocsPerRun(1000, func() {
		topic := teslaTopics.Command
		if _, ok := discovery.VehicleFromConfigTopic(prefix, topic); ok {
			t.Fatal("a command topic taken for a discovery config")
		}
		if r := parseTopic(base, topic); r.kind != routeCommand || r.vehicleID != tesla {
			t.Fatalf("parseTopic = %+v", r)
		}
		if a, err := parseCommand(payload); err != nil || a != smartcar.Open {
			t.Fatalf("parseCommand = %v, %v", a, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations per valid command, want 0", allocs)
	}
}

// A command's end is logged with what a person needs: the action, the result and
// how long it took, and for a failure TYPE:CODE and the sentence Home Assistant
// shows, not Go's error text. Each planned poll is logged at debug with its reason.
func TestCommandEndAndNextPollAreLogged(t *testing.T) {
	e, f := newFlakyEnv(t, 5*time.Second)
	logs := newLogWatch(t)
	e.log = logs.logger
	run := e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	scheduled := func(why string) {
		t.Helper()
		entry := logs.waitFor(t, "the next poll planned "+why, func(l logEntry) bool {
			return l.Level == logrus.DebugLevel && l.Message == "next poll scheduled" && l.Fields["why"] == why
		})
		if entry.Fields["vehicle"] != tesla || entry.Fields["at"] == "" || entry.Fields["in"] == "" {
			t.Errorf("the poll planned %s is logged as %v", why, entry.Fields)
		}
	}
	scheduled("after a read")

	user.publish(teslaTopics.Command, false, "OPEN")
	n = user.waitPayload(n, teslaTopics.State, "open")
	done := logs.waitFor(t, "the OPEN's end", func(l logEntry) bool { return l.Message == "charge port command finished" })
	if done.Level != logrus.InfoLevel || done.Fields["action"] != "OPEN" || done.Fields["result"] != "success" || done.Fields["duration"] == "" {
		t.Errorf("the OPEN's end is logged as %s %q %v", done.Level, done.Message, done.Fields)
	}
	scheduled("after a command")

	f.down()
	user.publish(teslaTopics.Command, false, "CLOSE")
	user.waitPayload(n, teslaTopics.State, "closing")
	failed := logs.waitFor(t, "the CLOSE's failure", func(l logEntry) bool { return l.Message == "charge port command failed" })
	if failed.Level != logrus.WarnLevel || failed.Fields["action"] != "CLOSE" || failed.Fields["result"] != "error" ||
		failed.Fields["error"] != "NETWORK:CONNECTION_REFUSED" || failed.Fields["duration"] == "" {
		t.Errorf("the CLOSE's failure is logged as %s %q %v", failed.Level, failed.Message, failed.Fields)
	}
	for k, v := range failed.Fields {
		if strings.Contains(v, "dial tcp") || strings.Contains(v, "://") {
			t.Errorf("the warning's %s shows Go's error text: %q", k, v)
		}
	}
	user.publish(teslaTopics.Refresh, false, "")
	scheduled("after a failure")

	f.up()
	run.stop(t)
	e.startBridge()
	scheduled("after a restart")
}
