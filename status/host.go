package status

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// HostGuard refuses a request whose Host the page does not answer to. The
// page has no login and can start a Connect; a site the user visits could
// otherwise point its own name at the daemon's address (DNS rebinding) and
// use the page as if it were on the home network, because the browser
// then counts the page as that site's own. A rebinding site's name is a
// public DNS name, so the page answers IP addresses, localhost and names
// only the home network resolves, and the names the user allows.
type HostGuard struct {
	// Allowed are more names (lower case, no trailing dot); one that starts
	// with a dot allows every name under that domain.
	Allowed []string
}

// homeSuffixes end names that public DNS does not resolve: mDNS, the home
// network's own zone, and the names reserved for private use.
var homeSuffixes = [...]string{".local", ".lan", ".home.arpa", ".internal", ".localhost"}

// Answers reports whether the page answers to host (a Host header, with or
// without a port).
func (g HostGuard) Answers(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || !strings.Contains(host, ".") {
		return true
	}
	for _, suffix := range homeSuffixes {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return slices.ContainsFunc(g.Allowed, func(a string) bool {
		return host == a || strings.HasPrefix(a, ".") && (strings.HasSuffix(host, a) || host == a[1:])
	})
}

// Wrap refuses, with 403 and what to do, a request h would answer for a
// Host g does not allow.
func (g HostGuard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.Answers(r.Host) {
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "forbidden: this page answers at an IP address, localhost or a name of the home network. "+
				"To open it at this name, add the name to HTTP_ALLOWED_HOSTS (this keeps other sites from reaching it through DNS rebinding)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
