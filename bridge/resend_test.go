package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
)

// A call the bridge makes again in another form (a batch Temporal
// rejected, resent one record at a time to find the bad one; records of a
// closed workflow sent to a new run, with dispatch.on_closed_workflow
// new_run) waits like any other when Temporal makes it wait: it gives its
// dispatch worker back. (Both waited in the worker, sleeping through every
// backoff, or for an open circuit to close, for as long as the wait
// lasted: with as many such workflows as workers, every other route and
// partition stopped.) Once the wait ends, the records are delivered in
// order.
func TestCallsMadeAgainInAnotherFormHoldNoDispatchWorker(t *testing.T) {
	const workers, waiting = 2, 3
	runFull := serviceerror.NewInvalidArgument(signalLimitExceeded) // retried, without opening the circuit
	for _, tt := range []struct {
		name     string
		dispatch config.Dispatch
		// setUp makes workflow id wait, and returns the count of the
		// calls it has made that waited.
		setUp func(h *holdTemporal, id string) func(h *holdTemporal) map[string]int
	}{{
		name: "a rejected batch resent record by record",
		setUp: func(h *holdTemporal, id string) func(h *holdTemporal) map[string]int {
			h.batchErr[id] = serviceerror.NewInvalidArgument("bad payload") // the batch: resend one by one
			h.stuck[id] = runFull                                           // and each one alone waits
			return func(h *holdTemporal) map[string]int { return h.calls }
		},
	}, {
		name:     "a closed workflow's records sent to a new run",
		dispatch: config.Dispatch{OnClosedWorkflow: config.OnClosedNewRun},
		setUp: func(h *holdTemporal, id string) func(h *holdTemporal) map[string]int {
			h.stuck[id] = fmtClosed(id)
			h.newRun[id] = runFull
			return func(h *holdTemporal) map[string]int { return h.newRuns }
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHoldTemporal()
			d := tt.dispatch
			d.Concurrency, d.RetryInitial, d.RetryMax = workers, time.Millisecond, 20*time.Millisecond
			b := newHoldBridge(t, h, &fakeDLQ{}, d)
			claim := claims(t, b)
			ids := make([]string, waiting)
			var counts func(h *holdTemporal) map[string]int
			var held []*fakeSession
			for p := range int32(waiting) {
				ids[p] = fmt.Sprintf("order-k%d", p)
				counts = tt.setUp(h, ids[p])
				held = append(held, claim(p, []*sarama.ConsumerMessage{msg(0, fmt.Sprintf("k%d", p), `{}`), msg(1, fmt.Sprintf("k%d", p), `{}`)}))
			}
			require.Eventually(t, func() bool { return h.atLeast(counts, 3, ids...) >= workers }, 10*time.Second, time.Millisecond,
				"the workflows never came to wait")

			healthy := claim(waiting, []*sarama.ConsumerMessage{msg(0, "healthy", `{}`)})
			require.Eventually(t, func() bool { return healthy.committed() == 1 }, 10*time.Second, time.Millisecond,
				"a healthy partition's record was not delivered while %d workflows waited on %d dispatch workers", waiting, workers)

			h.release()
			require.Eventually(t, func() bool {
				for _, s := range held {
					if s.committed() != 2 {
						return false
					}
				}
				return true
			}, 10*time.Second, time.Millisecond, "what waited was not delivered once the wait ended")
			require.Eventually(t, func() bool { r, n := b.pressure.held(); return r == 0 && n == 0 }, 10*time.Second, time.Millisecond,
				"the in-flight budget was not given back in full")
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, id := range ids {
				assert.Equal(t, []int64{0, 1}, h.offsets[id], "%s's records, in order", id)
			}
		})
	}
}
