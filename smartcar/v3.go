package smartcar

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// v3API is Smartcar API v3: one application token for every car, each
// vehicle request scoped to its user with sc-user-id, vehicles from
// /connections, state from /signals, the door from commands/charge-port.
type v3API struct{}

func (v3API) version() string { return V3 }

// Signal codes the daemon reads, from Smartcar's v3 signal schema.
const (
	SignalDoorOpen    = "charge-ischargingportflapopen"
	SignalPluggedIn   = "charge-ischargingcableconnected"
	SignalLatched     = "charge-ischargingcablelatched"
	SignalCharging    = "charge-detailedchargingstatus"
	SignalLimits      = "charge-chargelimits"
	SignalEnergyAdded = "charge-energyadded"
)

// connectionsPage is one page of GET /connections (JSON:API).
type connectionsPage struct {
	Data []struct {
		Attributes struct {
			Vehicle struct {
				Make  string          `json:"make"`
				Model string          `json:"model"`
				Year  json.RawMessage `json:"year"` // a number; a string is accepted
			} `json:"vehicle"`
			Permissions []string `json:"permissions"`
		} `json:"attributes"`
		Relationships struct {
			Vehicle relationship `json:"vehicle"`
			User    relationship `json:"user"`
		} `json:"relationships"`
	} `json:"data"`
	Links struct {
		Next *string `json:"next"`
	} `json:"links"`
	Meta struct {
		TotalCount int `json:"totalCount"`
	} `json:"meta"`
}

type relationship struct {
	Data struct {
		ID string `json:"id"`
	} `json:"data"`
}

// vehicles reads every page of GET /connections (only the user of
// WithUserFilter's, when set), following links.next.
func (v3API) vehicles(ctx context.Context, c *Client, only []string, _ []VehicleDetails) ([]VehicleDetails, []string, error) {
	q := url.Values{"page[number]": {"1"}, "page[size]": {strconv.Itoa(c.pageSize)}}
	if c.userFilter != "" {
		q.Set("filter[userId]", c.userFilter)
	}
	r := request{endpoint: EndpointConnections, method: http.MethodGet, path: "/connections", rawQuery: q.Encode()}
	var out []VehicleDetails
	var account []string
	for range maxPages {
		var pg connectionsPage
		if _, err := c.getJSON(ctx, r, &pg); err != nil {
			return nil, nil, err
		}
		for _, d := range pg.Data {
			v := Vehicle{
				ID:     d.Relationships.Vehicle.Data.ID,
				UserID: d.Relationships.User.Data.ID,
				Make:   d.Attributes.Vehicle.Make,
				Model:  d.Attributes.Vehicle.Model,
				Year:   flexInt(d.Attributes.Vehicle.Year),
			}
			if v.ID == "" {
				continue
			}
			if !slices.Contains(account, v.ID) {
				account = append(account, v.ID)
			}
			if len(only) > 0 && !slices.Contains(only, v.ID) {
				continue
			}
			out = append(out, VehicleDetails{Vehicle: v, Permissions: d.Attributes.Permissions})
		}
		if pg.Links.Next == nil || *pg.Links.Next == "" || len(pg.Data) == 0 {
			return out, account, nil
		}
		next, err := c.below(*pg.Links.Next, r)
		if err != nil {
			return nil, nil, err
		}
		r = next
	}
	return nil, nil, errors.New("paging did not end")
}

// below turns a paging link (absolute, or relative to the page it came
// from) into the next request. A link that leaves the API root is refused:
// the request would carry the application token elsewhere.
func (c *Client) below(link string, from request) (request, error) {
	base, err := url.Parse(c.base + from.path + "?" + from.rawQuery)
	if err != nil {
		return request{}, err
	}
	ref, err := url.Parse(link)
	if err != nil {
		return request{}, fmt.Errorf("paging link: %w", err)
	}
	u := base.ResolveReference(ref)
	root, _ := url.Parse(c.base)
	if u.Scheme != root.Scheme || u.Host != root.Host || !strings.HasPrefix(u.Path, root.Path+"/") {
		return request{}, fmt.Errorf("paging link %q leaves the API root %s", u.Redacted(), c.base)
	}
	from.path, from.rawQuery = strings.TrimPrefix(u.Path, root.Path), u.RawQuery
	return from, nil
}

