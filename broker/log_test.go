package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// Secrets the refused clients send; no log line may show them.
const (
	secretPayload  = "PAYLOAD-NOT-FOR-LOGS"
	secretPassword = "PASSWORD-NOT-FOR-LOGS"
)

// Every refusal is one line naming the client, the user, the topic and the reason;
// never the payload or a password. Each case returns once the broker has answered,
// which it does after logging.
func TestRefusalsAreLoggedWithTheirReason(t *testing.T) {
	state := base + "/V1/charge_port/state"
	writeReason := "only the command and refresh topics under smartcar2mqtt are open to this account; the rest of smartcar2mqtt/ is the daemon's own state"
	tests := []struct {
		name   string
		do     func(t *testing.T, b *Broker)
		msg    string
		fields logrus.Fields // "remote" set means: present, any value
	}{
		{
			name: "state published by Home Assistant's account, QoS 0, MQTT 3.1.1",
			do: func(t *testing.T, b *Broker) {
				c, _ := connectRaw(t, b.Addr().String(), 4, connectParams{id: "spoofer", user: haUser, pass: haPass})
				mustNot(t)(c.publish(state, secretPayload, 0, true))
				if err := c.ping(); err != nil {
					t.Fatal(err)
				}
			},
			msg:    "publish refused",
			fields: logrus.Fields{"client": "spoofer", "user": haUser, "topic": state, "reason": writeReason},
		},
		{
			name: "state published QoS 1, MQTT 3.1.1: the connection is closed, no DISCONNECT",
			do: func(t *testing.T, b *Broker) {
				c, _ := connectRaw(t, b.Addr().String(), 4, connectParams{id: "spoofer", user: haUser, pass: haPass})
				if _, err := c.publish(state, secretPayload, 1, true); err == nil || !strings.Contains(err.Error(), "EOF") {
					t.Fatalf("publish: %v, want the connection closed", err)
				}
			},
			msg:    "publish refused",
			fields: logrus.Fields{"client": "spoofer", "user": haUser, "topic": state, "reason": writeReason},
		},
		{
			name: "state published QoS 1, MQTT 5: PUBACK not authorized",
			do: func(t *testing.T, b *Broker) {
				c, _ := connectRaw(t, b.Addr().String(), 5, connectParams{id: "spoofer5", user: haUser, pass: haPass})
				if rc, err := c.publish(state, secretPayload, 1, true); err != nil || rc != packets.ErrNotAuthorized.Code {
					t.Fatalf("PUBACK code 0x%02X, %v", rc, err)
				}
			},
			msg:    "publish refused",
			fields: logrus.Fields{"client": "spoofer5", "user": haUser, "topic": state, "reason": writeReason},
		},
		{
			name: "will on the state topic",
			do: func(t *testing.T, b *Broker) {
				connectRaw(t, b.Addr().String(), 4, connectParams{id: "willer", user: haUser, pass: haPass,
					will: &rawWill{topic: state, payload: secretPayload, retain: true}})
			},
			msg:    "will refused",
			fields: logrus.Fields{"client": "willer", "user": haUser, "topic": state, "reason": writeReason},
		},
		{
			name: "wrong password",
			do: func(t *testing.T, b *Broker) {
				if _, rc := connectRaw(t, b.Addr().String(), 4, connectParams{id: "ha", user: haUser, pass: secretPassword}); rc == 0 {
					t.Fatal("let in")
				}
			},
			msg:    "login refused",
			fields: logrus.Fields{"client": "ha", "user": haUser, "remote": "", "reason": reasonWrongLogin},
		},
		{
			name: "unknown user, MQTT 5",
			do: func(t *testing.T, b *Broker) {
				if _, rc := connectRaw(t, b.Addr().String(), 5, connectParams{id: "who", user: "mallory", pass: secretPassword}); rc == 0 {
					t.Fatal("let in")
				}
			},
			msg:    "login refused",
			fields: logrus.Fields{"client": "who", "user": "mallory", "remote": "", "reason": reasonWrongLogin},
		},
		{
			name: "no username",
			do: func(t *testing.T, b *Broker) {
				if _, rc := connectRaw(t, b.Addr().String(), 4, connectParams{id: "anon"}); rc == 0 {
					t.Fatal("let in")
				}
			},
			msg:    "login refused",
			fields: logrus.Fields{"client": "anon", "user": "", "remote": "", "reason": reasonNoLogin},
		},
		{
			name: "the daemon's account on the public listener",
			do: func(t *testing.T, b *Broker) {
				creds := b.BridgeCredentials()
				if _, rc := connectRaw(t, b.Addr().String(), 4, connectParams{id: "borrowed", user: creds.Username, pass: creds.Password}); rc == 0 {
					t.Fatal("let in")
				}
			},
			msg:    "login refused",
			fields: logrus.Fields{"client": "borrowed", "remote": "", "reason": reasonBridgeOnly},
		},
		{
			name: "invalid filter, MQTT 3.1.1",
			do: func(t *testing.T, b *Broker) {
				c, _ := connectRaw(t, b.Addr().String(), 4, connectParams{id: "sub4", user: haUser, pass: haPass})
				if code, err := c.subscribe("a/#/b"); err != nil || code != 0x80 {
					t.Fatalf("SUBACK code 0x%02X, %v", code, err)
				}
			},
			msg:    "subscribe refused",
			fields: logrus.Fields{"client": "sub4", "user": haUser, "topic": "a/#/b", "reason": reasonInvalidTopic},
		},
		{
			name: "invalid filter, MQTT 5",
			do: func(t *testing.T, b *Broker) {
				c, _ := connectRaw(t, b.Addr().String(), 5, connectParams{id: "sub5", user: haUser, pass: haPass})
				if code, err := c.subscribe("b/#/c"); err != nil || code != packets.ErrTopicFilterInvalid.Code {
					t.Fatalf("SUBACK code 0x%02X, %v", code, err)
				}
			},
			msg:    "subscribe refused",
			fields: logrus.Fields{"client": "sub5", "user": haUser, "topic": "b/#/c", "reason": reasonInvalidTopic},
		},
		{
			name: "client id taken over",
			do: func(t *testing.T, b *Broker) {
				connectRaw(t, b.Addr().String(), 4, connectParams{id: "twin", user: haUser, pass: haPass})
				connectRaw(t, b.Addr().String(), 4, connectParams{id: "twin", user: haUser, pass: haPass})
			},
			msg:    "client id taken over",
			fields: logrus.Fields{"client": "twin", "user": haUser, "old_remote": "", "new_remote": "", "reason": reasonTakenOver},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, hook := logtest.NewNullLogger()
			b := startBroker(t, Options{Log: logger})
			tt.do(t, b)

			var found *logrus.Entry
			for _, e := range hook.AllEntries() {
				if e.Message == tt.msg {
					found = e
				}
			}
			if found == nil {
				t.Fatalf("no %q line in %s", tt.msg, describeEntries(hook.AllEntries()))
			}
			if found.Level != logrus.WarnLevel {
				t.Errorf("level %s, want warning", found.Level)
			}
			for k, want := range tt.fields {
				got, ok := found.Data[k]
				if !ok || (want != "" && got != want) {
					t.Errorf("field %s = %v, want %q", k, got, want)
				}
			}
			if tt.name == "client id taken over" && found.Data["old_remote"] == found.Data["new_remote"] {
				t.Errorf("both ends are %v", found.Data["old_remote"])
			}
			b.Close()
			noSecrets(t, hook.AllEntries(), b.BridgeCredentials().Password)
		})
	}
}

