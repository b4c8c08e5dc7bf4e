package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// The webhook receiver through the whole daemon, as Smartcar and Home
// Assistant see it: signed deliveries POSTed over real HTTP, the state read
// back over MQTT from the embedded broker or from mosquitto, Smartcar played
// by the simulator, whose request log shows every call the daemon made.

const (
	hookSecret = "amt-7c0ffee-webhook-token"
	hookUser   = smartcarsim.UserID
	hookCar    = smartcarsim.TeslaID
)

// sign is SC-Signature as Smartcar computes it, written here apart from the
// daemon's code: hex HMAC-SHA256 of the raw body, keyed with the token.
func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// signal is one entry of a VEHICLE_STATE's data.signals.
type hookSignal struct {
	code string
	body string    // JSON
	at   time.Time // oemUpdatedAt; zero leaves meta out
	err  bool      // status ERROR (the stale body stays)
}

func plug(on bool, at time.Time) hookSignal {
	return hookSignal{code: "charge-ischargingcableconnected", body: `{"value":` + strconv.FormatBool(on) + `}`, at: at}
}

func door(open bool, at time.Time) hookSignal {
	return hookSignal{code: "charge-ischargingportflapopen", body: `{"value":` + strconv.FormatBool(open) + `}`, at: at}
}

func limit(percent int, at time.Time) hookSignal {
	return hookSignal{code: "charge-chargelimits", body: `{"activeLimit":` + strconv.Itoa(percent) + `,"values":[{"type":"GLOBAL","limit":` + strconv.Itoa(percent) + `}]}`, at: at}
}

// stateEvent is a VEHICLE_STATE event in Smartcar's documented shape.
func stateEvent(eventID, vehicleID, userID string, signals ...hookSignal) []byte {
	var list []map[string]any
	for _, s := range signals {
		status := map[string]any{"value": "SUCCESS"}
		if s.err {
			status = map[string]any{"value": "ERROR", "error": map[string]any{"type": "VEHICLE_STATE", "code": "UNREACHABLE"}}
		}
		entry := map[string]any{"code": s.code, "group": "Charge", "body": json.RawMessage(s.body), "status": status}
		if !s.at.IsZero() {
			entry["meta"] = map[string]any{"oemUpdatedAt": s.at.UnixMilli(), "retrievedAt": s.at.UnixMilli()}
		}
		list = append(list, entry)
	}
	body, err := json.Marshal(map[string]any{
		"eventId": eventID, "eventType": "VEHICLE_STATE", "vehicleId": vehicleID,
		"data": map[string]any{"user": map[string]any{"id": userID}, "vehicle": map[string]any{"id": vehicleID, "make": "TESLA"}, "signals": list},
		"meta": map[string]any{"version": "4.0", "deliveryId": eventID + "-d", "deliveredAt": time.Now().UnixMilli()},
	})
	if err != nil {
		panic(err)
	}
	return body
}

// errorEvent is a VEHICLE_ERROR event with the given errors (JSON objects),
// in Smartcar's documented shape.
func errorEvent(eventID, vehicleID, userID string, errors ...string) []byte {
	return []byte(`{"eventId":"` + eventID + `","eventType":"VEHICLE_ERROR","data":{"user":{"id":"` + userID + `"},` +
		`"vehicle":{"id":"` + vehicleID + `","make":"TESLA"},"errors":[` + strings.Join(errors, ",") + `]},"meta":{"version":"4.0"}}`)
}

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// hookWorld is one daemon with the webhook receiver on, and Home Assistant
// watching its vehicle's topics.
type hookWorld struct {
	t        *testing.T
	sim      *smartcarsim.Simulator
	d        *child
	httpAddr string
	url      string
	got      *itest.Record[mqttMsg]
	mark     int // the simulator's request count once the daemon is settled
	eventN   int
}

type mqttMsg struct{ topic, payload string }

var hookTopics = discovery.VehicleTopics("smartcar2mqtt", hookCar)

// forEachHookBroker runs test against a fresh daemon per broker: the
// embedded one, and mosquitto (skipped without it unless REQUIRE_MOSQUITTO=1).
func forEachHookBroker(t *testing.T, sim smartcarsim.Options, test func(t *testing.T, w *hookWorld)) {
	for _, broker := range []string{"embedded", "mosquitto"} {
		t.Run(broker, func(t *testing.T) {
			test(t, newHookWorld(t, broker, sim))
		})
	}
}

