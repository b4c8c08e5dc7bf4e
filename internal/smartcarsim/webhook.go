package smartcarsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Smartcar's webhooks, as a webhook made in the dashboard delivers them: a
// one-time VERIFY challenge, answered with the HMAC-SHA256 of the challenge
// under the Application Management Token, then a VEHICLE_STATE event with
// every signal it watches whenever one of them changes, signed in
// SC-Signature with the same token over the raw body. Nothing is delivered
// to a callback URL that has not answered VERIFY.

// Header and values of a delivery, as Smartcar sends them.
const (
	headerSignature  = "SC-Signature"
	webhookUserAgent = "Smartcar/4.0 (smartcarsim)"
	webhookVersion   = "4.0"
	webhookName      = "smartcarsim charge signals"
	// webhookTimeout is how long Smartcar waits for an answer.
	webhookTimeout = 15 * time.Second
)

// webhookTarget is where SetWebhook sends deliveries.
type webhookTarget struct {
	url, secret string
	id          string // the webhook's id, in every delivery's meta
	verified    bool
}

// WebhookDelivery is one delivery the simulator made, in order.
type WebhookDelivery struct {
	EventID, Type, VehicleID string
	Body                     []byte
	Status                   int   // the receiver's answer; 0 when none came
	Err                      error // why none came, or why the answer was wrong
}

// SetWebhook makes the simulator deliver webhooks to url, signed with
// secret, as a webhook created in Smartcar's dashboard does; "" stops
// deliveries. The URL is verified before the first delivery to it.
func (s *Simulator) SetWebhook(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if url == "" {
		s.webhook = nil
		return
	}
	s.webhook = &webhookTarget{url: url, secret: secret, id: newUUID()}
}

// WebhookDeliveries returns every delivery made so far, VERIFY included.
func (s *Simulator) WebhookDeliveries() []WebhookDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

// Wire shapes of the webhook events, written here rather than shared with
// the client (see the package comment).
type (
	webhookEnvelope struct {
		EventID   string           `json:"eventId"`
		EventType string           `json:"eventType"`
		VehicleID string           `json:"vehicleId,omitempty"`
		Data      any              `json:"data"`
		Triggers  []webhookTrigger `json:"triggers,omitempty"`
		Meta      webhookMeta      `json:"meta"`
	}
	webhookMeta struct {
		Version     string `json:"version"`
		WebhookID   string `json:"webhookId"`
		WebhookName string `json:"webhookName"`
		DeliveryID  string `json:"deliveryId"`
		DeliveredAt int64  `json:"deliveredAt"` // epoch ms
		Mode        string `json:"mode,omitempty"`
	}
	verifyData struct {
		Challenge string `json:"challenge"`
	}
	vehicleStateData struct {
		User    webhookRef      `json:"user"`
		Vehicle webhookVehicle  `json:"vehicle"`
		Signals []webhookSignal `json:"signals"`
	}
	webhookRef struct {
		ID string `json:"id"`
	}
	webhookVehicle struct {
		ID    string `json:"id"`
		Make  string `json:"make"`
		Model string `json:"model"`
		Year  int    `json:"year"`
	}
	webhookSignal struct {
		Code   string       `json:"code"`
		Name   string       `json:"name"`
		Group  string       `json:"group"`
		Body   any          `json:"body,omitempty"`
		Status signalStatus `json:"status"`
		Meta   signalMeta   `json:"meta"`
	}
	webhookTrigger struct {
		Type   string              `json:"type"`
		Signal *webhookTriggerCode `json:"signal,omitempty"`
	}
	webhookTriggerCode struct {
		Code  string `json:"code"`
		Name  string `json:"name"`
		Group string `json:"group"`
	}
	verifyAnswer struct {
		Challenge string `json:"challenge"`
	}
)

// hmacHex is hex(HMAC-SHA256(key, data)), Smartcar's signature and
// challenge answer alike.
func hmacHex(key string, data []byte) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(data)
	return hex.EncodeToString(mac.Sum(nil))
}

