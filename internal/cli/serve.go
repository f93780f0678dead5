package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Exposure says what a listener of Serve serves, for its log lines and
// errors.
type Exposure struct {
	// Field names the setting that gave the address ("metrics.listen",
	// "-listen"), for errors.
	Field string
	// What lists what is served, such as "/metrics, /healthz and /readyz".
	What string
	// Sensitive, when set, is what makes a wildcard address dangerous
	// rather than merely broad ("/debug/pprof/ ..."): Serve then logs the
	// wildcard warning at error level and names it.
	Sensitive string
}

// Serve serves h on addr until stop is called. A wildcard address (an
// empty host, "0.0.0.0", "::") serves every interface of the host; Serve
// logs a warning that says so, naming the interfaces' addresses and what
// is served, louder when e.Sensitive is set.
func Serve(addr string, h http.Handler, log *slog.Logger, e Exposure) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", e.Field, addr, err)
	}
	srv := newServer(h, readTimeout)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("server stopped", "field", e.Field, "err", err)
		}
	}()
	log.Info("serving "+e.What, "addr", ln.Addr().String())
	if Wildcard(ln.Addr()) {
		warnWildcard(log, ln.Addr(), e)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// readTimeout bounds reading a whole request, body included, and how long
// a kept-alive connection may sit idle.
const readTimeout = 30 * time.Second

// newServer serves h, giving up on a request not read within read: a
// client that sends headers and then no body (the codec server's POSTs,
// even without a token) held its connection and goroutine for ever. No
// write timeout: a CPU profile (/debug/pprof/profile) writes for as long
// as it samples.
func newServer(h http.Handler, read time.Duration) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: min(read, 5*time.Second), ReadTimeout: read, IdleTimeout: 4 * read}
}

// Wildcard reports whether a listener's address is every interface's
// (0.0.0.0 or ::, which is what an empty host binds).
func Wildcard(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && (tcp.IP == nil || tcp.IP.IsUnspecified())
}

// warnWildcard logs that addr serves every interface.
func warnWildcard(log *slog.Logger, addr net.Addr, e Exposure) {
	var ifaces []string
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ifaces = append(ifaces, ipn.IP.String())
			}
		}
	}
	attrs := []any{"addr", addr.String(), "field", e.Field, "interfaces", ifaces}
	if e.Sensitive != "" {
		log.Error(fmt.Sprintf("%s binds every interface: it exposes %s, and %s, to every network this host is on; "+
			"bind a private address (127.0.0.1) or turn that off", e.Field, e.What, e.Sensitive), attrs...)
		return
	}
	log.Warn(fmt.Sprintf("%s binds every interface: it exposes %s to every network this host is on; "+
		"bind a private address (127.0.0.1) unless the network in front of it is controlled", e.Field, e.What), attrs...)
}
