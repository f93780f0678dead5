package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A bridge that starts while Temporal is out of reach joins its group with
// its circuits open (partitions paused) and is not ready, and becomes ready
// once a probe gets through. (Its one failed check left the circuits
// closed: it said ready, and read records no call could deliver.)
func TestABridgeStartedWhileTemporalIsDownIsNotReadyUntilItAnswers(t *testing.T) {
	tc := &fakeTemporal{}
	tc.set(status.Error(codes.Unavailable, "dial tcp 10.0.0.1:7233: connect: connection refused"))
	b := newTestBridge(t, tc, &fakeDLQ{})
	g := &flakyGroup{errs: make(chan error)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.runGroup(ctx, g) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, b.joined.Load, 5*time.Second, time.Millisecond)
	b.running.Store(true)
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	code, body := readyz()
	assert.Equal(t, http.StatusServiceUnavailable, code, "readyz body: %q", body)
	assert.Contains(t, body, "circuit to Temporal")
	tc.set(nil) // Temporal answers again
	require.Eventually(t, func() bool { code, _ := readyz(); return code == http.StatusOK }, 10*time.Second, 10*time.Millisecond,
		"the bridge never became ready once Temporal answered")
}
