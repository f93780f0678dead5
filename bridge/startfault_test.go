package bridge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
)

// Temporal refuses a start whose search attributes or memo the route's
// configuration got wrong (an attribute not registered in the namespace,
// of another type, a system one; a memo over the limit) with
// InvalidArgument, as it does a bad record. Those values come from the
// configuration, never from the record, so the records wait, paused, as
// for any fault of the bridge's own: none is dead-lettered or committed,
// and all are delivered once the attribute is registered. (Every record of
// the route was dead-lettered and committed: the check at start had been
// skipped, since Temporal could not list the attributes then.)
func TestARouteWhoseStartOptionsTemporalRefusesDeadLettersNothing(t *testing.T) {
	for name, cause := range map[string]error{
		"undefined":   serviceerror.NewInvalidArgument("search attribute CustomerTier is not defined"),
		"wrong type":  serviceerror.NewInvalidArgument("invalid value for search attribute CustomerTier of type Int: gold"),
		"system":      serviceerror.NewInvalidArgument("WorkflowId attribute can't be set in SearchAttributes"),
		"memo":        serviceerror.NewInvalidArgument("Memo size exceeds limit."),
		"size":        serviceerror.NewInvalidArgument("total size of search attributes 3000 exceeds size limit 2048"),
		"too many":    serviceerror.NewInvalidArgument("number of search attributes 120 exceeds limit 100"),
		"value size":  serviceerror.NewInvalidArgument("search attribute CustomerTier value size 5000 exceeds size limit 2048"),
		"unavailable": serviceerror.NewInvalidArgument("unable to get search attributes from cluster metadata: boom"),
	} {
		t.Run(name, func(t *testing.T) {
			tc := &fakeTemporal{failAll: cause} // CheckAccess succeeds: the namespace is fine
			dl := &fakeDLQ{}
			_, s, revoke := claimWithCircuits(t, tc, dl, config.Route{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O",
				WorkflowID: "order-{key}", TaskQueue: "q",
				SearchAttributes: map[string]config.SearchAttribute{"CustomerTier": {Type: "keyword", Value: "gold"}}})
			defer revoke()
			require.Eventually(t, func() bool { calls, _ := tc.counts(); return calls >= 6 || s.committed() == 3 }, 5*time.Second, time.Millisecond,
				"the refused calls were neither tried again nor committed")
			dl.mu.Lock()
			assert.Empty(t, dl.failures, "nothing was dead-lettered")
			dl.mu.Unlock()
			assert.Zero(t, s.committed(), "nothing was committed")

			tc.set(nil) // the attribute is registered
			require.Eventually(t, func() bool { return s.committed() == 3 }, 5*time.Second, time.Millisecond)
		})
	}
}
