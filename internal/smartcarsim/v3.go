package smartcarsim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (s *Simulator) routeV3() {
	s.mux.HandleFunc("POST /oauth2/token", s.handleAppToken)
	s.mux.HandleFunc("GET /v3/connections", s.appAuthed(s.handleConnections))
	// Smartcar's Node SDK asks getVehicle with a trailing slash.
	s.mux.HandleFunc("GET /v3/vehicles/{id}", s.v3Vehicle(userOptional, s.handleV3Vehicle))
	s.mux.HandleFunc("GET /v3/vehicles/{id}/{$}", s.v3Vehicle(userOptional, s.handleV3Vehicle))
	s.mux.HandleFunc("GET /v3/vehicles/{id}/signals", s.v3Vehicle(userRequired, s.handleSignals))
	s.mux.HandleFunc("GET /v3/vehicles/{id}/signals/{code}", s.v3Vehicle(userRequired, s.handleSignal))
	s.mux.HandleFunc("POST /v3/vehicles/{id}/commands/charge-port/{action}", s.v3Vehicle(userRequired, s.handleChargePort))
	s.mux.HandleFunc("/v3/", func(w http.ResponseWriter, r *http.Request) {
		writeV3Error(w, http.StatusNotFound, "RESOURCE_NOT_FOUND", "PATH", 0)
	})
}

// timestamp is how v3 documents write an instant: RFC 3339 in UTC, to the
// millisecond.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// appTokenResponse is the client_credentials grant's success body: no
// refresh token, the application asks again when it expires.
type appTokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// handleAppToken serves v3's client_credentials grant. The credentials may
// come as HTTP Basic or in the form; Basic wins when both are sent.
func (s *Simulator) handleAppToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Malformed form body.")
		return
	}
	id, secret, basic := basicCredentials(r)
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" || secret == "" || id != s.opts.APIClientID || secret != s.opts.APIClientSecret {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="smartcar"`)
		}
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "Use client_credentials.")
		return
	}
	tok := "sim-app-" + randomHex(16)
	s.mu.Lock()
	s.appTokens[tok] = s.opts.Now().Add(s.opts.AppTokenTTL)
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, appTokenResponse{
		AccessToken: tok,
		TokenType:   "Bearer",
		ExpiresIn:   int64(s.opts.AppTokenTTL / time.Second),
	})
}

// appAuthed requires a known, unexpired v3 application token; a v2 access
// token is refused like any stranger's.
func (s *Simulator) appAuthed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := bearer(r); !ok || !s.validToken(s.appTokens, tok) {
			writeV3Error(w, http.StatusUnauthorized, "AUTHENTICATION", "", 0)
			return
		}
		h(w, r)
	}
}

// v3VehicleHandler serves a request about one vehicle, given a snapshot.
type v3VehicleHandler func(w http.ResponseWriter, r *http.Request, v vehicle)

// userHeader says whether a v3 vehicle route demands sc-user-id.
type userHeader bool

const (
	userRequired userHeader = true
	// userOptional lets a request without sc-user-id through, while one
	// naming the wrong user is still refused: Smartcar's reference lists no
	// sc-user-id for GET /vehicles/{id}, and its Node SDK's getVehicle
	// cannot send one.
	userOptional userHeader = false
)

// v3Vehicle checks the token, then that the vehicle exists, then
// sc-user-id, before h runs.
func (s *Simulator) v3Vehicle(user userHeader, h v3VehicleHandler) http.HandlerFunc {
	return s.appAuthed(func(w http.ResponseWriter, r *http.Request) {
		v, ok := s.snapshot(r.PathValue("id"))
		if !ok {
			writeV3Error(w, http.StatusNotFound, "RESOURCE_NOT_FOUND", "VEHICLE", 0)
			return
		}
		sent := len(r.Header.Values(headerUserID)) > 0
		if (user == userRequired || sent) && r.Header.Get(headerUserID) != v.info.UserID {
			writeV3Error(w, http.StatusBadRequest, "VALIDATION", "INVALID_USER_ID", 0)
			return
		}
		h(w, r, v)
	})
}

// resourceID is a JSON:API resource identifier.
type resourceID struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type relationship struct {
	Data resourceID `json:"data"`
}

type selfLink struct {
	Self string `json:"self"`
}

