package bridge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
)

// message is one publish seen by a test client.
type message struct {
	Topic    string
	Payload  string
	Retained bool
}

// recorder is an MQTT client playing Home Assistant or a user: it records every
// message it receives so tests can wait for one, with a deadline, instead of sleeping.
type recorder struct {
	t      *testing.T
	client mqtt.Client
	msgs   itest.Record[message]
}

// connectRecorder connects to url and subscribes to filters (QoS 1).
func connectRecorder(t *testing.T, url, user, pass string, filters ...string) *recorder {
	t.Helper()
	return connectRecorderWith(t, url, user, pass, nil, filters...)
}

// connectRecorderWith is connectRecorder with a hook that adjusts the client's options
// (TLS settings, say) before it connects; nil changes nothing.
func connectRecorderWith(t *testing.T, url, user, pass string, configure func(*mqtt.ClientOptions), filters ...string) *recorder {
	t.Helper()
	r := &recorder{t: t}
	opts := mqtt.NewClientOptions().AddBroker(url).SetUsername(user).SetPassword(pass).
		SetClientID(fmt.Sprintf("test-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true)
	if configure != nil {
		configure(opts)
	}
	r.client = mqtt.NewClient(opts)
	if tok := r.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("test client: connect to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { r.client.Disconnect(50) })
	for _, f := range filters {
		tok := r.client.Subscribe(f, 1, r.record)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("test client: subscribe %s: %v", f, tok.Error())
		}
		// paho reports a refused subscription only in the SUBACK's return code.
		if code := tok.(*mqtt.SubscribeToken).Result()[f]; code > 2 {
			t.Fatalf("test client: subscribe %s refused by the broker (return code %#x)", f, code)
		}
	}
	return r
}

func (r *recorder) record(_ mqtt.Client, m mqtt.Message) {
	r.msgs.Add(message{Topic: m.Topic(), Payload: string(m.Payload()), Retained: m.Retained()})
}

// snapshot is every message received so far.
func (r *recorder) snapshot() []message { return r.msgs.All() }

// waitFor blocks until ok holds for the messages received so far, or fails the test.
func (r *recorder) waitFor(what string, ok func([]message) bool) []message {
	r.t.Helper()
	waited := false
	defer func() {
		// The wait fails the test with runtime.Goexit, which runs this: show what
		// did come instead.
		r.t.Helper()
		if !waited {
			r.t.Logf("received instead:\n%s", dump(r.msgs.All()))
		}
	}()
	msgs := r.msgs.WaitFor(r.t, what, 15*time.Second, ok)
	waited = true
	return msgs
}

// waitPayload waits for a message on topic with the given payload, seen after the
// first `after` messages, and returns its index.
func (r *recorder) waitPayload(after int, topic, payload string) int {
	r.t.Helper()
	idx := -1
	r.waitFor(fmt.Sprintf("%s = %q", topic, payload), func(ms []message) bool {
		for i := after; i < len(ms); i++ {
			if ms[i].Topic == topic && ms[i].Payload == payload {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

func (r *recorder) count() int { return r.msgs.Len() }

func (r *recorder) publish(topic string, retained bool, payload string) {
	r.t.Helper()
	if tok := r.client.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("test client: publish %s: %v", topic, tok.Error())
	}
}

func dump(msgs []message) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "  %s retained=%v %.200s\n", m.Topic, m.Retained, m.Payload)
	}
	return b.String()
}
