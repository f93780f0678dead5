package bridge

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
)

// A refusal that calls met (signals not allowed for the key) is cleared by
// a call that goes through; a member left with no partition that routes to
// the target makes no such call, so once the circuit has closed the fault
// is no longer this member's to report. (After a rebalance moved the
// partition away and the key was fixed, /readyz stayed 503 for good.)
func TestARefusalOfARevokedPartitionsTargetClearsOnceTheCircuitCloses(t *testing.T) {
	tc := &fakeTemporal{failAll: serviceerror.NewPermissionDenied("signals are not allowed for this key", "")} // CheckAccess succeeds
	b, _, revoke := claimWithCircuits(t, tc, &fakeDLQ{}, config.Route{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"})
	require.Eventually(t, func() bool { return b.refused() != nil }, 10*time.Second, time.Millisecond)
	revoke()    // a rebalance gives orders/0 to another member
	tc.set(nil) // the operator fixes the key's permissions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.watchCircuits(ctx) // revoke ended the one claimWithCircuits ran
	ready := func() bool {
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code == 200
	}
	assert.Eventually(t, ready, 30*time.Second, 10*time.Millisecond, "/readyz recovers")
	for _, c := range b.circuits {
		assert.Equal(t, gobreaker.StateClosed, c.breaker.State())
	}
	assert.Nil(t, b.refused())
}
