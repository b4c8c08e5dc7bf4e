package status

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

const testSecret = "amt-test-3b9f"

// takes records what the receiver hands on, and answers with err.
type takes struct {
	mu  sync.Mutex
	got []bridge.Delivery
	err error
}

func (t *takes) Deliver(d bridge.Delivery) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	t.got = append(t.got, d)
	return nil
}

func newReceiver(t *testing.T, to Deliverer) (*httptest.Server, *Metrics, *test.Hook) {
	t.Helper()
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	m := NewMetrics()
	srv := httptest.NewServer(Handler(Routes{Metrics: m, Webhook: NewWebhook(WebhookOptions{Secret: testSecret, To: to, Metrics: m, Log: log})}))
	t.Cleanup(srv.Close)
	return srv, m, hook
}

func metricsPage(t *testing.T, m *Metrics) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// v2Delivery is a delivery of a webhook made for a legacy app, in the
// v2.0 format Smartcar documented for it.
const v2Delivery = `{"version":"2.0","webhookId":"w1","eventName":"eventBased","mode":"live",` +
	`"payload":{"vehicles":[{"vehicleId":"v1","requestId":"r1","data":[{"path":"/charge","body":{"isPluggedIn":true,"state":"CHARGING"}}]}]}}`

const stateBody = `{"eventId":"e1","eventType":"VEHICLE_STATE","vehicleId":"v1","data":{"user":{"id":"u1"},"vehicle":{"id":"v1"},` +
	`"signals":[{"code":"charge-ischargingcableconnected","body":{"value":true},"meta":{"oemUpdatedAt":1758668712404}}]}}`

