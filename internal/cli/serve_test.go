package cli

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveAndLog serves on addr and returns what Serve logged and the address
// it bound.
func serveAndLog(t *testing.T, addr string, e Exposure) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	stop, err := Serve(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), log, e)
	require.NoError(t, err)
	defer stop()
	var bound string
	for line := range strings.SplitSeq(buf.String(), "\n") {
		if _, after, ok := strings.Cut(line, " addr="); ok {
			bound, _, _ = strings.Cut(after, " ")
			break
		}
	}
	require.NotEmpty(t, bound, "no serving line in %s", buf.String())
	_, port, err := net.SplitHostPort(bound)
	require.NoError(t, err)
	resp, err := http.Get("http://127.0.0.1:" + port + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok", string(body))
	return buf.String(), bound
}

func TestAWildcardListenerIsLoggedWithWhatItExposes(t *testing.T) {
	e := Exposure{Field: "metrics.listen", What: "/metrics, /healthz and /readyz"}
	for _, addr := range []string{":0", "0.0.0.0:0"} { // "[::]" is in TestWildcard: hosts without IPv6 cannot bind it
		logged, _ := serveAndLog(t, addr, e)
		assert.Contains(t, logged, "level=WARN", addr)
		assert.Contains(t, logged, "metrics.listen binds every interface: it exposes /metrics, /healthz and /readyz", addr)
		assert.Contains(t, logged, "interfaces=", addr)
		assert.Contains(t, logged, "127.0.0.1", "the interfaces are listed: %s", logged)
	}
	e.Sensitive = "Go's profiles"
	logged, _ := serveAndLog(t, "0.0.0.0:0", e)
	assert.Contains(t, logged, "level=ERROR")
	assert.Contains(t, logged, "and Go's profiles, to every network")
}

func TestAPrivateListenerIsNotWarnedAbout(t *testing.T) {
	logged, bound := serveAndLog(t, "127.0.0.1:0", Exposure{Field: "-listen", What: "x", Sensitive: "y"})
	assert.True(t, strings.HasPrefix(bound, "127.0.0.1:"))
	assert.NotContains(t, logged, "every interface")
	assert.NotContains(t, logged, "level=WARN")
}

func TestServeNamesTheFieldOfABadAddress(t *testing.T) {
	_, err := Serve("256.0.0.1:x", http.NotFoundHandler(), slog.New(slog.DiscardHandler), Exposure{Field: "metrics.listen"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "metrics.listen 256.0.0.1:x")
}

func TestWildcard(t *testing.T) {
	for addr, want := range map[string]bool{
		"0.0.0.0:1": true, "[::]:1": true, ":1": true, "127.0.0.1:1": false, "[::1]:1": false, "10.1.2.3:1": false,
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		require.NoError(t, err)
		assert.Equal(t, want, Wildcard(a), addr)
	}
}

// A client that sends a request's headers and then none of its body is
// cut off once the read timeout passes; the connection stayed open for
// ever, with its goroutine.
func TestARequestWhoseBodyNeverComesIsCutOff(t *testing.T) {
	srv := newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}), 300*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /decode HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(conn) // returns when the server closes the connection
	assert.NoError(t, err, "the server closed the connection (a read deadline error means it did not within 10 s)")
}
