package status

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"html"
	"html/template"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Page is the daemon's web page: each vehicle with its door, companions,
// availability, last error and this month's calls; the login; and Connect a
// car. It reads the other parts through these functions and changes nothing
// but a Connect flow.
type Page struct {
	Bridge func() bridge.Status
	Usage  func() smartcar.UsageSnapshot
	// Login is the Smartcar login's health: nil, a Waiting error (no login
	// yet), or what is wrong.
	Login func() error
	// Connect runs Connect a car; nil when it cannot be offered, and
	// ConnectMissing says why (e.g. no Application ID).
	Connect        Connector
	ConnectMissing string
	APIVersion     string // v3 or v2
	PollInterval   time.Duration
	Version        string
}

// Connector is the Connect flow the page drives (smartcar.WebConnect).
type Connector interface {
	Start() (link string, err error)
	Finish(ctx context.Context, address string) error
	State() smartcar.ConnectState
}

// The page is one HTML document with its style and script inline, so a first
// load is one request, and the Content-Security-Policy admits exactly those
// two by hash.
//
//go:embed page.html page.css page.js
var pageFiles embed.FS

// ingressPathHeader is the path prefix Home Assistant's Ingress proxy serves
// the page under, e.g. /api/hassio_ingress/<token>.
const ingressPathHeader = "X-Ingress-Path"

// listingCallsAMonth is what the daily vehicle listing spends in a month of
// the plan arithmetic's 30 days.
const listingCallsAMonth = 30

// pageParts are the parts of the page the script swaps in when they change.
func pageParts() []string { return []string{"vehicles", "connect", "account"} }

// pageServer serves one Page.
type pageServer struct {
	page   *Page
	tmpl   *template.Template
	style  template.CSS
	script template.JS
	csp    string
	// starts counts the Connect presses answered, failed or not: the
	// script keeps its own "Waiting for Smartcar…" until the count moves.
	starts atomic.Uint64

	mu   sync.Mutex
	last *rendering // nil before the first
}

// register adds the page's routes to mux: GET / (exactly) and GET /state, and
// the two forms, which refuse cross-site requests with 403.
func (p *Page) register(mux *http.ServeMux) {
	s, err := newPageServer(p)
	if err != nil {
		panic(err) // the embedded files are part of the build: a test catches this
	}
	guard := http.NewCrossOriginProtection()
	guard.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.secure(w)
		http.Error(w, "forbidden: this form only accepts requests from the page itself, not from another site", http.StatusForbidden)
	}))
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /state", s.serveState)
	mux.Handle("POST /connect", guard.Handler(http.HandlerFunc(s.startConnect)))
	mux.Handle("POST /connect/finish", guard.Handler(http.HandlerFunc(s.finishConnect)))
}

func newPageServer(p *Page) (*pageServer, error) {
	style, err := pageFiles.ReadFile("page.css")
	if err != nil {
		return nil, err
	}
	script, err := pageFiles.ReadFile("page.js")
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New("page.html").Funcs(template.FuncMap{
		"when": when, "yesNo": yesNo, "amount": amount, "doorText": doorText,
		"chargingText": chargingText, "latchText": latchText, "sentence": sentence,
	}).ParseFS(pageFiles, "page.html")
	if err != nil {
		return nil, fmt.Errorf("web page template: %w", err)
	}
	return &pageServer{
		page: p, tmpl: tmpl, style: template.CSS(style), script: template.JS(script),
		// Nothing loads from anywhere but this origin: no CDN, font or
		// framework. 'self' in frame-ancestors lets Home Assistant's Ingress
		// panel, served from the same origin, show the page in its iframe.
		// form-action is left open: the Connect form's answer redirects to
		// Smartcar, and browsers check form-action on redirects too.
		csp: "default-src 'none'; script-src " + cspHash(script) + "; style-src " + cspHash(style) +
			"; connect-src 'self'; img-src data:; base-uri 'self'; frame-ancestors 'self'",
	}, nil
}

func cspHash(b []byte) string {
	sum := sha256.Sum256(b)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// secure sets the headers every answer of the page carries. The referrer
// policy is same-origin, not no-referrer: under no-referrer a browser sends
// "Origin: null" with the page's own forms, and on plain HTTP (Home
// Assistant's default) without Sec-Fetch-Site that is indistinguishable from
// a cross-site request. Other sites, Smartcar included, get no referrer.
func (s *pageServer) secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

func (s *pageServer) servePage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "")
}

