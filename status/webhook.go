package status

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// MaxWebhookBody bounds a delivery's body. Smartcar's are at most 50 KB.
const MaxWebhookBody = 1 << 20

// Deliverer takes a verified delivery for its vehicle without waiting for
// it to be applied (bridge.Bridge does).
type Deliverer interface {
	Deliver(bridge.Delivery) error
}

// WebhookOptions configure the webhook receiver.
type WebhookOptions struct {
	Secret  string // the Application Management Token; never logged
	To      Deliverer
	Metrics *Metrics // nil counts nothing
	Log     logrus.FieldLogger
}

// What the receiver did with a request, for /metrics, besides the
// worker's own outcomes (bridge.DeliveryApplied, …).
const (
	outcomeVerified         = "verified"
	outcomeUnknownVehicle   = "unknown_vehicle"
	outcomeBadSignature     = "bad_signature"
	outcomeBadRequest       = "bad_request"
	outcomeTooLarge         = "too_large"
	outcomeUnsupportedMedia = "unsupported_media_type"
	outcomeMethodNotAllowed = "method_not_allowed"
	outcomeBusy             = "busy"
	outcomeRefused          = "refused_challenge"
	outcomeV2Format         = "v2_format"
)

// warnEvery bounds each kind of warning about deliveries (refused
// signatures, unreadable events): one per this period, with the count of
// those met meanwhile, as a webhook misconfigured sends them without end.
const warnEvery = 10 * time.Minute

// NewWebhook is Smartcar's callback URI, POST /webhooks/smartcar. It
// answers VERIFY with the HMAC of the challenge, and takes every other
// delivery only with a valid SC-Signature over the raw body, checked before
// anything of it is read into state. A delivery for a vehicle this daemon
// does not serve is answered 200 (Smartcar would retry anything else) and
// changes nothing. Deliveries are handed to the vehicle's worker and
// answered at once, without waiting for a command in flight.
func NewWebhook(o WebhookOptions) http.Handler {
	return &webhook{opts: o, log: o.Log}
}

type webhook struct {
	opts WebhookOptions
	log  logrus.FieldLogger

	badSignatures, unreadable, v2Format rateLimitedWarning
}

// rateLimitedWarning lets one warning through per warnEvery.
type rateLimitedWarning struct {
	mu         sync.Mutex
	warnedAt   time.Time // of the last warning let through
	suppressed int       // warnings held back since then
}

// allow reports whether to warn now, and how many warnings were held back
// since the last one.
func (r *rateLimitedWarning) allow(now time.Time) (ok bool, heldBack int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.warnedAt.IsZero() && now.Sub(r.warnedAt) < warnEvery {
		r.suppressed++
		return false, 0
	}
	heldBack = r.suppressed
	r.warnedAt, r.suppressed = now, 0
	return true, heldBack
}

// warn logs msg through r, with the count held back since the last one.
func (h *webhook) warn(r *rateLimitedWarning, fields logrus.Fields, msg string) {
	ok, heldBack := r.allow(time.Now())
	if !ok {
		return
	}
	if heldBack > 0 {
		fields["held_back_since_last_warning"] = heldBack
	}
	h.log.WithFields(fields).Warnf("%s (at most one such line per %s)", msg, warnEvery)
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, "", outcomeMethodNotAllowed, http.StatusMethodNotAllowed, "Smartcar's webhook deliveries are POSTed here")
		return
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		h.refuse(w, "", outcomeUnsupportedMedia, http.StatusUnsupportedMediaType, "a webhook delivery is application/json")
		return
	}
	if r.ContentLength > MaxWebhookBody {
		h.refuse(w, "", outcomeTooLarge, http.StatusRequestEntityTooLarge, "a webhook delivery is at most 1 MiB")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		h.refuse(w, "", outcomeTooLarge, http.StatusRequestEntityTooLarge, "a webhook delivery is at most 1 MiB")
		return
	case err != nil:
		h.refuse(w, "", outcomeBadRequest, http.StatusBadRequest, "the body could not be read")
		return
	}
	received := time.Now()

	signature := r.Header.Get(smartcar.SignatureHeader)
	if signature == "" || !smartcar.ValidWebhookSignature(h.opts.Secret, body, signature) {
		// Smartcar need not sign the one-time VERIFY; everything else must be.
		if ev, err := smartcar.ParseWebhook(body); err == nil && ev.Type == smartcar.EventVerify {
			h.verify(w, r, ev, false)
			return
		}
		h.badSignature(r, signature == "")
		h.refuse(w, "", outcomeBadSignature, http.StatusUnauthorized, "no valid "+smartcar.SignatureHeader)
		return
	}
	ev, err := smartcar.ParseWebhook(body)
	switch {
	case errors.Is(err, smartcar.ErrWebhookV2Format):
		// Answered as taken: Smartcar's retries would bring the same again.
		h.warn(&h.v2Format, logrus.Fields{}, "a webhook delivery came in Smartcar's v2.0 format, which this daemon does not read: "+
			"in the Smartcar dashboard, make a webhook of the current version with the charge signals, and remove the old one")
		h.count("", outcomeV2Format)
		writeReceived(w)
		return
	case err != nil:
		h.warn(&h.unreadable, logrus.Fields{logrus.ErrorKey: err}, "refused a signed webhook delivery that is not an event the daemon can read")
		h.refuse(w, "", outcomeBadRequest, http.StatusBadRequest, "not a Smartcar webhook event")
		return
	}
	typ := eventLabel(ev.Type)
	switch ev.Type {
	case smartcar.EventVerify:
		h.verify(w, r, ev, true)
		return
	case smartcar.EventVehicleState, smartcar.EventVehicleError:
	default:
		h.log.WithField("event", ev.Type).Debug("webhook delivery of a type this daemon does not use: ignored")
		h.count(typ, bridge.DeliveryIgnored)
		writeReceived(w)
		return
	}
	err = h.opts.To.Deliver(bridge.Delivery{Event: ev, Received: received, Done: func(outcome string) { h.count(typ, outcome) }})
	switch {
	case errors.Is(err, bridge.ErrUnknownVehicle):
		// Answered as taken: Smartcar would retry anything else, and a car
		// is added only by a listing of the account, never by a webhook.
		h.log.WithFields(logrus.Fields{"event": ev.Type, "vehicle": ev.VehicleID}).
			Debug("webhook delivery for a vehicle this daemon does not serve: ignored")
		h.count(typ, outcomeUnknownVehicle)
		writeReceived(w)
	case err != nil:
		// Smartcar retries it later.
		h.log.WithError(err).WithField("vehicle", ev.VehicleID).Warn("webhook delivery not taken now; Smartcar will retry it")
		h.refuse(w, typ, outcomeBusy, http.StatusServiceUnavailable, "try again later")
	default:
		writeReceived(w)
	}
}

