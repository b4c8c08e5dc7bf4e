// Package status serves the daemon's health and metrics over HTTP (/healthz and
// /metrics) and probes them for `smartcar2mqtt healthcheck`. It reads the other
// parts through snapshots and small checks; it changes nothing.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Check is one part of the daemon's health: Run returns nil while that part is well.
type Check struct {
	Name string
	Run  func() error
}

// Report is the /healthz body: every part by name, "ok" or what is wrong.
type Report struct {
	Status string            `json:"status"` // ok or unhealthy
	Checks map[string]string `json:"checks"`
}

// Waiting is a check's answer for a wait that ends by itself, like no
// Smartcar login yet: the report says so, and the daemon stays healthy (a
// container restarted for it would wait all the same).
func Waiting(reason string) error { return waiting(reason) }

type waiting string

func (w waiting) Error() string { return string(w) }

// Evaluate runs every check.
func Evaluate(checks []Check) Report {
	r := Report{Status: "ok", Checks: make(map[string]string, len(checks))}
	for _, c := range checks {
		err := c.Run()
		var w waiting
		if errors.As(err, &w) {
			r.Checks[c.Name] = "waiting: " + string(w)
			continue
		}
		if err != nil {
			r.Status = "unhealthy"
			r.Checks[c.Name] = err.Error()
			continue
		}
		r.Checks[c.Name] = "ok"
	}
	return r
}

// Routes are what Handler serves.
type Routes struct {
	Checks  []Check
	Metrics *Metrics
	Page    *Page        // the web page; nil: none
	Webhook http.Handler // POST /webhooks/smartcar; nil: the path does not exist
	// Hosts guards the page; nil answers any Host, for a listener only a
	// trusted proxy reaches (Home Assistant's Ingress, which passes on the
	// browser's Host and stands behind Home Assistant's login).
	Hosts *HostGuard
}

// Handler serves /healthz (200 when every check passes, else 503, with a JSON
// Report either way), /metrics, the web page and the webhook receiver. Only
// the page is guarded by Hosts: the webhook is Smartcar's, at whatever public
// name the user exposes it, and proves itself by its signature; /healthz and
// /metrics change nothing and show no secret.
func Handler(r Routes) http.Handler {
	checks, metrics := r.Checks, r.Metrics
	mux := http.NewServeMux()
	if r.Page != nil {
		page := http.NewServeMux()
		r.Page.register(page)
		if r.Hosts != nil {
			mux.Handle("/", r.Hosts.Wrap(page))
		} else {
			mux.Handle("/", page)
		}
	}
	if r.Webhook != nil {
		mux.Handle("/webhooks/smartcar", r.Webhook)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		r := Evaluate(checks)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(r)
	})
	mux.Handle("GET /metrics", metrics)
	return mux
}

// ListenError is HTTP_LISTEN's address that cannot be listened on: a port
// in use, or one the process may not take.
type ListenError struct {
	Addr string
	Err  error
}

func (e *ListenError) Error() string { return fmt.Sprintf("HTTP_LISTEN %q: %v", e.Addr, e.Err) }
func (e *ListenError) Unwrap() error { return e.Err }

// Listen takes the address before anything else starts, so a port in use is
// found at start-up.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err // the address is said once, by ListenError
		}
		return nil, &ListenError{Addr: addr, Err: err}
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends. Every request is bounded in time,
// its body too: the webhook path may face the internet, where a client that
// sends a byte a minute must not hold a connection for ever.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// Probe asks the daemon listening on listen (HTTP_LISTEN) whether it is healthy,
// over loopback when listen names no host or every interface. It returns nil only
// for a 200 from /healthz.
func Probe(ctx context.Context, listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("HTTP_LISTEN %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", url, err)
	}
	defer resp.Body.Close()
	var r Report
	json.NewDecoder(resp.Body).Decode(&r)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %v", r.Checks)
	}
	return nil
}

// OnlyFrom serves h to requests from the one address allowed (the Home
// Assistant Supervisor's Ingress proxy on the add-on's Ingress port) and 403
// to anyone else.
func OnlyFrom(h http.Handler, allowed string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || from.Addr().Unmap().String() != allowed {
			http.Error(w, "forbidden: this port answers Home Assistant's Ingress proxy only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