// render answers with the whole page, notice (if any) at its top.
func (s *pageServer) render(w http.ResponseWriter, r *http.Request, code int, notice string) {
	body, err := s.pageHTML(pageBase(r), notice)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.secure(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

// serveState is what the page's script polls: the same view as the page, and
// each part of the page rendered, to swap in where it changed.
func (s *pageServer) serveState(w http.ResponseWriter, _ *http.Request) {
	rd, err := s.rendered()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.secure(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(rd.state)))
	w.Write(rd.state)
}

// startConnect begins Connect a car and sends the browser (the new tab the
// form opened) to Smartcar's Connect.
func (s *pageServer) startConnect(w http.ResponseWriter, r *http.Request) {
	if s.page.Connect == nil {
		s.render(w, r, http.StatusConflict, "Connect a car is not available here: "+s.page.ConnectMissing)
		return
	}
	link, err := s.page.Connect.Start()
	s.starts.Add(1) // after Start: a poll that sees the count sees its state
	if err != nil {
		s.render(w, r, http.StatusInternalServerError, "Smartcar Connect could not start: "+smartcar.ConnectProblem(err))
		return
	}
	s.secure(w)
	w.Header().Set("Location", link) // Smartcar's, absolute
	w.WriteHeader(http.StatusSeeOther)
}

// maxFinishForm bounds the pasted-address form; a real address is well under.
const maxFinishForm = 16 << 10

// finishConnect completes an API v2.0 Connect with the address the browser
// ended on. A refusal is shown on the page; success goes back to the page.
func (s *pageServer) finishConnect(w http.ResponseWriter, r *http.Request) {
	if s.page.Connect == nil {
		s.render(w, r, http.StatusConflict, "Connect a car is not available here: "+s.page.ConnectMissing)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFinishForm)
	if err := r.ParseForm(); err != nil {
		s.render(w, r, http.StatusBadRequest, "The form could not be read: paste only the address your browser ended on.")
		return
	}
	if err := s.page.Connect.Finish(r.Context(), r.PostForm.Get("address")); err != nil {
		s.render(w, r, http.StatusBadRequest, "Connect did not finish: "+finishProblem(err, s.page.Connect.State()))
		return
	}
	// Back to the page. Not http.Redirect: it would resolve a relative
	// path against r.URL.Path, which lacks any proxy's prefix.
	location := pageBase(r)
	s.secure(w)
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusSeeOther)
}

// finishProblem words a refused Finish: a flow that ended says why in the
// state's own words (never an error chain that could quote an answer);
// anything else is the address's problem, which the error says.
func finishProblem(err error, st smartcar.ConnectState) string {
	if !errors.Is(err, smartcar.ErrNoFlow) && st.Phase == smartcar.ConnectFailed && st.Problem != "" {
		return st.Problem
	}
	return err.Error()
}

// pageBase is the <base href> of a page answering r: the Ingress prefix;
// else, for a form's answer at a deeper path (…/connect/finish), the way
// back up to the page's directory, relative so that a reverse proxy's
// sub-path stays in; "" for the page itself.
func pageBase(r *http.Request) string {
	if prefix := ingressPrefix(r); prefix != "" {
		return prefix + "/"
	}
	return strings.Repeat("../", strings.Count(strings.TrimPrefix(r.URL.Path, "/"), "/"))
}

// ingressPrefix is the Ingress proxy's path prefix without its trailing
// slash, or "" when the request has none, or one that is not a plain path.
func ingressPrefix(r *http.Request) string {
	p := r.Header.Get(ingressPathHeader)
	if !validIngressPath(p) {
		return ""
	}
	return strings.TrimRight(p, "/")
}

