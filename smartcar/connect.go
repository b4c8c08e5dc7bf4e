package smartcar

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/oauth2"
)

// DefaultScope is what Connect asks for when the OAuth config names no
// scopes: exactly the permissions the daemon uses, and nothing more, since
// every extra permission is one more thing the owner must approve.
const DefaultScope = PermReadVehicleInfo + " " + PermReadCharge + " " + PermControlCharge

// TypeConnect is the *Error type for an error Smartcar Connect sent back to
// the redirect URI (Code is its `error`, e.g. "access_denied").
const TypeConnect = "CONNECT"

// CodeAccessDenied is Connect's error when the user pressed "Deny access".
const CodeAccessDenied = "access_denied"

// Timeouts of the local callback server. The exchange with the token endpoint
// runs inside the callback request, so the write timeout covers it.
const (
	callbackReadTimeout  = 10 * time.Second
	callbackWriteTimeout = tokenEndpointTimeout + 30*time.Second
	callbackIdleTimeout  = 30 * time.Second
	callbackShutdown     = 5 * time.Second
)

// Connect is Smartcar Connect onboarding, the `auth` command: it prints the
// Connect URL, serves the redirect URI's path on its host:port until Smartcar
// redirects the browser there, checks `state`, exchanges the code, and saves
// the pair to Store.
type Connect struct {
	// Config names the client, Connect (Endpoint.AuthURL), the token
	// endpoint and RedirectURL. Scopes empty means DefaultScope.
	Config *oauth2.Config
	// Mode is Connect's mode: "live" (default), "simulated" or "test".
	Mode string
	// ForcePrompt shows the approval screen even to a user who approved
	// these permissions before (approval_prompt=force).
	ForcePrompt bool
	Store       *TokenStore
	// Out receives the URL and progress for the user; nil discards them.
	// It never receives a code, token or secret.
	Out io.Writer
	// Listen is the address the callback server binds; default the redirect
	// URI's host:port. In a container, where the browser reaches the
	// published port rather than the container's loopback, set ":PORT".
	Listen string
	// HTTPClient calls the token endpoint; nil: one with a 60 s timeout.
	HTTPClient *http.Client
	UserAgent  string           // of the token endpoint call; DefaultUserAgent if ""
	Now        func() time.Time // anchors the access token's expiry; time.Now if nil
}

// AuthURL is the Connect URL carrying state, as documented at
// https://smartcar.com/docs/connect/redirect-to-connect: response_type=code,
// client_id, redirect_uri, scope (space-separated), state, approval_prompt
// and mode.
func (c Connect) AuthURL(state string) (string, error) {
	conf, mode, err := c.settings()
	if err != nil {
		return "", err
	}
	prompt := "auto"
	if c.ForcePrompt {
		prompt = "force"
	}
	return conf.AuthCodeURL(state,
		oauth2.SetAuthURLParam("approval_prompt", prompt),
		oauth2.SetAuthURLParam("mode", mode)), nil
}

// settings checks the configuration and fills in the defaults, on a copy:
// the caller's *oauth2.Config is never modified.
func (c Connect) settings() (*oauth2.Config, string, error) {
	if c.Config == nil || c.Config.ClientID == "" {
		return nil, "", errors.New("smartcar connect: no client id")
	}
	if c.Config.Endpoint.AuthURL == "" || c.Config.Endpoint.TokenURL == "" {
		return nil, "", errors.New("smartcar connect: Connect URL or token URL missing")
	}
	conf := *c.Config
	if len(conf.Scopes) == 0 {
		conf.Scopes = strings.Fields(DefaultScope)
	}
	mode := c.Mode
	if mode == "" {
		mode = "live"
	}
	if !slices.Contains([]string{"live", "simulated", "test"}, mode) {
		return nil, "", fmt.Errorf("smartcar connect: mode %q: want live, simulated or test", mode)
	}
	return &conf, mode, nil
}

// callbackTarget reads the redirect URI: the path to serve, the address to
// bind, and a note for the user when the port was implied.
func callbackTarget(redirectURI string) (path, addr, note string, err error) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return "", "", "", fmt.Errorf("redirect URI %q: %w", redirectURI, err)
	}
	if u.Scheme != "http" {
		// Serving https would need a certificate the browser trusts for
		// that host, which a one-off command cannot have.
		return "", "", "", fmt.Errorf("redirect URI %q: must start with http:// (auth serves the callback itself, without TLS), e.g. http://localhost:8000/callback, registered in the Smartcar dashboard", redirectURI)
	}
	if u.Hostname() == "" {
		return "", "", "", fmt.Errorf("redirect URI %q: no host", redirectURI)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		note = fmt.Sprintf("Note: the redirect URI %s names no port, so the callback is served on port 80, which may need privileges; a URI like http://localhost:8000/callback avoids that.\n", redirectURI)
	}
	path = u.Path
	if path == "" {
		path = "/"
	}
	return path, net.JoinHostPort(u.Hostname(), port), note, nil
}