type vehicleAttributes struct {
	Make  string `json:"make"`
	Model string `json:"model"`
	Year  int    `json:"year"`
}

func attributesOf(v vehicle) vehicleAttributes {
	return vehicleAttributes{Make: v.info.Make, Model: v.info.Model, Year: v.info.Year}
}

// connectionsPage is GET /v3/connections.
type connectionsPage struct {
	Data  []connectionResource `json:"data"`
	Links pageLinks            `json:"links"`
	Meta  pageMeta             `json:"meta"`
}

type pageLinks struct {
	Self string  `json:"self"`
	Next *string `json:"next"` // null on the last page
}

type pageMeta struct {
	TotalCount int `json:"totalCount"`
	PageNumber int `json:"pageNumber"`
	PageSize   int `json:"pageSize"`
}

type connectionResource struct {
	Type          string                  `json:"type"`
	ID            string                  `json:"id"`
	Attributes    connectionAttributes    `json:"attributes"`
	Relationships connectionRelationships `json:"relationships"`
}

type connectionAttributes struct {
	Vehicle     vehicleAttributes `json:"vehicle"`
	Permissions []string          `json:"permissions"`
	CreatedAt   string            `json:"createdAt"`
}

type connectionRelationships struct {
	Vehicle relationship `json:"vehicle"`
	User    relationship `json:"user"`
}

// Connection paging: page[size] defaults to 10, at most 50.
const (
	defaultPageSize = 10
	maxPageSize     = 50
)