// VerifyWebhook sends the VERIFY challenge to the webhook's URL, unsigned,
// and checks the answer: 200, JSON, the challenge's HMAC under the token.
func (s *Simulator) VerifyWebhook(ctx context.Context) error {
	s.mu.Lock()
	target := s.webhook
	s.mu.Unlock()
	if target == nil {
		return errors.New("no webhook set (SetWebhook)")
	}
	challenge := randomHex(16)
	body, err := compactJSON(webhookEnvelope{
		EventID: newUUID(), EventType: "VERIFY", Data: verifyData{Challenge: challenge}, Meta: s.webhookMeta(target),
	})
	if err != nil {
		return err
	}
	d := WebhookDelivery{Type: "VERIFY", Body: body}
	var answer []byte
	d.Status, answer, d.Err = post(ctx, target.url, body, "")
	if d.Err == nil {
		d.Err = checkVerifyAnswer(d.Status, answer, hmacHex(target.secret, []byte(challenge)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries = append(s.deliveries, d)
	if d.Err == nil && s.webhook == target {
		target.verified = true
	}
	return d.Err
}

func checkVerifyAnswer(status int, body []byte, want string) error {
	if status != http.StatusOK {
		return fmt.Errorf("VERIFY answered %d, want 200", status)
	}
	var a verifyAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("VERIFY answer is not JSON: %w", err)
	}
	if a.Challenge != want {
		return fmt.Errorf("VERIFY answer %q is not the challenge's HMAC under the token", a.Challenge)
	}
	return nil
}

// DeliverState delivers a VEHICLE_STATE event with the vehicle's charge
// signals as they are now, signed; its trigger is the plug signal, the
// simulator's knob. An unverified webhook is verified first. A delivery the
// receiver does not answer 2xx is an error: the simulator does not retry.
func (s *Simulator) DeliverState(ctx context.Context, vehicleID string) (WebhookDelivery, error) {
	s.mu.Lock()
	target := s.webhook
	verified := target != nil && target.verified
	s.mu.Unlock()
	if target == nil {
		return WebhookDelivery{}, errors.New("no webhook set (SetWebhook)")
	}
	if !verified {
		if err := s.VerifyWebhook(ctx); err != nil {
			return WebhookDelivery{}, fmt.Errorf("the callback URL failed verification, so nothing is delivered: %w", err)
		}
	}
	v, ok := s.snapshot(vehicleID)
	if !ok {
		return WebhookDelivery{}, fmt.Errorf("no vehicle %s", vehicleID)
	}
	alt := s.alt()
	data := vehicleStateData{
		User:    webhookRef{ID: v.info.UserID},
		Vehicle: webhookVehicle{ID: v.info.ID, Make: v.info.Make, Model: v.info.Model, Year: v.info.Year},
	}
	for _, code := range signalCodes() {
		sig, _ := s.signal(v, code, alt)
		a := sig.Attributes
		data.Signals = append(data.Signals, webhookSignal{Code: a.Code, Name: a.Name, Group: a.Group, Body: a.Body, Status: a.Status, Meta: sig.Meta})
	}
	ev := webhookEnvelope{
		EventID: newUUID(), EventType: "VEHICLE_STATE", VehicleID: v.info.ID, Data: data,
		Triggers: []webhookTrigger{{Type: "SIGNAL_UPDATED", Signal: &webhookTriggerCode{Code: signalPlug, Name: "IsChargingCableConnected", Group: signalGroupName}}},
		Meta:     s.webhookMeta(target),
	}
	body, err := compactJSON(ev)
	if err != nil {
		return WebhookDelivery{}, err
	}
	d := WebhookDelivery{EventID: ev.EventID, Type: ev.EventType, VehicleID: v.info.ID, Body: body}
	d.Status, _, d.Err = post(ctx, target.url, body, hmacHex(target.secret, body))
	if d.Err == nil && (d.Status < 200 || d.Status > 299) {
		d.Err = fmt.Errorf("the receiver answered %d", d.Status)
	}
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.mu.Unlock()
	return d, d.Err
}

// compactJSON is v as Smartcar's Node service writes a body, which is what
// its SDK's verifyPayload signs again (JSON.stringify of the parsed body):
// compact, fields in order, and <, > and & as they are.
func compactJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func (s *Simulator) webhookMeta(t *webhookTarget) webhookMeta {
	return webhookMeta{Version: webhookVersion, WebhookID: t.id, WebhookName: webhookName,
		DeliveryID: newUUID(), DeliveredAt: s.opts.Now().UnixMilli(), Mode: "TEST"}
}

// post sends one delivery as Smartcar does and reads the answer.
func post(ctx context.Context, url string, body []byte, signature string) (status int, answer []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", webhookUserAgent)
	if signature != "" {
		req.Header.Set(headerSignature, signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, answer, err
}

// afterPlug delivers the new state when a webhook is set, and says how it
// went to whoever pressed the simulator's plug knob.
func (s *Simulator) afterPlug(w io.Writer, r *http.Request, vehicleID string) {
	s.mu.Lock()
	target := s.webhook
	s.mu.Unlock()
	if target == nil {
		fmt.Fprintln(w, "no webhook set: the daemon learns it at its next read")
		return
	}
	d, err := s.DeliverState(r.Context(), vehicleID)
	if err != nil {
		fmt.Fprintf(w, "webhook delivery to %s failed: %s\n", target.url, strings.TrimSpace(err.Error()))
		return
	}
	fmt.Fprintf(w, "webhook VEHICLE_STATE %s delivered to %s: %d\n", d.EventID, target.url, d.Status)
}
