package smartcarsim

import (
	"net/http"
	"net/url"
	"slices"
)

// handleAuthorize is a minimal Connect for both API versions, told apart by
// client_id: the user approves at once (or denies, with DenyConnect) and is
// redirected to redirect_uri with the caller's state and, for v2, a code to
// exchange or, for v3, the user_id of the connection just made (v3 has no
// per-user tokens to exchange it for). Like Connect, it shows an error page
// instead of redirecting when the request itself is wrong: an OAuth server
// never redirects to an address it cannot trust.
func (s *Simulator) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var v3 bool
	switch id := q.Get("client_id"); {
	case s.opts.ApplicationID != "" && id == s.opts.ApplicationID:
		v3 = true
	case id == s.opts.ClientID:
	default:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "" || redirect.Fragment != "" {
		http.Error(w, "invalid redirect_uri", http.StatusBadRequest)
		return
	}
	if q.Get("response_type") != "code" {
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	}
	if m := q.Get("mode"); m != "" && m != "live" && m != "simulated" && m != "test" {
		http.Error(w, "mode must be live, simulated or test", http.StatusBadRequest)
		return
	}
	if p := q.Get("approval_prompt"); p != "" && p != "auto" && p != "force" {
		http.Error(w, "approval_prompt must be auto or force", http.StatusBadRequest)
		return
	}
	rq := redirect.Query()
	switch {
	case s.opts.DenyConnect:
		rq.Set("error", "access_denied")
		rq.Set("error_description", "User denied access to application.")
	case v3:
		rq.Set("user_id", s.connect())
	default:
		code := "sim-code-" + randomHex(8)
		s.mu.Lock()
		s.codes[code] = q.Get("redirect_uri")
		s.mu.Unlock()
		rq.Set("code", code)
	}
	if st := q.Get("state"); st != "" {
		rq.Set("state", st)
	}
	redirect.RawQuery = rq.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// connect makes the connection a v3 Connect approval makes: the next queued
// one, else a fresh Tesla for a fresh user. It returns the user's id.
func (s *Simulator) connect() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := queuedConnect{
		v:     Vehicle{UserID: newUUID(), Make: "TESLA", Model: "Model Y", Year: 2024},
		perms: []string{permReadVehicleInfo, permReadCharge, permControlCharge},
	}
	if len(s.queued) > 0 {
		c = s.queued[0]
		s.queued = slices.Delete(s.queued, 0, 1)
	}
	if c.v.ID == "" {
		c.v.ID = newUUID()
	}
	if c.v.UserID == "" {
		c.v.UserID = UserID
	}
	s.addLocked(c.v, c.perms)
	return c.v.UserID
}