// handleConnections lists the application's connections, oldest first,
// optionally of one user, in JSON:API pages linked by absolute URLs.
func (s *Simulator) handleConnections(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	number, okNumber := intParam(q, "page[number]", 1, 1, int(^uint(0)>>1))
	size, okSize := intParam(q, "page[size]", defaultPageSize, 1, maxPageSize)
	if !okNumber || !okSize {
		writeV3Error(w, http.StatusBadRequest, "VALIDATION", "PARAMETER", 0)
		return
	}
	user := q.Get("filter[userId]")

	var all []connectionResource
	s.mu.Lock()
	for _, id := range s.order {
		v := s.vehicles[id]
		if user != "" && v.info.UserID != user {
			continue
		}
		all = append(all, connectionResource{
			Type: "connection",
			ID:   "conn-" + id,
			Attributes: connectionAttributes{
				Vehicle:     attributesOf(*v),
				Permissions: slices.Clone(v.perms),
				CreatedAt:   timestamp(v.connectedAt),
			},
			Relationships: connectionRelationships{
				Vehicle: relationship{Data: resourceID{Type: "vehicle", ID: id}},
				User:    relationship{Data: resourceID{Type: "user", ID: v.info.UserID}},
			},
		})
	}
	s.mu.Unlock()

	body := connectionsPage{
		Data:  []connectionResource{},
		Links: pageLinks{Self: connectionsURL(r, number, size, user)},
		Meta:  pageMeta{TotalCount: len(all), PageNumber: number, PageSize: size},
	}
	// Compared before multiplying, so a huge page[number] cannot overflow.
	if number-1 <= len(all)/size {
		offset := (number - 1) * size
		body.Data = page(all, size, offset)
		if offset+size < len(all) {
			next := connectionsURL(r, number+1, size, user)
			body.Links.Next = &next
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// intParam reads an integer query parameter in [lo, hi], def when absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, bool) {
	if !q.Has(name) {
		return def, true
	}
	n, err := strconv.Atoi(q.Get(name))
	return n, err == nil && n >= lo && n <= hi
}

// connectionsURL is the absolute URL of one page of connections, on the
// host the client asked, so a client can follow links.next as given.
func connectionsURL(r *http.Request, number, size int, user string) string {
	q := url.Values{}
	q.Set("page[number]", strconv.Itoa(number))
	q.Set("page[size]", strconv.Itoa(size))
	if user != "" {
		q.Set("filter[userId]", user)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: r.Host, Path: "/v3/connections", RawQuery: q.Encode()}
	return u.String()
}

// vehicleDoc is GET /v3/vehicles/{id}.
type vehicleDoc struct {
	Data vehicleResource `json:"data"`
}

type vehicleResource struct {
	Type       string            `json:"type"`
	ID         string            `json:"id"`
	Attributes vehicleAttributes `json:"attributes"`
	Links      selfLink          `json:"links"`
}

func (s *Simulator) handleV3Vehicle(w http.ResponseWriter, r *http.Request, v vehicle) {
	if !slices.Contains(v.perms, permReadVehicleInfo) {
		writeV3Error(w, http.StatusForbidden, "PERMISSION", "", 0)
		return
	}
	writeJSON(w, http.StatusOK, vehicleDoc{Data: vehicleResource{
		Type:       "vehicle",
		ID:         v.info.ID,
		Attributes: attributesOf(v),
		Links:      selfLink{Self: "/vehicles/" + v.info.ID},
	}})
}

// commandDoc is a v3 command execution, the body of a door command.
type commandDoc struct {
	Data commandResource `json:"data"`
}

type commandResource struct {
	Type       string            `json:"type"`
	ID         string            `json:"id"`
	Attributes commandAttributes `json:"attributes"`
}

type commandAttributes struct {
	Command     string        `json:"command"`
	Status      commandStatus `json:"status"`
	CreatedAt   string        `json:"createdAt"`
	CompletedAt *string       `json:"completedAt"` // null while PENDING
}

type commandStatus struct {
	Value string        `json:"value"` // PENDING, SUCCESS or FAILED
	Error *commandError `json:"error,omitempty"`
}

type commandError struct {
	Type   string  `json:"type"`
	Code   *string `json:"code"`
	Detail string  `json:"detail"`
}

// outcomeKey carries a command-outcome Fault from ServeHTTP to the command.
type outcomeKey struct{}

// isCommandOutcome reports whether f, matched on r, is to end a v3 command
// FAILED in its body rather than fail the request.
func isCommandOutcome(f Fault, r *http.Request) bool {
	return f.RawBody == "" && (f.Status == http.StatusOK || f.Status == http.StatusAccepted) &&
		r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v3/vehicles/") &&
		strings.Contains(r.URL.Path, "/commands/")
}

// handleChargePort opens or closes the door. The checks that need no car
// answer at once as errors; then the command takes Latency, answered 200
// at the end or, with Options.Async, 202 at once and streamed.
func (s *Simulator) handleChargePort(w http.ResponseWriter, r *http.Request, v vehicle) {
	action := r.PathValue("action")
	if action != "open" && action != "close" {
		writeV3Error(w, http.StatusNotFound, "RESOURCE_NOT_FOUND", "PATH", 0)
		return
	}
	// Compatibility before permission: the make cannot do this whatever
	// the owner granted.
	if !isTesla(v) {
		writeV3Error(w, http.StatusNotImplemented, "COMPATIBILITY", "MAKE_NOT_COMPATIBLE", 0)
		return
	}
	if !slices.Contains(v.perms, permControlCharge) {
		writeV3Error(w, http.StatusForbidden, "PERMISSION", "", 0)
		return
	}
	open := action == "open"
	if !open && v.plugged {
		writeV3Error(w, http.StatusConflict, "VEHICLE_STATE", "CHARGING_PLUG_CONNECTED", 0)
		return
	}

	doc := commandDoc{Data: commandResource{
		Type: "command-execution",
		ID:   newUUID(),
		Attributes: commandAttributes{
			Command:   "charge-port/" + action,
			Status:    commandStatus{Value: "PENDING"},
			CreatedAt: timestamp(s.opts.Now()),
		},
	}}
	var stream *json.Encoder
	if s.opts.Async {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusAccepted)
		stream = json.NewEncoder(w) // one document a line
		stream.Encode(doc)
		http.NewResponseController(w).Flush()
	}

	fault, failing := r.Context().Value(outcomeKey{}).(Fault)
	if !s.waitLatency(r.Context()) {
		if s.opts.CompleteOnCancel && !failing {
			s.moveDoor(v.info.ID, open)
		}
		return
	}
	if failing {
		typ, code := fault.Type, fault.Code
		if typ == "" {
			typ, code = defaultFault(http.StatusConflict)
		}
		doc.Data.Attributes.Status = commandStatus{Value: "FAILED", Error: &commandError{
			Type: typ, Code: nullable(code), Detail: description(typ, code),
		}}
	} else {
		s.moveDoor(v.info.ID, open)
		doc.Data.Attributes.Status = commandStatus{Value: "SUCCESS"}
	}
	completed := timestamp(s.opts.Now())
	doc.Data.Attributes.CompletedAt = &completed
	if stream != nil {
		stream.Encode(doc)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}