// validIngressPath accepts an absolute path of letters, digits and -_./
// only, as Home Assistant's /api/hassio_ingress/<token> is: no scheme, host
// or query can ride in (a leading // would be another host), and no dot
// segment, escaped or not, can climb out of it.
func validIngressPath(p string) bool {
	if len(p) < 2 || len(p) > 512 || p[0] != '/' || p[1] == '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_./", c) >= 0) {
			return false
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// pageView is what the page shows, and, as JSON, the state endpoint's
// answer. It holds no secret: no token, no client secret; the Connect link
// carries only its flow's single-use state.
type pageView struct {
	Version  string              `json:"version"`
	API      string              `json:"api"`
	Login    loginView           `json:"login"`
	Connect  connectView         `json:"connect"`
	Usage    usageView           `json:"usage"`
	Vehicles []vehicleView       `json:"vehicles"`
	Parts    map[string]pagePart `json:"parts"`

	Base   string       `json:"-"` // <base href>, see pageBase; "" for none
	Notice string       `json:"-"` // the answer to a form
	Style  template.CSS `json:"-"`
	Script template.JS  `json:"-"`
}

// pagePart is one part of the page rendered, and a digest the script
// compares to know whether it changed.
type pagePart struct {
	HTML template.HTML `json:"html"`
	V    string        `json:"v"`
}

type loginView struct {
	State string `json:"state"` // ok, waiting or error
	Text  string `json:"text"`
}

type connectView struct {
	Offered bool      `json:"offered"`
	Missing string    `json:"missing,omitempty"` // why not offered
	Phase   string    `json:"phase"`             // "", waiting, connected or failed
	Started time.Time `json:"started,omitzero"`
	// StartedID tells one flow from the next, whatever the browser's clock.
	StartedID    string      `json:"startedID,omitempty"`
	Starts       uint64      `json:"starts"` // presses answered, see pageServer.starts
	Link         string      `json:"link,omitempty"`
	NeedsAddress bool        `json:"needsAddress"`
	New          []connected `json:"new,omitempty"`
	// Listed: every car connected is under Vehicles already, so the page
	// says where it is instead of that it will come.
	Listed  bool   `json:"listed,omitempty"`
	Problem string `json:"problem,omitempty"`
}

type connected struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type usageView struct {
	Month string `json:"month"` // UTC, as Smartcar bills
	Total int    `json:"total"`
	Today int    `json:"today"`
	// PollInterval is "off" or a duration, e.g. 6h.
	PollInterval     string `json:"pollInterval"`
	ReadsPerCar      int    `json:"readsPerCarPerMonth"`
	ListingPerMonth  int    `json:"listingPerMonth"`
	PlanPerCar       int    `json:"planCallsPerVehiclePerMonth"`
	EstimatePerMonth int    `json:"estimatePerMonth"`
	Estimate         string `json:"estimate"` // in words
}

type vehicleView struct {
	ID                 string     `json:"id"`
	Name               string     `json:"name"` // year make model
	Make               string     `json:"make"`
	Model              string     `json:"model"`
	Year               int        `json:"year,omitempty"`
	Unbridged          bool       `json:"unbridged,omitempty"` // no entity in Home Assistant
	Available          bool       `json:"available"`
	Door               string     `json:"door"` // open, closed, opening, closing; "" unknown
	HasDoor            bool       `json:"hasDoor"`
	PluggedIn          *bool      `json:"pluggedIn"` // null: unknown
	Charging           *string    `json:"charging"`
	Latch              *string    `json:"latch"`
	ChargeLimitPercent *float64   `json:"chargeLimitPercent"`
	EnergyAddedKWh     *float64   `json:"energyAddedKWh"`
	KnownAt            time.Time  `json:"knownAt,omitzero"`
	ReadAt             time.Time  `json:"readAt,omitzero"`
	LastCommand        string     `json:"lastCommand,omitempty"`
	LastCommandResult  string     `json:"lastCommandResult,omitempty"`
	LastCommandAt      time.Time  `json:"lastCommandAt,omitzero"`
	Error              *errorView `json:"error,omitempty"`
	LastDeliveryAt     time.Time  `json:"lastDeliveryAt,omitzero"`
	CallsThisMonth     int        `json:"callsThisMonth"`
}

type errorView struct {
	Type        string    `json:"type"`
	Code        string    `json:"code"`
	Description string    `json:"description"`
	Resolution  string    `json:"resolution,omitempty"`
	At          time.Time `json:"at,omitzero"`
}

// view gathers what the page shows now.
func (s *pageServer) view() pageView {
	p := s.page
	var st bridge.Status
	if p.Bridge != nil {
		st = p.Bridge()
	}
	var u smartcar.UsageSnapshot
	if p.Usage != nil {
		u = p.Usage()
	}
	v := pageView{Version: p.Version, API: p.APIVersion, Login: s.login(), Connect: s.connect(), Vehicles: []vehicleView{}}
	for _, car := range st.Vehicles {
		v.Vehicles = append(v.Vehicles, vehicle(car, u.Vehicles[car.ID]))
	}
	v.Usage = usage(u, p.PollInterval, len(v.Vehicles))
	v.Connect.Listed = len(v.Connect.New) > 0 && allListed(v.Connect.New, v.Vehicles)
	return v
}

func allListed(cars []connected, vehicles []vehicleView) bool {
	for _, c := range cars {
		if !slices.ContainsFunc(vehicles, func(v vehicleView) bool { return v.ID == c.ID }) {
			return false
		}
	}
	return true
}

// rendering is one view rendered: its parts, the state endpoint's answer,
// and the last whole page asked for. It is kept while the view stays the
// same, so an open page polling every few seconds renders nothing anew and
// leaves next to no garbage in an idle daemon.
type rendering struct {
	view  pageView // as gathered, without Parts: what a new view is compared with
	parts map[string]pagePart
	state []byte

	pageBase string // the <base> of page; one at a time: a daemon is reached one way or two
	page     []byte
}

// rendered is the rendering of the view now, from the cache when the view
// has not changed.
func (s *pageServer) rendered() (*rendering, error) {
	v := s.view()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil && reflect.DeepEqual(s.last.view, v) {
		return s.last, nil
	}
	rd := &rendering{view: v, parts: make(map[string]pagePart, len(pageParts()))}
	for _, name := range pageParts() {
		var b bytes.Buffer
		if err := s.tmpl.ExecuteTemplate(&b, name, v); err != nil {
			return nil, fmt.Errorf("web page %s: %w", name, err)
		}
		h := fnv.New64a()
		h.Write(b.Bytes())
		rd.parts[name] = pagePart{HTML: template.HTML(b.String()), V: strconv.FormatUint(h.Sum64(), 36)}
	}
	v.Parts = rd.parts
	state, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("web page state: %w", err)
	}
	rd.state = state
	s.last = rd
	return rd, nil
}