// flexInt reads a JSON number or numeric string; anything else is 0.
func flexInt(raw json.RawMessage) int {
	s := strings.Trim(string(raw), `" `)
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

// read reads every signal of v in one call (GET /vehicles/{id}/signals). A
// 404, or an answer without a single signal, means Smartcar holds no data
// for the car yet: an empty ChargeState with NoData, not an error.
func (v3API) read(ctx context.Context, c *Client, v Vehicle) (ChargeState, error) {
	var st ChargeState
	r := request{endpoint: EndpointSignals, vehicleID: v.ID, userID: v.UserID, method: http.MethodGet,
		path: vehiclePath(v.ID) + "/signals", decode: func(body []byte) (err error) {
			st, err = ParseSignals(body)
			return err
		}}
	resp, err := c.do(ctx, r)
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound {
		return ChargeState{NoData: true, RequestID: e.RequestID}, nil
	}
	if err != nil {
		return ChargeState{}, err
	}
	st.RequestID = resp.requestID
	return st, nil
}

// signal is one entry of a /signals answer.
type signal struct {
	Attributes struct {
		Code   string `json:"code"`
		Status struct {
			Value string `json:"value"`
		} `json:"status"`
		Body json.RawMessage `json:"body"`
	} `json:"attributes"`
	// meta.oemUpdatedAt comes as an ISO-8601 string or epoch milliseconds;
	// neither is needed to read a value, so neither form can fail a read.
}

// ParseSignals reads the charge port and charge signals out of a /signals
// body. A signal whose status is ERROR is unknown, whatever its (stale) body
// says; so is one that is missing or whose body has an unexpected shape. No
// signal at all is NoData.
func ParseSignals(body []byte) (ChargeState, error) {
	var doc struct {
		Data []signal `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return ChargeState{}, err
	}
	st := ChargeState{NoData: len(doc.Data) == 0}
	for _, s := range doc.Data {
		a := s.Attributes
		if strings.EqualFold(a.Status.Value, "ERROR") {
			continue
		}
		decodeSignal(&st, strings.ToLower(a.Code), a.Body)
	}
	return st, nil
}

// decodeSignal sets st's field for the signal code from its body, the same
// for a read of /signals and a webhook delivery. A missing body or one of an
// unexpected shape leaves the field as it is.
func decodeSignal(st *ChargeState, code string, body json.RawMessage) {
	var b signalBody
	if len(body) == 0 || json.Unmarshal(body, &b) != nil {
		return
	}
	switch code {
	case SignalDoorOpen:
		st.DoorOpen = b.boolValue("isOpen")
	case SignalPluggedIn:
		st.PluggedIn = b.boolValue()
	case SignalLatched:
		if l := b.boolValue(); l != nil {
			st.Latch = new(map[bool]string{true: LatchEngaged, false: LatchDisengaged}[*l])
		}
	case SignalCharging:
		st.Charging = b.stringValue()
	case SignalLimits:
		st.LimitPercent = b.chargeLimit()
	case SignalEnergyAdded:
		st.EnergyAdded = b.energyKWh()
	}
}

// signalBody holds a signal's body fields by name, decoded on demand.
type signalBody map[string]json.RawMessage

// boolValue is the body's "value", or the first of alt that is present.
func (b signalBody) boolValue(alt ...string) *bool {
	for _, k := range append([]string{"value"}, alt...) {
		var v *bool
		if raw, ok := b[k]; ok && json.Unmarshal(raw, &v) == nil && v != nil {
			return v
		}
	}
	return nil
}

func (b signalBody) stringValue() *string {
	var v *string
	if json.Unmarshal(b["value"], &v) != nil || v == nil || *v == "" {
		return nil
	}
	return v
}

func (b signalBody) number(k string) *float64 {
	var v *float64
	if json.Unmarshal(b[k], &v) != nil {
		return nil
	}
	return v
}

// chargeLimit is activeLimit, else the GLOBAL entry of values, in percent.
func (b signalBody) chargeLimit() *float64 {
	if v := b.number("activeLimit"); v != nil {
		return v
	}
	var values []map[string]json.RawMessage
	if json.Unmarshal(b["values"], &values) != nil {
		return nil
	}
	for _, entry := range values {
		e := signalBody(entry)
		kind := e.stringField("type", "condition", "name")
		if !strings.EqualFold(kind, "GLOBAL") {
			continue
		}
		for _, k := range []string{"limit", "value"} {
			if v := e.number(k); v != nil {
				return v
			}
		}
	}
	return nil
}

func (b signalBody) stringField(keys ...string) string {
	for _, k := range keys {
		var s string
		if json.Unmarshal(b[k], &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// energyKWh is value in kWh (a body in Wh is converted). Smartcar writes
// units as words (kilowatt_hours) as well as symbols, so watt-hours may come
// either way.
func (b signalBody) energyKWh() *float64 {
	v := b.number("value")
	unit := strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(b.stringField("unit")))
	if v != nil && (unit == "wh" || unit == "watthour" || unit == "watthours") {
		v = new(*v / 1000)
	}
	return v
}

// chargePortDoor sends POST /vehicles/{id}/commands/charge-port/open|close.
// Smartcar answers 200 with the finished command-execution, or 202 and
// streams the command-execution documents until the final one; the body is
// read to its end within the client's timeout.
func (v3API) chargePortDoor(ctx context.Context, c *Client, v Vehicle, a Action) error {
	r := request{endpoint: EndpointChargePortCommand, vehicleID: v.ID, userID: v.UserID, method: http.MethodPost,
		path: vehiclePath(v.ID) + "/commands/charge-port/" + strings.ToLower(string(a)), targetState: true}
	resp, err := c.do(ctx, r)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && (e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusNotImplemented) {
			return fmt.Errorf("%w: %w", ErrNoChargePortCommand, err)
		}
		return err
	}
	return commandOutcome(resp)
}

// commandStatus is a command-execution's status: its value, and the error of
// a failed one.
type commandStatus struct {
	Value string `json:"value"`
	Error *struct {
		Type   string `json:"type"`
		Code   string `json:"code"`
		Detail string `json:"detail"`
		Title  string `json:"title"`
	} `json:"error"`
}

// pendingStatuses are command-execution states that are not an outcome.
var pendingStatuses = []string{"PENDING", "QUEUED", "IN_PROGRESS", "SENT", "ACCEPTED", "RUNNING", "PROCESSING"}

// commandOutcome reads the last command-execution of a command's answer.
func commandOutcome(resp response) error {
	last, found, err := lastCommandStatus(resp.body)
	if err != nil {
		return fmt.Errorf("decode command answer (status %d, request id %s): %w", resp.status, resp.requestID, err)
	}
	switch {
	case !found && resp.status == http.StatusOK && len(bytes.TrimSpace(resp.body)) == 0:
		return nil // a 200 without a body: Smartcar accepted and finished
	case !found, slices.Contains(pendingStatuses, strings.ToUpper(last.Value)):
		return fmt.Errorf("%w (status %d, request id %s)", errUnfinishedCommand, resp.status, resp.requestID)
	case strings.EqualFold(last.Value, "SUCCESS"), strings.EqualFold(last.Value, "SUCCEEDED"):
		return nil
	}
	e := &Error{StatusCode: resp.status, Type: "COMMAND", Code: strings.ToUpper(last.Value), RequestID: resp.requestID,
		Description: "the car did not carry out the command"}
	if f := last.Error; f != nil {
		if f.Type != "" {
			e.Type, e.Code = f.Type, f.Code
		}
		if d := cmp.Or(f.Detail, f.Title); d != "" {
			e.Description = printable(d, maxErrorSnippet, "…")
		}
	}
	return e
}

// lastCommandStatus finds the status of the last command-execution document
// in body: one JSON document, several in a row (newline-delimited or not), or
// server-sent events whose data lines hold them.
func lastCommandStatus(body []byte) (commandStatus, bool, error) {
	docs := body
	if isEventStream(body) {
		docs = eventData(body)
	}
	var last commandStatus
	found := false
	dec := json.NewDecoder(bytes.NewReader(docs))
	for {
		var doc struct {
			Data struct {
				Attributes struct {
					Status *commandStatus `json:"status"`
				} `json:"attributes"`
			} `json:"data"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return last, found, nil
		}
		if err != nil {
			if found {
				// A stream cut in the middle of a document: what came whole
				// before it still counts, and a pending one stays pending.
				return last, found, nil
			}
			return commandStatus{}, false, err
		}
		if s := doc.Data.Attributes.Status; s != nil && s.Value != "" {
			last, found = *s, true
		}
	}
}

func isEventStream(body []byte) bool {
	t := bytes.TrimSpace(body)
	return bytes.HasPrefix(t, []byte("data:")) || bytes.HasPrefix(t, []byte("event:")) || bytes.HasPrefix(t, []byte("id:"))
}

// eventData joins the data lines of server-sent events, one document per
// event.
func eventData(body []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), maxBody)
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data:"); ok {
			out.WriteString(strings.TrimPrefix(d, " "))
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
