package codecserver

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// The CORS answers: the methods and request headers a Temporal UI uses
// (X-Namespace on every call; Authorization when it passes a token, and
// Authorization-Extras with it, the ID token of an OIDC login).
const (
	allowMethods = "POST, OPTIONS"
	allowHeaders = "Content-Type, X-Namespace, Authorization, Authorization-Extras"
	// preflightMaxAge lets a browser reuse a preflight answer for 10 minutes.
	preflightMaxAge = "600"
)

// parseOrigins checks each origin (scheme://host[:port], nothing after)
// and returns them as a set, in the form browsers send: lower case, and
// without the scheme's default port.
func parseOrigins(origins []string) (map[string]bool, error) {
	set := make(map[string]bool, len(origins))
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", o, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			strings.TrimSuffix(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%q is not an origin: want scheme://host[:port], such as https://temporal.example.com", o)
		}
		host := u.Host
		if port := u.Port(); u.Scheme == "https" && port == "443" || u.Scheme == "http" && port == "80" {
			host = strings.TrimSuffix(host, ":"+port) // browsers leave the default port out
		}
		set[strings.ToLower(u.Scheme+"://"+host)] = true
	}
	return set, nil
}

// cors sets the CORS headers of the answer to r and reports whether r may
// go on: a request without Origin (the CLI, curl) may; one from an allowed
// origin may and gets Access-Control-Allow-Origin (and, for a preflight,
// the methods and headers it may use); one from any other origin may not
// and gets no CORS headers, so the browser shows its page nothing.
func (s *server) cors(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !s.origins[strings.ToLower(origin)] {
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", allowMethods)
		h.Set("Access-Control-Allow-Headers", allowHeaders)
		h.Set("Access-Control-Max-Age", preflightMaxAge)
	}
	return true
}