func mustNot(t *testing.T) func(byte, error) {
	return func(_ byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// noSecrets fails if any entry shows a payload or password the tests sent.
func noSecrets(t *testing.T, entries []*logrus.Entry, more ...string) {
	t.Helper()
	for _, e := range entries {
		line := fmt.Sprint(e.Message, e.Data)
		for _, s := range append([]string{secretPayload, secretPassword, haPass}, more...) {
			if strings.Contains(line, s) {
				t.Errorf("a log line shows a secret: %s", line)
			}
		}
	}
}

func describeEntries(entries []*logrus.Entry) string {
	var lines []string
	for _, e := range entries {
		lines = append(lines, fmt.Sprintf("%s %q %v", e.Level, e.Message, e.Data))
	}
	return "[\n" + strings.Join(lines, "\n") + "\n]"
}

// mochi's own records: packets are shown by type and topic, and what the access
// hook reported already, or is how connections end, is not repeated as a warning.
func TestSlogHandlerShowsNoSecretsAndNoRepeats(t *testing.T) {
	publish := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName: "smartcar2mqtt/V1/charge_port/state", Payload: []byte(secretPayload)}
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ClientIdentifier: "ha", Username: []byte(haUser), Password: []byte(secretPassword)}}
	tests := []struct {
		name  string
		level slog.Level
		msg   string
		attrs []any
		want  string // the logged message; "" for nothing at warning level
	}{
		{"refused publish, reported by the access hook", slog.LevelWarn, "error processing packet",
			[]any{"error", packets.ErrNotAuthorized, "client", "spoofer", "pk", publish}, ""},
		{"refused login, reported by the access hook", slog.LevelWarn, "",
			[]any{"listener", "mqtt", "error", packets.ErrBadUsernameOrPassword}, ""},
		{"a client leaving", slog.LevelWarn, "", []any{"error", fmt.Errorf("read connection: %w", io.EOF)}, ""},
		{"our own stop", slog.LevelWarn, "", []any{"error", packets.ErrServerShuttingDown}, ""},
		{"a take-over", slog.LevelWarn, "", []any{"error", packets.ErrSessionTakenOver}, ""},
		{"another packet error", slog.LevelWarn, "error processing packet",
			[]any{"error", packets.ErrProtocolViolation, "client", "c", "pk", publish}, "error processing packet"},
		{"a connection failing", slog.LevelWarn, "", []any{"listener", "mqtt", "error", errors.New("read connection: i/o timeout")}, "client connection ended"},
		{"a connect packet", slog.LevelError, "bad connect", []any{"packet", connect}, "bad connect"},
		{"a will", slog.LevelError, "parse will error", []any{"will", mqtt.Will{TopicName: "t", Payload: []byte(secretPayload)}}, "parse will error"},
		{"raw bytes", slog.LevelError, "odd", []any{"data", []byte(secretPayload)}, "odd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, hook := logtest.NewNullLogger()
			log := slog.New(newSlogHandler(logger, slog.LevelWarn))
			log.Log(context.Background(), tt.level, tt.msg, tt.attrs...)
			entries := hook.AllEntries()
			switch {
			case tt.want == "" && len(entries) > 0:
				t.Errorf("logged %s", describeEntries(entries))
			case tt.want != "" && (len(entries) != 1 || entries[0].Message != tt.want):
				t.Errorf("logged %s, want one %q", describeEntries(entries), tt.want)
			}
			noSecrets(t, entries)
		})
	}
	// The packet is still named, by type and topic.
	logger, hook := logtest.NewNullLogger()
	slog.New(newSlogHandler(logger, slog.LevelWarn)).Warn("error processing packet", "error", packets.ErrProtocolViolation, "pk", publish)
	if got := fmt.Sprint(hook.LastEntry().Data["pk"]); !strings.Contains(got, "Publish") || !strings.Contains(got, publish.TopicName) {
		t.Errorf("packet shown as %q", got)
	}
}