func TestWebhookReceiver(t *testing.T) {
	signed := func(body string) string { return smartcar.WebhookSignature(testSecret, []byte(body)) }
	for _, tt := range []struct {
		name        string
		method      string
		contentType string
		body        string
		signature   string
		deliverErr  error
		status      int
		delivered   int
		metric      string // the sample /metrics must have at 1
	}{
		{name: "a signed delivery", body: stateBody, signature: signed(stateBody), status: 200, delivered: 1},
		{name: "JSON with a charset", contentType: "application/json; charset=utf-8", body: stateBody, signature: signed(stateBody), status: 200, delivered: 1},
		{name: "no signature", body: stateBody, status: 401, metric: `type="unknown",outcome="bad_signature"`},
		{name: "a signature with another token", body: stateBody, signature: smartcar.WebhookSignature("other", []byte(stateBody)), status: 401},
		{name: "signed, truncated", body: stateBody[:40], signature: signed(stateBody[:40]), status: 400, metric: `type="unknown",outcome="bad_request"`},
		{name: "signed, not an event", body: `{"hello":1}`, signature: signed(`{"hello":1}`), status: 400},
		{name: "signed, in the v2.0 format", body: v2Delivery, signature: signed(v2Delivery), status: 200, metric: `type="unknown",outcome="v2_format"`},
		{name: "signed, a type not used here", body: `{"eventType":"VEHICLE_DISCONNECTED","vehicleId":"v1"}`, signature: signed(`{"eventType":"VEHICLE_DISCONNECTED","vehicleId":"v1"}`), status: 200, metric: `type="other",outcome="ignored"`},
		{name: "GET", method: http.MethodGet, status: 405, metric: `type="unknown",outcome="method_not_allowed"`},
		{name: "form data", contentType: "application/x-www-form-urlencoded", body: "a=b", status: 415, metric: `type="unknown",outcome="unsupported_media_type"`},
		{name: "unknown vehicle", body: stateBody, signature: signed(stateBody), deliverErr: bridge.ErrUnknownVehicle, status: 200, metric: `type="VEHICLE_STATE",outcome="unknown_vehicle"`},
		{name: "backlog", body: stateBody, signature: signed(stateBody), deliverErr: bridge.ErrDeliveryBacklog, status: 503, metric: `type="VEHICLE_STATE",outcome="busy"`},
		{name: "stopping", body: stateBody, signature: signed(stateBody), deliverErr: bridge.ErrNotServing, status: 503},
	} {
		t.Run(tt.name, func(t *testing.T) {
			to := &takes{err: tt.deliverErr}
			srv, m, _ := newReceiver(t, to)
			method, contentType := tt.method, tt.contentType
			if method == "" {
				method = http.MethodPost
			}
			if contentType == "" && method == http.MethodPost {
				contentType = "application/json"
			}
			req, _ := http.NewRequest(method, srv.URL+"/webhooks/smartcar", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", contentType)
			if tt.signature != "" {
				req.Header.Set("SC-Signature", tt.signature)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 405 && resp.Header.Get("Allow") != http.MethodPost {
				t.Errorf("405 without Allow: POST")
			}
			if len(to.got) != tt.delivered {
				t.Errorf("%d deliveries handed on, want %d", len(to.got), tt.delivered)
			}
			if tt.delivered > 0 {
				d := to.got[0]
				if d.Event.VehicleID != "v1" || d.Event.UserID != "u1" || d.Received.IsZero() || d.Done == nil {
					t.Errorf("delivery %+v", d)
				}
				d.Done(bridge.DeliveryApplied)
				tt.metric = `type="VEHICLE_STATE",outcome="applied"`
			}
			if tt.metric != "" && !strings.Contains(metricsPage(t, m), "smartcar2mqtt_webhook_deliveries_total{"+tt.metric+"} 1\n") {
				t.Errorf("/metrics lacks %s at 1:\n%s", tt.metric, metricsPage(t, m))
			}
		})
	}
}

func TestWebhookReceiverVerify(t *testing.T) {
	srv, m, hook := newReceiver(t, &takes{})
	post := func(body, signature string) (int, string, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/smartcar", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if signature != "" {
			req.Header.Set("SC-Signature", signature)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	want := smartcar.WebhookSignature(testSecret, []byte("ch-1"))
	for _, body := range []string{
		`{"eventId":"v","eventType":"VERIFY","data":{"challenge":"ch-1"}}`,
		`{"version":"2.0","eventName":"verify","payload":{"challenge":"ch-1"}}`,
	} {
		for _, signature := range []string{"", smartcar.WebhookSignature(testSecret, []byte(body)), "not-a-signature"} {
			code, contentType, answer := post(body, signature)
			var a map[string]string
			if code != 200 || contentType != "application/json" || json.Unmarshal([]byte(answer), &a) != nil || a["challenge"] != want || len(a) != 1 {
				t.Errorf("VERIFY %s signed %q: %d %s %q", body, signature, code, contentType, answer)
			}
		}
	}
	// Unsigned, a challenge that is a delivery: its HMAC would sign it.
	challenge, _ := json.Marshal(map[string]any{"eventType": "VERIFY", "data": map[string]string{"challenge": stateBody}})
	if code, _, answer := post(string(challenge), ""); code != 400 || strings.Contains(answer, smartcar.WebhookSignature(testSecret, []byte(stateBody))) {
		t.Errorf("a delivery as the challenge: %d %q, want 400 without its signature", code, answer)
	}
	// Signed by Smartcar, the same challenge is Smartcar's own business.
	if code, _, _ := post(string(challenge), smartcar.WebhookSignature(testSecret, challenge)); code != 200 {
		t.Errorf("a signed VERIFY: %d, want 200", code)
	}
	if page := metricsPage(t, m); !strings.Contains(page, `{type="VERIFY",outcome="verified"} 7`) || !strings.Contains(page, `{type="VERIFY",outcome="refused_challenge"} 1`) {
		t.Errorf("/metrics:\n%s", page)
	}
	for _, e := range hook.AllEntries() {
		if line, _ := e.String(); strings.Contains(line, testSecret) || strings.Contains(line, want) {
			t.Errorf("the log shows the token or an answer: %s", line)
		}
	}
}

func TestWebhookReceiverBounds(t *testing.T) {
	to := &takes{}
	srv, _, hook := newReceiver(t, to)
	huge := `{"eventType":"VEHICLE_STATE","vehicleId":"v1","data":{"x":"` + strings.Repeat("a", MaxWebhookBody) + `"}}`
	sig := smartcar.WebhookSignature(testSecret, []byte(huge))
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/smartcar", strings.NewReader(huge))
		if chunked {
			req.ContentLength, req.Body = -1, io.NopCloser(strings.NewReader(huge))
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("SC-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked %v: %d, want 413", chunked, resp.StatusCode)
		}
	}
	// Bad signatures: one warning, however many, never the body or signature.
	for i := range 5 {
		body := `{"eventType":"VEHICLE_STATE","vehicleId":"v1","marker":"m-` + strings.Repeat("z", i) + `"}`
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/smartcar", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("SC-Signature", "ab"+strings.Repeat("0", 62))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	warnings := 0
	for _, e := range hook.AllEntries() {
		line, _ := e.String()
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "refused a webhook delivery") {
			warnings++
		}
		if strings.Contains(line, "marker") || strings.Contains(line, "ab000000") {
			t.Errorf("the log shows what was sent: %s", line)
		}
	}
	if warnings != 1 {
		t.Errorf("%d warnings for five bad signatures, want 1", warnings)
	}
	if len(to.got) != 0 {
		t.Errorf("%d deliveries handed on", len(to.got))
	}
}

// A webhook that sends what the daemon cannot read sends it again and
// again: each kind is one warning, however many come.
func TestWebhookReceiverWarnsOncePerKind(t *testing.T) {
	to := &takes{}
	srv, _, hook := newReceiver(t, to)
	unreadable := `{"eventType":"VEHICLE_STATE","data":{"signals":[]}}` // no vehicle
	for range 4 {
		for _, body := range []string{unreadable, v2Delivery} {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/smartcar", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("SC-Signature", smartcar.WebhookSignature(testSecret, []byte(body)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	count := map[string]int{}
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			count[e.Message]++
		}
	}
	if len(count) != 2 {
		t.Errorf("warnings %v, want two kinds", count)
	}
	for msg, n := range count {
		if n != 1 {
			t.Errorf("%d times: %s", n, msg)
		}
	}
	if len(to.got) != 0 {
		t.Errorf("%d deliveries handed on", len(to.got))
	}
}
