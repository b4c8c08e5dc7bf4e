package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// BenchmarkWebhookToState is issue 12's latency: a signed VEHICLE_STATE
// delivery POSTed to the daemon (built as the Dockerfile builds it, with
// its embedded broker) until Home Assistant's subscriber has plugged_in,
// against a bare relay measured in the same run on the same broker: an
// HTTP handler that checks the signature, reads the plug value and
// publishes it. Each iteration sends one delivery to each, alternating the
// plug, and times POST → message.
//
// paced sends one pair every 20 ms, still far faster than a car changes;
// back-to-back sends the next pair as soon as the last message came, so a
// delivery may wait for the worker to finish keeping the one before in
// DATA_DIR (an fsync'd write, after that one was published).
//
//	go test -run '^$' -bench WebhookToState -benchtime 200x .
func BenchmarkWebhookToState(b *testing.B) {
	for _, pace := range []time.Duration{20 * time.Millisecond, 0} {
		name := "paced"
		if pace == 0 {
			name = "back-to-back"
		}
		b.Run(name, func(b *testing.B) { benchWebhookToState(b, pace) })
	}
}

func benchWebhookToState(b *testing.B, pace time.Duration) {
	w := newPerfWorld(b, smartcarsim.Options{})
	httpAddr, brokerAddr := freeAddr(b), freeAddr(b)
	d := &daemonRun{cmd: exec.Command(w.bin, "run"), stderr: &itest.Output{}, exited: make(chan struct{})}
	d.cmd.Env = []string{
		"SMARTCAR_CLIENT_ID=" + perfAPIClientID, "SMARTCAR_CLIENT_SECRET=" + perfAPIClientSecret,
		"SMARTCAR_API_URL=" + w.srv.URL + "/v3", "SMARTCAR_TOKEN_URL=" + w.srv.URL + "/oauth2/token",
		"DATA_DIR=" + w.dataDir, "HTTP_LISTEN=" + httpAddr, "SMARTCAR_WEBHOOK_SECRET=" + hookSecret,
		"BROKER_LISTEN=" + brokerAddr, "BROKER_ALLOW_ANONYMOUS=true", "LOG_LEVEL=warn",
	}
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		d.cmd.Wait()
		d.stderr.Close()
		close(d.exited)
	}()
	b.Cleanup(func() { d.stop(b) })
	// Settled once both cars' cold-start reads are done.
	ctx, cancel := context.WithTimeout(b.Context(), 20*time.Second)
	defer cancel()
	for _, car := range []string{smartcarsim.TeslaID, smartcarsim.OtherID} {
		if _, err := w.sim.WaitRequest(ctx, func(r smartcarsim.Request) bool {
			return isRead(r) && strings.Contains(r.Path, car) && r.Status == http.StatusOK
		}); err != nil {
			b.Fatalf("no read of %s: %v\n%s", car, err, d.stderr.Text())
		}
	}
	settled := len(w.sim.Requests())

	brokerURL := "tcp://" + brokerAddr
	type arrival struct {
		topic, payload string
		at             time.Time
	}
	arrived := make(chan arrival, 16)
	ha := watcher(b, brokerURL, "ha")
	const relayTopic = "relay/plugged_in"
	for _, topic := range []string{hookTopics.PluggedIn, relayTopic} {
		if tok := ha.Subscribe(topic, 0, func(_ mqtt.Client, m mqtt.Message) {
			if !m.Retained() {
				arrived <- arrival{m.Topic(), string(m.Payload()), time.Now()}
			}
		}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
	}

	// The bare relay: what any webhook-to-MQTT bridge must do at least.
	relayMQTT := watcher(b, brokerURL, "relay")
	relay := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mac := hmac.New(sha256.New, []byte(hookSecret))
		mac.Write(body)
		got, _ := hex.DecodeString(r.Header.Get("SC-Signature"))
		var ev struct {
			Data struct {
				Signals []struct {
					Code string `json:"code"`
					Body struct {
						Value bool `json:"value"`
					} `json:"body"`
				} `json:"signals"`
			} `json:"data"`
		}
		if !hmac.Equal(got, mac.Sum(nil)) || json.Unmarshal(body, &ev) != nil {
			http.Error(rw, "bad delivery", http.StatusBadRequest)
			return
		}
		for _, s := range ev.Data.Signals {
			if s.Code == "charge-ischargingcableconnected" {
				relayMQTT.Publish(relayTopic, 0, true, map[bool]string{true: "ON", false: "OFF"}[s.Body.Value])
			}
		}
		rw.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(relay.Close)

	client := &http.Client{Timeout: 10 * time.Second}
	timeOne := func(url, topic string, on bool, n int) time.Duration {
		want := map[bool]string{true: "ON", false: "OFF"}[on]
		body := stateEvent("bench-"+topic+"-"+time.Now().Format(time.RFC3339Nano), hookCar, hookUser, plug(on, time.Now()))
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("SC-Signature", sign(hookSecret, body))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatalf("POST %s: %v", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("POST %s: %s", url, resp.Status)
		}
		deadline := time.After(10 * time.Second)
		for {
			select {
			case a := <-arrived:
				if a.topic == topic && a.payload == want {
					return a.at.Sub(start)
				}
			case <-deadline:
				b.Fatalf("delivery %d: no %s %s within 10 s:\n%s", n, topic, want, d.stderr.Text())
			}
		}
	}

	var daemon, bare []time.Duration
	n := 0
	var tick <-chan time.Time
	if pace > 0 {
		t := time.NewTicker(pace)
		defer t.Stop()
		tick = t.C
	}
	for b.Loop() {
		if tick != nil {
			<-tick
		}
		n++
		on := n%2 == 1
		daemon = append(daemon, timeOne("http://"+httpAddr+"/webhooks/smartcar", hookTopics.PluggedIn, on, n))
		bare = append(bare, timeOne(relay.URL, relayTopic, on, n))
	}
	calls := len(w.sim.Requests()) - settled
	p := func(ds []time.Duration, q float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(q*float64(len(s))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(p(daemon, 0.5), "daemon-p50-ms")
	b.ReportMetric(p(daemon, 0.99), "daemon-p99-ms")
	b.ReportMetric(p(bare, 0.5), "relay-p50-ms")
	b.ReportMetric(p(bare, 0.99), "relay-p99-ms")
	b.ReportMetric(p(daemon, 0.5)/p(bare, 0.5), "p50-vs-relay")
	b.ReportMetric(float64(calls), "smartcar-calls")
}