func newHookWorld(t *testing.T, broker string, opts smartcarsim.Options, env ...string) *hookWorld {
	t.Helper()
	opts.APIClientID, opts.APIClientSecret, opts.ApplicationID = "client_e2e", "api-secret-Kk8", "app-e2e"
	sim := smartcarsim.New(opts)
	srv := httptestServer(t, sim)
	w := &hookWorld{t: t, sim: sim, httpAddr: freeAddr(t), got: &itest.Record[mqttMsg]{}}
	w.url = "http://" + w.httpAddr + "/webhooks/smartcar"
	env = append(v3Env(srv, t.TempDir(), "HTTP_LISTEN="+w.httpAddr, "SMARTCAR_WEBHOOK_SECRET="+hookSecret, "LOG_LEVEL=debug"), env...)
	var brokerURL string
	if broker == "mosquitto" {
		m := itest.NewMosquitto(t, "tcp", "")
		brokerURL = m.URL()
		env = append(env, "MQTT_URL="+brokerURL)
	} else {
		addr := freeAddr(t)
		brokerURL = "tcp://" + addr
		env = append(env, "BROKER_LISTEN="+addr, "BROKER_ALLOW_ANONYMOUS=true")
	}
	w.d = startMain(t, env, "run")
	w.d.stderr.WaitLine(t, "ready: taking charge port commands", 20*time.Second)

	ha := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("ha-hooks-" + broker))
	if tok := ha.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", brokerURL, tok.Error())
	}
	t.Cleanup(func() { ha.Disconnect(50) })
	if tok := ha.Subscribe("smartcar2mqtt/#", 0, func(_ mqtt.Client, m mqtt.Message) {
		w.got.Add(mqttMsg{m.Topic(), string(m.Payload())})
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// The cold start's reads, one per car: the state the deliveries then change.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, car := range []string{smartcarsim.TeslaID, smartcarsim.OtherID} {
		if _, err := sim.WaitRequest(ctx, func(r smartcarsim.Request) bool {
			return strings.HasSuffix(r.Path, "/vehicles/"+car+"/signals") && r.Status == http.StatusOK
		}); err != nil {
			t.Fatalf("no cold-start read of %s: %v\n%s", car, err, w.d.stderr.Text())
		}
	}
	w.waitMsg(0, "the first read", hookTopics.LastRead, func(p string) bool { return p != "None" })
	w.mark = len(sim.Requests())
	return w
}

// waitMsg waits for a message on topic, from index after, whose payload
// satisfies ok, and returns its index.
func (w *hookWorld) waitMsg(after int, what, topic string, ok func(string) bool) int {
	w.t.Helper()
	found := -1
	w.got.WaitFor(w.t, what, 20*time.Second, func(ms []mqttMsg) bool {
		for i := after; i < len(ms); i++ {
			if ms[i].topic == topic && ok(ms[i].payload) {
				found = i
				return true
			}
		}
		return false
	})
	return found
}

func is(want string) func(string) bool { return func(p string) bool { return p == want } }

