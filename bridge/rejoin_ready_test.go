package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lostGroup: the first session starts, then ends the way sarama ends a
// cooperative session whose heartbeats fail (coordinator gone): Consume
// returns nil. The next Consume is stuck rejoining (FindCoordinator/JoinGroup
// retries) until ctx ends.
type lostGroup struct {
	flakyGroup
	n atomic.Int32
}

func (g *lostGroup) Consume(ctx context.Context, _ []string, h sarama.ConsumerGroupHandler) error {
	if g.n.Add(1) == 1 {
		if err := h.Setup(&genSession{gen: 1, claims: map[string][]int32{"orders": {0}}}); err != nil {
			return err
		}
		return nil // heartbeat loop gave up: session cancelled, Consume returns nil
	}
	<-ctx.Done() // rejoining, not in the group
	return ctx.Err()
}

// A member whose session ended (sarama ends a cooperative session whose
// heartbeats fail by returning nil from Consume) is not ready while it
// rejoins. (It stayed ready: only a Consume error cleared it.)
func TestNotReadyWhileRejoiningAfterASessionEnds(t *testing.T) {
	b := newTestBridge(t, &fakeTemporal{}, &fakeDLQ{})
	g := &lostGroup{flakyGroup: flakyGroup{errs: make(chan error)}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.runGroup(ctx, g) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool { return g.n.Load() >= 2 }, 5*time.Second, time.Millisecond)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "member is between sessions (rejoining), /readyz said %q", rec.Body.String())
	assert.Contains(t, rec.Body.String(), "not yet in the consumer group")
}
