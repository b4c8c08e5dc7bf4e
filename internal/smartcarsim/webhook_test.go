package smartcarsim

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
	"strings"
	"sync"
	"testing"
	"time"
)

const testAMT = "test-application-management-token"

// receiver is a callback URL that answers VERIFY with the challenge's HMAC
// (unless wrong is set) and records every request.
type receiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	got   []received
	wrong bool
}

type received struct {
	body                                   []byte
	signature, contentType, userAgent, typ string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev struct {
			EventType string `json:"eventType"`
			Data      struct {
				Challenge string `json:"challenge"`
			} `json:"data"`
		}
		json.Unmarshal(body, &ev)
		r.mu.Lock()
		r.got = append(r.got, received{body, req.Header.Get("SC-Signature"), req.Header.Get("Content-Type"), req.Header.Get("User-Agent"), ev.EventType})
		wrong := r.wrong
		r.mu.Unlock()
		if ev.EventType == "VERIFY" {
			key := testAMT
			if wrong {
				key = "another token"
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"challenge": hmacOf(key, ev.Data.Challenge)})
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) all() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// hmacOf is written here apart from the simulator's hmacHex.
func hmacOf(key, data string) string {
	m := hmac.New(sha256.New, []byte(key))
	io.WriteString(m, data)
	return hex.EncodeToString(m.Sum(nil))
}

func TestWebhookVerifiesThenDeliversSigned(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	if _, err := e.sim.DeliverState(ctxT(t), TeslaID); err == nil {
		t.Fatal("a delivery without a webhook set")
	}
	e.sim.SetWebhook(r.srv.URL, testAMT)
	e.sim.SetPluggedIn(TeslaID, true)
	e.clock.Advance(time.Minute)
	d, err := e.sim.DeliverState(ctxT(t), TeslaID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.DeliverState(ctxT(t), TeslaID); err != nil {
		t.Fatal(err)
	}
	got := r.all()
	if len(got) != 3 || got[0].typ != "VERIFY" || got[1].typ != "VEHICLE_STATE" || got[2].typ != "VEHICLE_STATE" {
		t.Fatalf("the receiver got %d requests %v, want VERIFY once, then the two deliveries", len(got), got)
	}
	if got[0].signature != "" {
		t.Error("VERIFY came signed: the simulator should test the unsigned case Smartcar documents")
	}
	for _, g := range got[1:] {
		if g.signature != hmacOf(testAMT, string(g.body)) || g.contentType != "application/json" || !strings.HasPrefix(g.userAgent, "Smartcar/") {
			t.Errorf("delivery headers: signature %q, content type %q, user agent %q", g.signature, g.contentType, g.userAgent)
		}
	}
	if !bytes.Equal(got[1].body, d.Body) || d.Status != 200 || d.EventID == "" {
		t.Errorf("WebhookDelivery %+v does not say what was sent", d)
	}
	var ev struct {
		EventID   string `json:"eventId"`
		EventType string `json:"eventType"`
		VehicleID string `json:"vehicleId"`
		Data      struct {
			User    struct{ ID string } `json:"user"`
			Vehicle struct{ ID string } `json:"vehicle"`
			Signals []struct {
				Code   string          `json:"code"`
				Body   json.RawMessage `json:"body"`
				Status struct{ Value string }
				Meta   struct {
					OEMUpdatedAt int64 `json:"oemUpdatedAt"`
				} `json:"meta"`
			} `json:"signals"`
		} `json:"data"`
	}
	if err := json.Unmarshal(got[1].body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.EventID != d.EventID || ev.VehicleID != TeslaID || ev.Data.Vehicle.ID != TeslaID || ev.Data.User.ID != UserID || len(ev.Data.Signals) != 6 {
		t.Fatalf("delivery %s", got[1].body)
	}
	for _, s := range ev.Data.Signals {
		if s.Code == signalPlug && (string(s.Body) != `{"value":true}` || s.Status.Value != "SUCCESS" || s.Meta.OEMUpdatedAt != e.clock.Now().Add(-time.Minute).UnixMilli()) {
			t.Errorf("the plug signal: %+v", s)
		}
	}
	if deliveries := e.sim.WebhookDeliveries(); len(deliveries) != 3 {
		t.Errorf("%d deliveries recorded, want 3", len(deliveries))
	}
	if e.sim.Requests() != nil {
		t.Errorf("deliveries logged as requests to the simulator: %+v", e.sim.Requests())
	}
}

func TestWebhookNotDeliveredUnverified(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	r.wrong = true
	e.sim.SetWebhook(r.srv.URL, testAMT)
	if err := e.sim.VerifyWebhook(ctxT(t)); err == nil || !strings.Contains(err.Error(), "HMAC") {
		t.Errorf("a wrong VERIFY answer: %v", err)
	}
	if _, err := e.sim.DeliverState(ctxT(t), TeslaID); err == nil {
		t.Error("delivered to a URL that failed verification")
	}
	for _, g := range r.all() {
		if g.typ != "VERIFY" {
			t.Errorf("an unverified URL got %s", g.typ)
		}
	}
}

// The demo's knob: plugging in through the simulator's own endpoint
// delivers the new state, and says so.
func TestPlugKnobDelivers(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	e.sim.SetWebhook(r.srv.URL, testAMT)
	resp := e.do(t, http.MethodPost, "/simulator/vehicles/"+TeslaID+"/plug")
	if !strings.Contains(string(resp.body), "webhook VEHICLE_STATE") || !strings.Contains(string(resp.body), ": 200") {
		t.Errorf("the knob said %q", resp.body)
	}
	got := r.all()
	if len(got) != 2 || got[1].typ != "VEHICLE_STATE" || !strings.Contains(string(got[1].body), `"code":"charge-ischargingcableconnected","name":"IsChargingCableConnected","group":"Charge","body":{"value":true}`) {
		t.Errorf("the receiver got %v", got)
	}
}

// Smartcar's official Node SDK checks what the simulator sends: its
// verifyPayload accepts each delivery's SC-Signature (it signs
// JSON.stringify of the parsed body, which must be the body as sent), and
// its hashChallenge is the VERIFY answer the simulator accepted.
func TestWebhookConformsToNodeSDK(t *testing.T) {
	requireNodeSDK(t)
	e := newEnv(t)
	r := newReceiver(t)
	e.sim.SetWebhook(r.srv.URL, testAMT)
	e.sim.SetAltBodies(true) // ISO-8601 times, the other door body
	if _, err := e.sim.DeliverState(ctxT(t), TeslaID); err != nil {
		t.Fatal(err)
	}
	got := r.all()
	var verify struct {
		Data struct{ Challenge string } `json:"data"`
	}
	json.Unmarshal(got[0].body, &verify)
	script := `const sc = require('smartcar');
const [amt, sig, body, challenge] = process.argv.slice(1);
console.log(JSON.stringify({verified: sc.verifyPayload(amt, sig, JSON.parse(body)), answer: sc.hashChallenge(amt, challenge)}));`
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "-e", script, testAMT, got[1].signature, string(got[1].body), verify.Data.Challenge)
	cmd.Dir = nodeSDKDir
	cmd.Env = childEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var res struct {
		Verified bool   `json:"verified"`
		Answer   string `json:"answer"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node said %s: %v", out, err)
	}
	if !res.Verified {
		t.Errorf("the SDK's verifyPayload refuses the simulator's delivery:\n%s", got[1].body)
	}
	if res.Answer != hmacOf(testAMT, verify.Data.Challenge) {
		t.Errorf("the SDK's hashChallenge is %s, the simulator accepted %s", res.Answer, hmacOf(testAMT, verify.Data.Challenge))
	}
}
