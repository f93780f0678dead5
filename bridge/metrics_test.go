package bridge

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
)

// Go's profiles are served only with metrics.pprof, and then all of
// net/http/pprof's handlers; the metrics and probes either way.
func TestProfilesAreServedOnlyWithMetricsPprof(t *testing.T) {
	get := func(pprof bool, path string) int {
		b, err := New(config.Config{
			Kafka:   config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
			Metrics: config.Metrics{Pprof: pprof},
			Routes:  []config.Route{{Topic: "orders", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
		}, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
		require.NoError(t, err)
		srv := httptest.NewServer(b.Handler())
		defer srv.Close()
		c := http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	profiles := []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine", "/debug/pprof/cmdline",
		"/debug/pprof/profile?seconds=1", "/debug/pprof/symbol", "/debug/pprof/trace?seconds=1"}
	for _, p := range profiles {
		assert.Equal(t, http.StatusNotFound, get(false, p), "%s without metrics.pprof", p)
		assert.Equal(t, http.StatusOK, get(true, p), "%s with metrics.pprof", p)
	}
	for _, pprof := range []bool{false, true} {
		assert.Equal(t, http.StatusOK, get(pprof, "/metrics"))
		assert.Equal(t, http.StatusServiceUnavailable, get(pprof, "/healthz"), "not running")
	}
}