// pageHTML is the whole page under base, with notice at its top.
func (s *pageServer) pageHTML(base, notice string) ([]byte, error) {
	rd, err := s.rendered()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if notice == "" && rd.page != nil && rd.pageBase == base {
		defer s.mu.Unlock()
		return rd.page, nil
	}
	s.mu.Unlock()
	v := rd.view
	v.Parts, v.Base, v.Notice, v.Style, v.Script = rd.parts, base, notice, s.style, s.script
	var body bytes.Buffer
	if err := s.tmpl.Execute(&body, v); err != nil {
		return nil, fmt.Errorf("web page: %w", err)
	}
	if notice == "" {
		s.mu.Lock()
		rd.pageBase, rd.page = base, body.Bytes()
		s.mu.Unlock()
	}
	return body.Bytes(), nil
}

func (s *pageServer) login() loginView {
	p := s.page
	var err error
	if p.Login != nil {
		err = p.Login()
	}
	var w waiting
	switch {
	case err == nil && p.APIVersion == "v2":
		return loginView{"ok", "logged in"}
	case err == nil:
		return loginView{"ok", "in use; Smartcar has not refused them"}
	case errors.As(err, &w) && p.Connect != nil:
		return loginView{"waiting", "waiting for a login: press Connect a car"}
	case errors.As(err, &w):
		return loginView{"waiting", "waiting for a login: " + string(w)}
	default:
		return loginView{"error", err.Error()}
	}
}

func (s *pageServer) connect() connectView {
	if s.page.Connect == nil {
		return connectView{Missing: s.page.ConnectMissing}
	}
	starts := s.starts.Load() // before State: a count that moved comes with its state
	st := s.page.Connect.State()
	c := connectView{Offered: true, Phase: string(st.Phase), Started: st.Started, Link: st.Link,
		NeedsAddress: st.NeedsAddress, Problem: st.Problem, Starts: starts}
	if !st.Started.IsZero() {
		c.StartedID = strconv.FormatInt(st.Started.UnixNano(), 36)
	}
	for _, car := range st.New {
		c.New = append(c.New, connected{ID: car.ID, Name: carName(car.Year, car.Make, car.Model, car.ID)})
	}
	return c
}