// payloads are the payloads on topic between indexes from and to.
func (w *hookWorld) payloads(topic string, from, to int) []string {
	var out []string
	for _, m := range w.got.All()[from:to] {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

// post sends body as a delivery with the given signature ("" for none).
func (w *hookWorld) post(body []byte, signature string) (int, string) {
	w.t.Helper()
	return w.request(http.MethodPost, "application/json", body, signature, int64(len(body)))
}

func (w *hookWorld) request(method, contentType string, body []byte, signature string, length int64) (int, string) {
	w.t.Helper()
	req, err := http.NewRequest(method, w.url, bytes.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	req.ContentLength = length
	if length < 0 {
		req.Body = io.NopCloser(bytes.NewReader(body)) // chunked: no length said
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if signature != "" {
		req.Header.Set("SC-Signature", signature)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, w.url, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// deliver posts a signed delivery and wants 200.
func (w *hookWorld) deliver(body []byte) {
	w.t.Helper()
	if code, answer := w.post(body, sign(hookSecret, body)); code != http.StatusOK {
		w.t.Fatalf("delivery answered %d %s", code, answer)
	}
}

// nextID is a fresh eventId.
func (w *hookWorld) nextID() string {
	w.eventN++
	return fmt.Sprintf("evt-%s-%d", w.t.Name(), w.eventN)
}

// probe delivers a charge limit nobody else sends and waits for it: the
// worker takes deliveries in order, so everything sent before has been
// taken once it shows. It returns the index of the limit's message.
func (w *hookWorld) probe(percent int) int {
	w.t.Helper()
	n := w.got.Len()
	w.deliver(stateEvent(w.nextID(), hookCar, hookUser, limit(percent, time.Now())))
	return w.waitMsg(n, "the probe's charge limit", hookTopics.ChargeLimit, is(strconv.Itoa(percent)))
}

// metric is the value of one sample of /metrics, 0 when absent.
func (w *hookWorld) metric(sample string) float64 {
	w.t.Helper()
	page := fetchPages(w.t, w.httpAddr, "/metrics")[0]
	for line := range strings.SplitSeq(page, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				w.t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	return 0
}

func deliveries(typ, outcome string) string {
	return `smartcar2mqtt_webhook_deliveries_total{type="` + typ + `",outcome="` + outcome + `"}`
}

// callsSinceSettled are the Smartcar requests since the daemon settled.
func (w *hookWorld) callsSinceSettled() []smartcarsim.Request {
	return w.sim.Requests()[w.mark:]
}

// responsive checks the daemon still serves: /healthz says ok, and a
// delivery still shows in Home Assistant.
func (w *hookWorld) responsive(percent int) {
	w.t.Helper()
	if page := fetchPages(w.t, w.httpAddr, "/healthz")[0]; !strings.Contains(page, `"status":"ok"`) {
		w.t.Errorf("/healthz: %s", page)
	}
	w.probe(percent)
}

func TestWebhookVerifyRoundTrip(t *testing.T) {
	forEachHookBroker(t, smartcarsim.Options{}, func(t *testing.T, w *hookWorld) {
		// As Smartcar does when the webhook is created in its dashboard.
		w.sim.SetWebhook(w.url, hookSecret)
		if err := w.sim.VerifyWebhook(t.Context()); err != nil {
			t.Fatalf("the simulated Smartcar's VERIFY: %v", err)
		}
		w.d.stderr.WaitLine(t, "answered Smartcar's webhook VERIFY challenge", 10*time.Second)
		// Signed or not, the answer is the challenge's HMAC, as JSON.
		for _, signed := range []bool{false, true} {
			body := []byte(`{"eventId":"v-1","eventType":"VERIFY","data":{"challenge":"9f8e-challenge"},"meta":{"version":"4.0"}}`)
			signature := ""
			if signed {
				signature = sign(hookSecret, body)
			}
			code, answer := w.post(body, signature)
			var a struct {
				Challenge string `json:"challenge"`
			}
			if code != http.StatusOK || json.Unmarshal([]byte(answer), &a) != nil || a.Challenge != sign(hookSecret, []byte("9f8e-challenge")) {
				t.Errorf("signed %v: VERIFY answered %d %q", signed, code, answer)
			}
		}
		// A challenge that is a delivery would have the daemon sign it.
		forged := stateEvent("forged-1", hookCar, hookUser, plug(false, time.Now()))
		challenge, _ := json.Marshal(map[string]any{"eventType": "VERIFY", "data": map[string]string{"challenge": string(forged)}})
		if code, answer := w.post(challenge, ""); code != http.StatusBadRequest || strings.Contains(answer, sign(hookSecret, forged)) {
			t.Errorf("an unsigned VERIFY with a delivery for a challenge: %d %q, want 400 and no signature", code, answer)
		}
		if n := w.metric(deliveries("VERIFY", "verified")); n != 3 {
			t.Errorf("%v VERIFY counted as verified, want 3", n)
		}
		if calls := w.callsSinceSettled(); len(calls) != 0 {
			t.Errorf("VERIFY made Smartcar calls: %+v", calls)
		}
	})
}

// A plug-in at the car, delivered by the simulated Smartcar's webhook:
// plugged_in ON and the door open in Home Assistant, with no Smartcar call.
func TestWebhookPlugInWithoutACall(t *testing.T) {
	forEachHookBroker(t, smartcarsim.Options{}, func(t *testing.T, w *hookWorld) {
		n := w.got.Len()
		w.sim.SetWebhook(w.url, hookSecret)
		w.sim.SetPluggedIn(hookCar, true)
		d, err := w.sim.DeliverState(t.Context(), hookCar)
		if err != nil {
			t.Fatalf("delivery: %v", err)
		}
		w.waitMsg(n, "plugged in", hookTopics.PluggedIn, is("ON"))
		w.waitMsg(n, "the door open", hookTopics.State, is("open"))
		w.waitMsg(n, "charging", hookTopics.ChargingState, is("CHARGING"))
		if calls := w.callsSinceSettled(); len(calls) != 0 {
			t.Errorf("the delivery cost Smartcar calls: %+v", calls)
		}
		if got := w.metric(deliveries("VEHICLE_STATE", "applied")); got != 1 {
			t.Errorf("applied deliveries %v, want 1", got)
		}
		w.d.stderr.WaitLine(t, d.EventID, 10*time.Second) // the debug line of the delivery
		w.d.stderr.WaitLine(t, "the car is now read once a day", 10*time.Second)
		if page := fetchPages(t, w.httpAddr, "/metrics")[0]; strings.Contains(page, hookSecret) {
			t.Error("/metrics shows the webhook secret")
		}
	})
}

// Only deliveries that carry the door back polling off, and an error about
// signals the daemon does not read leaves the car's error alone: a webhook
// set up without the door, or one that sends nothing but such errors, must
// neither leave the door a day old nor show the car in error.
func TestWebhookOnlyTheDoorBacksPollingOff(t *testing.T) {
	forEachHookBroker(t, smartcarsim.Options{}, func(t *testing.T, w *hookWorld) {
		n := w.got.Len()
		w.deliver(errorEvent(w.nextID(), hookCar, hookUser,
			`{"type":"COMPATIBILITY","code":"VEHICLE_NOT_CAPABLE","state":"ERROR","signals":["VehicleIdentification.Nickname","Closure.IsLocked"]}`))
		w.deliver(stateEvent(w.nextID(), hookCar, hookUser, plug(true, time.Now())))
		w.waitMsg(n, "plugged in", hookTopics.PluggedIn, is("ON"))
		w.probe(61)
		// Logged after everything before it is taken, the probe's included.
		last := w.nextID()
		w.deliver(stateEvent(last, hookCar, hookUser, limit(62, time.Now())))
		w.d.stderr.WaitLine(t, last, 10*time.Second)
		if strings.Contains(w.d.stderr.Text(), "read once a day") {
			t.Error("polling backed off for deliveries without the door")
		}
		for _, p := range w.payloads(hookTopics.LastError, n, w.got.Len()) {
			if p != discovery.LastErrorNone {
				t.Errorf("last error %q for an error about the nickname and the locks", p)
			}
		}

		n = w.got.Len()
		w.deliver(errorEvent(w.nextID(), hookCar, hookUser,
			`{"type":"PERMISSION","code":null,"state":"ERROR","signals":["Closure.IsLocked","Charge.IsChargingPortFlapOpen"]}`))
		w.waitMsg(n, "the door's error", hookTopics.LastError, is("PERMISSION:UNSPECIFIED"))
		w.deliver(stateEvent(w.nextID(), hookCar, hookUser, door(true, time.Now())))
		w.d.stderr.WaitLine(t, "the car is now read once a day", 10*time.Second)
		if calls := w.callsSinceSettled(); len(calls) != 0 {
			t.Errorf("the deliveries cost Smartcar calls: %+v", calls)
		}
	})
}

// The page answers only at the daemon's address, names of the home network
// and HTTP_ALLOWED_HOSTS, as a browser on a rebinding site would reach it by
// that site's name; Smartcar's deliveries come at whatever public name the
// user exposes the path under, and are taken there.
func TestPageAnswersOnlyAtHomeNames(t *testing.T) {
	w := newHookWorld(t, "embedded", smartcarsim.Options{}, "HTTP_ALLOWED_HOSTS=car.example.com")
	ask := func(method, host, path string, body []byte) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+w.httpAddr+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("SC-Signature", sign(hookSecret, body))
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		method, host, path string
		want               int
	}{
		{http.MethodGet, "evil.example:80", "/", http.StatusForbidden},
		{http.MethodGet, "evil.example", "/state", http.StatusForbidden},
		{http.MethodPost, "evil.example", "/connect", http.StatusForbidden},
		{http.MethodGet, w.httpAddr, "/", http.StatusOK},
		{http.MethodGet, "homeassistant.local:8080", "/state", http.StatusOK},
		{http.MethodGet, "car.example.com", "/", http.StatusOK},
		{http.MethodGet, "evil.example", "/healthz", http.StatusOK},
	} {
		if got := ask(tt.method, tt.host, tt.path, nil); got != tt.want {
			t.Errorf("%s %s at %s: %d, want %d", tt.method, tt.path, tt.host, got, tt.want)
		}
	}
	n := w.got.Len()
	if got := ask(http.MethodPost, "smartcar-hooks.example.net", "/webhooks/smartcar", stateEvent(w.nextID(), hookCar, hookUser, limit(63, time.Now()))); got != http.StatusOK {
		t.Fatalf("a delivery at the tunnel's name: %d, want 200", got)
	}
	w.waitMsg(n, "the delivery's charge limit", hookTopics.ChargeLimit, is("63"))
}

// Deliveries that must change nothing, each followed by a probe that shows
// the daemon took what came after it: plugged_in never turns OFF.
func TestWebhookRefusesWhatMustChangeNothing(t *testing.T) {
	forEachHookBroker(t, smartcarsim.Options{}, func(t *testing.T, w *hookWorld) {
		start := time.Now()
		w.deliver(stateEvent(w.nextID(), hookCar, hookUser, plug(true, start)))
		on := w.waitMsg(0, "plugged in", hookTopics.PluggedIn, is("ON"))
		unplugAt := start.Add(time.Second)
		marker := "payload-marker-5d1c"

		t.Run("wrong or missing signature", func(t *testing.T) {
			body := stateEvent(w.nextID()+marker, hookCar, hookUser, plug(false, unplugAt))
			bad := sign("not-the-token", body)
			for _, signature := range []string{bad, "", strings.ToUpper(bad), "deadbeef"} {
				if code, _ := w.post(body, signature); code != http.StatusUnauthorized {
					t.Errorf("signature %q: %d, want 401", signature, code)
				}
			}
			w.d.stderr.WaitLine(t, "refused a webhook delivery", 10*time.Second)
			if n := strings.Count(w.d.stderr.Text(), "refused a webhook delivery:"); n != 1 {
				t.Errorf("%d warnings for four refused deliveries, want one", n)
			}
			for _, leak := range []string{marker, bad, hookSecret} {
				if strings.Contains(w.d.stderr.Text(), leak) {
					t.Errorf("the log shows %q", leak)
				}
			}
			if got := w.metric(deliveries("unknown", "bad_signature")); got != 4 {
				t.Errorf("bad signatures counted %v, want 4", got)
			}
		})

		t.Run("truncated body", func(t *testing.T) {
			body := stateEvent(w.nextID(), hookCar, hookUser, plug(false, unplugAt))
			cut := body[:len(body)/2]
			if code, _ := w.post(cut, sign(hookSecret, cut)); code != http.StatusBadRequest {
				t.Errorf("signed truncated body: %d, want 400", code)
			}
			if code, _ := w.post(cut, sign(hookSecret, body)); code != http.StatusUnauthorized {
				t.Errorf("truncated body with the whole body's signature: %d, want 401", code)
			}
		})

		t.Run("replayed eventId", func(t *testing.T) {
			id := w.nextID()
			body := stateEvent(id, hookCar, hookUser, plug(true, start.Add(2*time.Second)))
			w.deliver(body)
			w.deliver(body) // Smartcar's retry
			// Same id, other content: still the event already taken.
			w.deliver(stateEvent(id, hookCar, hookUser, plug(false, start.Add(3*time.Second))))
			w.probe(61)
			if got := w.metric(deliveries("VEHICLE_STATE", "duplicate")); got != 2 {
				t.Errorf("duplicates counted %v, want 2", got)
			}
		})

		t.Run("out-of-order oemUpdatedAt", func(t *testing.T) {
			w.deliver(stateEvent(w.nextID(), hookCar, hookUser, plug(true, start.Add(10*time.Second))))
			w.deliver(stateEvent(w.nextID(), hookCar, hookUser, plug(false, start.Add(5*time.Second))))
			w.probe(62)
			if got := w.metric(deliveries("VEHICLE_STATE", "stale")); got != 1 {
				t.Errorf("stale deliveries counted %v, want 1", got)
			}
		})

		t.Run("unknown vehicle", func(t *testing.T) {
			for _, body := range [][]byte{
				stateEvent(w.nextID(), "not-a-car-of-this-account", hookUser, plug(false, time.Now())),
				// The Tesla, connected by another user: not the connection served.
				stateEvent(w.nextID(), hookCar, "another-user", plug(false, time.Now())),
			} {
				w.deliver(body) // 200: Smartcar would retry anything else
			}
			w.d.stderr.WaitLine(t, "for a vehicle this daemon does not serve", 10*time.Second)
			if got := w.metric(deliveries("VEHICLE_STATE", "unknown_vehicle")); got != 2 {
				t.Errorf("unknown vehicles counted %v, want 2", got)
			}
			n := w.probe(63)
			for _, m := range w.got.All()[:n] {
				if strings.Contains(m.topic, "not-a-car") {
					t.Errorf("a message for the unknown vehicle: %v", m)
				}
			}
		})

		t.Run("2 MiB body", func(t *testing.T) {
			huge := stateEvent(w.nextID(), hookCar, hookUser, plug(false, unplugAt),
				hookSignal{code: "location-notes", body: `"` + strings.Repeat("x", 2<<20) + `"`})
			for _, length := range []int64{int64(len(huge)), -1} { // said, or chunked
				if code, _ := w.request(http.MethodPost, "application/json", huge, sign(hookSecret, huge), length); code != http.StatusRequestEntityTooLarge {
					t.Errorf("2 MiB body (length %d): %d, want 413", length, code)
				}
			}
			w.responsive(64)
		})

		t.Run("wrong method or content", func(t *testing.T) {
			body := stateEvent(w.nextID(), hookCar, hookUser, plug(false, unplugAt))
			for _, tt := range []struct {
				method, contentType string
				want                int
			}{
				{http.MethodGet, "", http.StatusMethodNotAllowed},
				{http.MethodPut, "application/json", http.StatusMethodNotAllowed},
				{http.MethodPost, "text/plain", http.StatusUnsupportedMediaType},
				{http.MethodPost, "", http.StatusUnsupportedMediaType},
			} {
				if code, _ := w.request(tt.method, tt.contentType, body, sign(hookSecret, body), int64(len(body))); code != tt.want {
					t.Errorf("%s %q: %d, want %d", tt.method, tt.contentType, code, tt.want)
				}
			}
		})

		last := w.probe(65)
		if offs := w.payloads(hookTopics.PluggedIn, on, last); strings.Contains(strings.Join(offs, ","), "OFF") {
			t.Errorf("plugged_in went %v: a delivery that must change nothing did", offs)
		}
		if calls := w.callsSinceSettled(); len(calls) != 0 {
			t.Errorf("deliveries cost Smartcar calls: %+v", calls)
		}
	})
}

// 1,000 deliveries at once, from 50 connections, out of order: all are
// answered 200, every one is counted exactly once (applied or stale), the
// state is the newest one's, and sending them all again applies none.
func TestWebhookBurst(t *testing.T) {
	forEachHookBroker(t, smartcarsim.Options{}, func(t *testing.T, w *hookWorld) {
		const total, senders = 1000, 50
		base := time.Now()
		bodies := make([][]byte, total)
		for i := range bodies {
			// The newest (i = total-1) says plugged in.
			bodies[i] = stateEvent(w.nextID(), hookCar, hookUser, plug(i%2 == 1, base.Add(time.Duration(i)*time.Millisecond)))
		}
		send := func() {
			var wg sync.WaitGroup
			next := make(chan []byte)
			failed := make(chan string, total)
			for range senders {
				wg.Go(func() {
					client := &http.Client{Timeout: 20 * time.Second}
					for body := range next {
						req, _ := http.NewRequest(http.MethodPost, w.url, bytes.NewReader(body))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("SC-Signature", sign(hookSecret, body))
						resp, err := client.Do(req)
						if err != nil {
							failed <- err.Error()
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							failed <- resp.Status
						}
					}
				})
			}
			// Newest last among equals, but in no order a worker could rely on.
			for i := range bodies {
				next <- bodies[(i*7919)%total]
			}
			close(next)
			wg.Wait()
			close(failed)
			for f := range failed {
				t.Errorf("a delivery of the burst: %s", f)
			}
		}
		send()
		w.probe(66)
		applied, stale := w.metric(deliveries("VEHICLE_STATE", "applied")), w.metric(deliveries("VEHICLE_STATE", "stale"))
		if applied+stale != total+1 { // the probe
			t.Errorf("applied %v + stale %v, want every one of %d counted once", applied, stale, total+1)
		}
		if got := w.payloads(hookTopics.PluggedIn, 0, w.got.Len()); len(got) == 0 || got[len(got)-1] != "ON" {
			t.Errorf("plugged_in ends %v, want the newest delivery's ON", got)
		}

		send() // Smartcar retrying all of them
		w.probe(67)
		if got := w.metric(deliveries("VEHICLE_STATE", "duplicate")); got != total {
			t.Errorf("duplicates %v, want %d", got, total)
		}
		if got := w.metric(deliveries("VEHICLE_STATE", "applied")); got != applied+1 {
			t.Errorf("the replay applied %v deliveries, want none (only the probe)", got-applied-1)
		}
		w.responsive(68)
		if calls := w.callsSinceSettled(); len(calls) != 0 {
			t.Errorf("the burst cost %d Smartcar calls", len(calls))
		}
	})
}

// A delivery that arrives while a door command is in flight is answered at
// once, applied after the command, and cannot undo it: the car recorded
// its door before the command was sent. What it says of the plug counts.
func TestWebhookDuringACommand(t *testing.T) {
	forEachHookBroker(t, smartcarsim.Options{Latency: 3 * time.Second}, func(t *testing.T, w *hookWorld) {
		ha := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(w.brokerURL()).SetClientID("ha-cmd"))
		if tok := ha.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer ha.Disconnect(50)
		before := time.Now()
		n := w.got.Len()
		if tok := ha.Publish(hookTopics.Command, 1, false, "OPEN"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		w.waitMsg(n, "opening", hookTopics.State, is("opening"))
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		isOpen := func(r smartcarsim.Request) bool { return strings.HasSuffix(r.Path, "/commands/charge-port/open") }
		if _, err := w.sim.WaitRequest(ctx, isOpen); err != nil {
			t.Fatal("the command did not reach Smartcar")
		}
		w.deliver(stateEvent(w.nextID(), hookCar, hookUser, door(false, before), plug(true, before)))
		for _, r := range w.sim.Requests() {
			if isOpen(r) && r.Status != 0 {
				t.Fatal("the command finished before the delivery was answered: the test proves nothing")
			}
		}
		opened := w.waitMsg(n, "open", hookTopics.State, is("open"))
		w.waitMsg(n, "plugged in", hookTopics.PluggedIn, is("ON"))
		last := w.probe(69)
		if states := w.payloads(hookTopics.State, opened, last); strings.Join(states, ",") != "open" {
			t.Errorf("after the command the door went %v, want it to stay open", states)
		}
		// A delivery the car recorded after the command counts: closed at the car.
		n = w.got.Len()
		w.deliver(stateEvent(w.nextID(), hookCar, hookUser, door(false, time.Now().Add(time.Second))))
		w.waitMsg(n, "closed at the car", hookTopics.State, is("closed"))
	})
}

// A car whose state comes from webhooks, and which Smartcar's reads find no
// data for (usual in API v3), keeps what the webhooks said after a read.
func TestWebhookStateSurvivesAReadWithNoData(t *testing.T) {
	forEachHookBroker(t, smartcarsim.Options{}, func(t *testing.T, w *hookWorld) {
		n := w.got.Len()
		w.deliver(stateEvent(w.nextID(), hookCar, hookUser, door(true, time.Now()), plug(true, time.Now())))
		w.waitMsg(n, "plugged in", hookTopics.PluggedIn, is("ON"))
		w.waitMsg(n, "the door open", hookTopics.State, is("open"))

		w.sim.SetNoData(hookCar, 404)
		ha := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(w.brokerURL()).SetClientID("ha-refresh"))
		if tok := ha.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer ha.Disconnect(50)
		n = w.got.Len()
		if tok := ha.Publish(hookTopics.Refresh, 1, false, "now"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := w.sim.WaitRequest(ctx, func(r smartcarsim.Request) bool { return strings.HasSuffix(r.Path, "/signals") }); err != nil {
			t.Fatal("the refresh did not read the car")
		}
		last := w.probe(71) // the worker has finished the read once the probe shows
		for topic, known := range map[string]string{hookTopics.State: "open", hookTopics.PluggedIn: "ON"} {
			for _, p := range w.payloads(topic, n, last) {
				if p != known {
					t.Errorf("%s went %q after a read that found no data, want it to stay %q", topic, p, known)
				}
			}
		}
	})
}

func (w *hookWorld) brokerURL() string {
	for _, kv := range w.d.cmd.Env {
		if v, ok := strings.CutPrefix(kv, "MQTT_URL="); ok {
			return v
		}
		if v, ok := strings.CutPrefix(kv, "BROKER_LISTEN="); ok {
			return "tcp://" + v
		}
	}
	w.t.Fatal("no broker in the daemon's environment")
	return ""
}

// Without SMARTCAR_WEBHOOK_SECRET there is no receiver at all.
func TestWebhookPathOnlyWithTheSecret(t *testing.T) {
	_, srv := v3Sim(t)
	httpAddr := freeAddr(t)
	d := startMain(t, v3Env(srv, t.TempDir(), "HTTP_LISTEN="+httpAddr, "BROKER_LISTEN=127.0.0.1:0", "BROKER_ALLOW_ANONYMOUS=true"), "run")
	d.stderr.WaitLine(t, "connected to the MQTT broker", 20*time.Second)
	body := stateEvent("e-1", hookCar, hookUser, plug(true, time.Now()))
	resp, err := http.Post("http://"+httpAddr+"/webhooks/smartcar", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /webhooks/smartcar without the secret: %d, want 404", resp.StatusCode)
	}
	if strings.Contains(d.stderr.Text(), "webhook receiver") {
		t.Error("the log announces a webhook receiver that is not there")
	}
	d.stop(t)
}

// `smartcar2mqtt demo`: the plug knob its banner prints has the simulated
// Smartcar deliver the plug-in by its webhook, and Home Assistant sees it
// without a read.
func TestDemoPlugInArrivesByWebhook(t *testing.T) {
	httpAddr, brokerAddr := freeAddr(t), freeAddr(t)
	d := startMain(t, demoEnv(t, "HTTP_LISTEN="+httpAddr, "BROKER_LISTEN="+brokerAddr, "SMARTCAR_POLL_INTERVAL=1h", "LOG_LEVEL=debug"), "demo")
	banner := waitBanner(t, d)
	var plugURL string
	for line := range strings.SplitSeq(banner, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "curl -X POST "); ok && strings.HasSuffix(rest, "/plug") {
			plugURL = rest
		}
	}
	if plugURL == "" || !strings.Contains(banner, "http://"+httpAddr+"/webhooks/smartcar") {
		t.Fatalf("the banner lacks the plug line or the webhook's URL:\n%s", banner)
	}
	var got itest.Record[mqttMsg]
	ha := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("ha-demo-hook"))
	if tok := ha.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer ha.Disconnect(50)
	if tok := ha.Subscribe("smartcar2mqtt/#", 0, func(_ mqtt.Client, m mqtt.Message) { got.Add(mqttMsg{m.Topic(), string(m.Payload())}) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	w := &hookWorld{t: t, d: d, httpAddr: httpAddr, got: &got}
	w.waitMsg(0, "the first read", hookTopics.LastRead, func(p string) bool { return p != "None" })
	// Both cars' cold-start reads, the only ones.
	for _, car := range []string{smartcarsim.TeslaID, smartcarsim.OtherID} {
		d.stderr.WaitLine(t, `vehicle=`+car+` why="after a read"`, 20*time.Second)
	}
	reads := func() float64 { return w.metric(`smartcar2mqtt_smartcar_calls_total{endpoint="signals",outcome="ok"}`) }
	if r := reads(); r != 2 {
		t.Fatalf("%v reads at start, want the two cold-start ones", r)
	}
	n := got.Len()
	resp, err := http.Post(plugURL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	said, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(said), "webhook VEHICLE_STATE") || !strings.Contains(string(said), ": 200") {
		t.Errorf("the plug knob said %q", said)
	}
	w.waitMsg(n, "plugged in", hookTopics.PluggedIn, is("ON"))
	w.waitMsg(n, "the door open", hookTopics.State, is("open"))
	if r := reads(); r != 2 {
		t.Errorf("%v reads: the plug-in cost a read", r)
	}
	d.stop(t)
}