// Run performs the whole flow and returns the new pair, already saved to
// Store. It fails on an error redirect from Connect (the user denied access:
// an *Error with Type TypeConnect, Code CodeAccessDenied), on a failed code
// exchange (an *Error with Type TypeOAuth), or when ctx ends, and always
// shuts its server down before returning. A callback whose state does not
// match is answered 400 and otherwise ignored: it cannot come from the
// browser this flow sent to Connect.
func (c Connect) Run(ctx context.Context) (*oauth2.Token, error) {
	conf, _, err := c.settings()
	if err != nil {
		return nil, err
	}
	if c.Store == nil {
		return nil, errors.New("smartcar connect: no token store")
	}
	path, addr, note, err := callbackTarget(conf.RedirectURL)
	if err != nil {
		return nil, fmt.Errorf("smartcar connect: %w", err)
	}
	if c.Listen != "" {
		addr = c.Listen
	}
	state, err := newState()
	if err != nil {
		return nil, fmt.Errorf("smartcar connect: %w", err)
	}
	authURL, err := c.AuthURL(state)
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smartcar connect: serve the redirect URI on %s: %w", addr, err)
	}
	f := &callback{
		c:      c,
		conf:   conf,
		ctx:    ctx,
		path:   path,
		state:  state,
		out:    &lockedWriter{w: c.Out},
		result: make(chan callbackResult, 1),
	}
	srv := &http.Server{
		Handler:           f,
		ReadHeaderTimeout: callbackReadTimeout,
		ReadTimeout:       callbackReadTimeout,
		WriteTimeout:      callbackWriteTimeout,
		IdleTimeout:       callbackIdleTimeout,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	f.out.printf("%sOpen this URL in a browser and sign in to Smartcar:\n\n  %s\n\nWaiting for Smartcar to send the browser back to %s (listening on %s; Ctrl-C to give up) ...\n",
		note, authURL, conf.RedirectURL, ln.Addr())

	var res callbackResult
	select {
	case res = <-f.result:
	case err := <-serveErr:
		res.err = fmt.Errorf("smartcar connect: callback server: %w", err)
	case <-ctx.Done():
		res.err = fmt.Errorf("smartcar connect: gave up waiting for the redirect: %w", ctx.Err())
	}

	// Shutdown lets the handler that produced the result finish its page;
	// the bound keeps a stuck browser connection from holding us.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callbackShutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if res.tok == nil && res.err != nil {
		// A callback that completed while we were giving up has saved its
		// pair: report that, not the cancellation.
		select {
		case late := <-f.result:
			res = late
		default:
		}
	}
	if res.err != nil {
		return nil, res.err
	}
	f.out.printf("Signed in: tokens saved to %s.\n", c.Store.Path())
	return res.tok, nil
}

// newState is the CSRF token of one flow: 256 random bits.
func newState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

type callbackResult struct {
	tok *oauth2.Token
	err error
}

// callback is the handler of the local redirect URI for one flow.
type callback struct {
	c      Connect
	conf   *oauth2.Config
	ctx    context.Context // Run's: the exchange outlives a browser that goes away
	path   string
	state  string
	out    *lockedWriter
	result chan callbackResult // buffered 1; written once

	mu       sync.Mutex
	finished bool // the state is single-use: the first matching callback decides
}