func vehicle(car bridge.VehicleStatus, calls int) vehicleView {
	v := vehicleView{
		ID: car.ID, Name: carName(car.Year, car.Make, car.Model, car.ID), Make: car.Make, Model: car.Model, Year: car.Year,
		Unbridged: car.Unbridged, Available: car.Available, Door: car.Door, HasDoor: car.HasDoor, KnownAt: car.KnownAt, ReadAt: car.ReadAt,
		LastCommand: car.LastCommand, LastCommandResult: car.LastCommandResult, LastCommandAt: car.LastCommandAt,
		LastDeliveryAt: car.LastDeliveryAt, CallsThisMonth: calls,
	}
	if c := car.Charge; c != nil {
		v.PluggedIn, v.Charging, v.Latch, v.ChargeLimitPercent, v.EnergyAddedKWh = c.PluggedIn, c.Charging, c.Latch, c.LimitPercent, c.EnergyAdded
	}
	if e := car.Error; e != nil {
		v.Error = &errorView{Type: e.Type, Code: e.Code, Description: e.Description, Resolution: e.Resolution, At: e.At}
	}
	return v
}

// carName is "Year Make Model", or the id when Smartcar named nothing.
func carName(year int, maker, model, id string) string {
	var parts []string
	if year != 0 {
		parts = append(parts, strconv.Itoa(year))
	}
	for _, s := range []string{maker, model} {
		if s = strings.TrimSpace(s); s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return id
	}
	return strings.Join(parts, " ")
}

// usage is the month's calls and what the poll interval will spend: a read
// per car every interval, and the daily vehicle listing.
func usage(u smartcar.UsageSnapshot, poll time.Duration, cars int) usageView {
	v := usageView{Month: u.Month, Total: u.Total, Today: u.Today, PollInterval: "off",
		ListingPerMonth: listingCallsAMonth, PlanPerCar: config.PlanCallsPerVehicle}
	if v.Month == "" {
		v.Month = time.Now().UTC().Format("2006-01")
	}
	if poll <= 0 {
		v.EstimatePerMonth = listingCallsAMonth
		v.Estimate = fmt.Sprintf("Polling is off (poll interval 0): a car is read only on Refresh, after a command, or from a webhook. "+
			"The daily vehicle listing costs about %d calls a month.", listingCallsAMonth)
		return v
	}
	v.PollInterval = config.ShortDuration(poll)
	v.ReadsPerCar = int(config.ReadsPerMonth(poll))
	v.EstimatePerMonth = v.ReadsPerCar*cars + listingCallsAMonth
	v.Estimate = fmt.Sprintf("Polling every %s spends about %d reads a month per car, plus about %d a month for the daily vehicle listing: "+
		"about %d a month for %s, before commands and Refresh. Smartcar plans allow roughly %d calls per vehicle a month.",
		v.PollInterval, v.ReadsPerCar, listingCallsAMonth, v.EstimatePerMonth, plural(cars, "car"), config.PlanCallsPerVehicle)
	if v.ReadsPerCar > config.PlanCallsPerVehicle {
		v.Estimate += " Polling alone spends more than that: set a longer poll interval."
	}
	return v
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// when is a moment as a <time> element (which the page's script shows in the
// browser's own time zone), or "never".
func when(t time.Time) template.HTML {
	if t.IsZero() {
		return "never"
	}
	return template.HTML(`<time datetime="` + t.UTC().Format(time.RFC3339) + `">` +
		html.EscapeString(t.Local().Format("2006-01-02 15:04:05 MST")) + `</time>`)
}

// sentence ends s with a full stop unless it has one.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsRune(".!?", rune(s[len(s)-1])) {
		return s
	}
	return s + "."
}

func yesNo(b *bool) string {
	switch {
	case b == nil:
		return "unknown"
	case *b:
		return "yes"
	default:
		return "no"
	}
}

func amount(v *float64, unit string) string {
	if v == nil {
		return "unknown"
	}
	return strconv.FormatFloat(math.Round(*v*10)/10, 'f', -1, 64) + " " + unit
}

func doorText(v vehicleView) string {
	switch {
	case !v.HasDoor:
		return "no charge port command for this car (no cover)"
	case v.Door == "":
		return "unknown"
	default:
		return v.Door
	}
}

func chargingText(s *string) string {
	if s == nil {
		return "unknown"
	}
	switch *s {
	case "CHARGING":
		return "charging"
	case "NOT_CHARGING":
		return "not charging"
	case "FULLY_CHARGED":
		return "fully charged"
	}
	return strings.ToLower(*s)
}

func latchText(s *string) string {
	if s == nil {
		return "unknown"
	}
	switch *s {
	case smartcar.LatchEngaged:
		return "engaged (cable locked)"
	case smartcar.LatchDisengaged:
		return "disengaged"
	}
	return strings.ToLower(*s)
}
