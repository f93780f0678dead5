package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flakyGroup is a consumer group whose sessions start (Setup) while ok,
// and fail with err otherwise; it counts the sessions tried.
type flakyGroup struct {
	sarama.ConsumerGroup
	mu     sync.Mutex
	err    error
	tries  int
	errs   chan error
	closed sync.Once
}

func (g *flakyGroup) Consume(ctx context.Context, _ []string, h sarama.ConsumerGroupHandler) error {
	g.mu.Lock()
	g.tries++
	err := g.err
	g.mu.Unlock()
	if err != nil {
		return err
	}
	s := &genSession{gen: 1, claims: map[string][]int32{"orders": {0}}}
	if err := h.Setup(s); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func (g *flakyGroup) set(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err, g.tries = err, 0
}

func (g *flakyGroup) triesSoFar() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tries
}

func (g *flakyGroup) Errors() <-chan error      { return g.errs }
func (g *flakyGroup) Close() error              { g.closed.Do(func() { close(g.errs) }); return nil }
func (g *flakyGroup) Pause(map[string][]int32)  {}
func (g *flakyGroup) Resume(map[string][]int32) {}

// A bridge whose consumer group sessions fail after it once joined (the
// group's ACL revoked, its coordinator gone) is not ready, and /readyz
// says why; it is ready again once a session starts. (joined was set at
// the first session and never cleared: /readyz said ok while the bridge
// read nothing, so nothing routed traffic or alerts away from it.)
func TestABridgeThatLostItsGroupIsNotReady(t *testing.T) {
	b := newTestBridge(t, &fakeTemporal{}, &fakeDLQ{})
	g := &flakyGroup{errs: make(chan error)}
	g.set(sarama.ErrGroupAuthorizationFailed)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.runGroup(ctx, g) }()
	defer func() { cancel(); <-done }()
	b.joined.Store(true) // it had joined before

	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	require.Eventually(t, func() bool { return g.triesSoFar() >= 2 }, 30*time.Second, time.Millisecond)
	code, body := readyz()
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	assert.Contains(t, body, "consumer group")
	assert.Contains(t, body, sarama.ErrGroupAuthorizationFailed.Error())

	g.set(nil) // the ACL is back
	require.Eventually(t, func() bool { code, _ := readyz(); return code == http.StatusOK }, 30*time.Second, time.Millisecond)
}