func (f *callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q, ok := redirectQuery(w, r, f.path, f.state, f.out)
	if !ok {
		return
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.finished {
		f.render(w, http.StatusConflict, "Already handled",
			"This sign-in has already been handled. See the terminal running smartcar2mqtt auth.")
		return
	}
	f.finished = true

	if code := q.Get("error"); code != "" {
		e := &Error{Type: TypeConnect, Code: printable(code, maxCallbackText, "…"), Description: printable(q.Get("error_description"), maxCallbackText, "…")}
		msg := e.Code
		if e.Description != "" {
			msg += ": " + e.Description
		}
		f.out.printf("Smartcar Connect did not grant access (%s).\n", msg)
		hint := "Nothing was saved. Run smartcar2mqtt auth again to retry."
		if e.Code == CodeAccessDenied {
			hint = "Access was denied, so nothing was saved. Run smartcar2mqtt auth again and approve the permissions to connect a vehicle."
		}
		f.render(w, http.StatusOK, "Smartcar did not grant access", msg+". "+hint)
		f.result <- callbackResult{err: fmt.Errorf("smartcar connect: %w", e)}
		return
	}
	code := q.Get("code")
	if code == "" {
		f.render(w, http.StatusBadRequest, "No authorization code", "Smartcar sent neither a code nor an error. Run smartcar2mqtt auth again.")
		f.result <- callbackResult{err: errors.New("smartcar connect: the redirect carried neither a code nor an error")}
		return
	}
	tok, err := f.exchange(code)
	if err != nil {
		f.out.printf("Could not finish signing in: %v\n", err)
		f.render(w, http.StatusBadGateway, "Sign-in failed", "Smartcar approved the request, but finishing it failed: "+err.Error()+". See the terminal, then run smartcar2mqtt auth again.")
		f.result <- callbackResult{err: err}
		return
	}
	f.render(w, http.StatusOK, "Vehicle connected", "smartcar2mqtt is signed in to Smartcar. You can close this tab.")
	f.result <- callbackResult{tok: tok}
}

// exchange redeems the code and saves the pair before the page says so.
func (f *callback) exchange(code string) (*oauth2.Token, error) {
	return f.c.exchange(f.ctx, f.conf, code)
}

// exchange redeems an authorization code and saves the pair to Store.
func (c Connect) exchange(ctx context.Context, conf *oauth2.Config, code string) (*oauth2.Token, error) {
	nt, err := conf.Exchange(tokenContext(ctx, c.HTTPClient, c.UserAgent), code)
	if err != nil {
		err = oauthError(err, code, conf.ClientSecret)
		return nil, fmt.Errorf("smartcar connect: exchange the authorization code: %w", err)
	}
	if nt.RefreshToken == "" {
		return nil, errors.New("smartcar connect: the token endpoint returned no refresh token")
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	tok := issuedToken(nt, now())
	if err := c.Store.SaveObtained(tok, now()); err != nil {
		return nil, fmt.Errorf("smartcar connect: %w", err)
	}
	return tok, nil
}

func (f *callback) render(w http.ResponseWriter, status int, title, msg string) {
	renderPage(w, status, title, msg)
}

// redirectQuery is the query of a redirect from Connect to path, once it is
// known to come from the browser this flow sent there: a GET whose state
// matches. It has answered the request when ok is false. The state is checked
// before anything else, errors included: a forged error=access_denied must
// not end the flow either.
func redirectQuery(w http.ResponseWriter, r *http.Request, path, state string, out *lockedWriter) (q url.Values, ok bool) {
	if r.URL.Path != path {
		http.NotFound(w, r)
		return nil, false
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return nil, false
	}
	q = r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		out.printf("Ignored a request to the callback with a missing or wrong state (not the browser sent to Smartcar by this command); still waiting.\n")
		renderPage(w, http.StatusBadRequest, "Wrong sign-in link",
			"This page does not belong to the sign-in that smartcar2mqtt auth is waiting for (the state does not match). Open the URL it printed instead.")
		return nil, false
	}
	return q, true
}

// renderPage answers the browser Smartcar Connect sent back.
func renderPage(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The URL this page was served for holds the code or user id; keep it
	// out of Referer headers should the user follow a link from here.
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	callbackTemplate.Execute(w, struct{ Title, Message string }{title, msg})
}

// callbackTemplate is parsed once; templates are safe for concurrent use.
var callbackTemplate = template.Must(template.New("page").Parse(callbackPage))

const callbackPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smartcar2mqtt: {{.Title}}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
</body></html>
`

// maxCallbackText bounds a value from the callback URL (error,
// error_description) on the user's terminal.
const maxCallbackText = 300

// lockedWriter serialises writes to Out from the handler and from Run.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) printf(format string, args ...any) {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, args...)
}

// PrintVehicles writes vs as a table: make, model, year, id, the Smartcar
// user (API v3), and whether the charge port door is offered (and why not).
func PrintVehicles(w io.Writer, vs []VehicleDetails) error {
	if len(vs) == 0 {
		_, err := fmt.Fprintln(w, "No vehicles are visible to this login: run smartcar2mqtt auth again and select a vehicle in Smartcar Connect.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAKE\tMODEL\tYEAR\tID\tUSER\tCHARGE PORT DOOR")
	for _, v := range vs {
		door := "yes"
		if ok, why := v.ChargePortDoorSupport(); !ok {
			door = "no: " + why
		}
		year := "?"
		if v.Year != 0 {
			year = strconv.Itoa(v.Year)
		}
		user := v.UserID
		if user == "" {
			user = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Make, v.Model, year, v.ID, user, door)
	}
	return tw.Flush()
}