// verify answers a VERIFY event. An unsigned challenge that is itself a
// JSON object is refused: its HMAC would be a valid signature for a
// delivery of the sender's choosing.
func (h *webhook) verify(w http.ResponseWriter, r *http.Request, ev smartcar.WebhookEvent, signed bool) {
	if !signed && looksLikeDelivery(ev.Challenge) {
		h.log.WithField("from", r.RemoteAddr).Warn("refused an unsigned webhook VERIFY whose challenge is a JSON object: answering it would sign a delivery for the sender")
		h.refuse(w, smartcar.EventVerify, outcomeRefused, http.StatusBadRequest, "not a challenge")
		return
	}
	answer, _ := json.Marshal(map[string]string{"challenge": smartcar.WebhookSignature(h.opts.Secret, []byte(ev.Challenge))})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(answer)
	h.count(smartcar.EventVerify, outcomeVerified)
	h.log.Info("answered Smartcar's webhook VERIFY challenge: the callback URL checks out with SMARTCAR_WEBHOOK_SECRET")
}

func looksLikeDelivery(challenge string) bool {
	c := strings.TrimSpace(challenge)
	return strings.HasPrefix(c, "{") && json.Valid([]byte(c))
}

// badSignature warns about a refused delivery. Neither the body nor the
// signature is logged.
func (h *webhook) badSignature(r *http.Request, missing bool) {
	why := "its " + smartcar.SignatureHeader + " does not match"
	if missing {
		why = "it has no " + smartcar.SignatureHeader + " header"
	}
	h.warn(&h.badSignatures, logrus.Fields{"from": r.RemoteAddr}, "refused a webhook delivery: "+why+". Smartcar signs each one with the Application Management Token: "+
		"check that SMARTCAR_WEBHOOK_SECRET is that token, of the application whose webhook calls this URL, with no space or line break around it. "+
		"If the VERIFY succeeded with this token and every delivery is still refused, Smartcar is signing with another: "+
		"copy the token again from the dashboard, and if that does not help, ask Smartcar's support")
}

func (h *webhook) refuse(w http.ResponseWriter, typ, outcome string, code int, why string) {
	h.count(typ, outcome)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, why+"\n")
}

func (h *webhook) count(typ, outcome string) {
	if h.opts.Metrics != nil {
		h.opts.Metrics.ObserveDelivery(eventLabel(typ), outcome)
	}
}

// writeReceived is the answer to a delivery taken: Smartcar reads only the
// status.
func writeReceived(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}\n")
}

// isJSON accepts application/json and any +json type, with parameters.
func isJSON(contentType string) bool {
	t, _, err := mime.ParseMediaType(contentType)
	return err == nil && (t == "application/json" || strings.HasPrefix(t, "application/") && strings.HasSuffix(t, "+json"))
}

// eventLabel is an event type as /metrics labels it: one of Smartcar's
// three, "other", or "unknown" before the body is read.
func eventLabel(t string) string {
	switch t {
	case smartcar.EventVerify, smartcar.EventVehicleState, smartcar.EventVehicleError:
		return t
	case "":
		return "unknown"
	}
	return "other"
}

// ObserveDelivery counts one webhook request by event type and outcome.
func (m *Metrics) ObserveDelivery(eventType, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deliveries[[2]string{eventType, outcome}]++
}

func (m *Metrics) writeDeliveries(p *page) {
	m.mu.Lock()
	defer m.mu.Unlock()
	const name = "smartcar2mqtt_webhook_deliveries_total"
	p.family(name, "counter", "Requests to the Smartcar webhook receiver, by event type and outcome "+
		"(applied, duplicate, stale, unknown_vehicle, bad_signature, …).")
	for _, k := range sortedKeys(m.deliveries, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) }) {
		p.sample(name, labels("type", k[0], "outcome", k[1]), float64(m.deliveries[k]))
	}
}
