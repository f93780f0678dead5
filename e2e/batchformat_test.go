package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// With dispatch.batch_format compact the worker applies every record once,
// in order, across ContinueAsNew, every run replays, and what the server
// stores per record is about half the full form's (242 bytes for these
// records, a few to a call, measured with batch_format full).
func TestCompactBatchesApplyOnceAcrossRunsAndShrinkTheHistory(t *testing.T) {
	e := newEnv(t, 4)
	recs := ledger.Stream(e.id+"-cb-", 20, 3_000, 1.1, 73)
	at := e.produceLedger(recs)
	_, stop := e.runBridgeWith(e.topic, func(c *config.Config) {
		c.Dispatch.BatchFormat = config.BatchCompact
		c.Dispatch.MaxCallBytes = 2 << 10 // small calls: many signals, so the hot key continues as new
	})
	defer stop()
	e.assertLedgers(at, 3*time.Minute)

	hot := "ledger-" + e.id + "-cb-0"
	st, err := e.ledgerResult(t.Context(), e.id+"-cb-0")
	require.NoError(t, err)
	assert.Greater(t, st.Runs, 1, "the hot key continued as new")
	runs := replayRuns(t, e.tc, hot, ledger.Workflow(ledger.Options{MaxHistoryEvents: ledgerMaxHistory}))
	assert.Equal(t, st.Runs, len(runs))

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	signalBytes := 0
	for _, runID := range runs {
		it := e.tc.GetWorkflowHistory(ctx, hot, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			for _, p := range ev.GetWorkflowExecutionSignaledEventAttributes().GetInput().GetPayloads() {
				signalBytes += len(p.GetData())
			}
		}
	}
	perRecord := float64(signalBytes) / float64(st.Count)
	t.Logf("hot key: %d records in %d runs, %d bytes of signals (%.0f per record)", st.Count, st.Runs, signalBytes, perRecord)
	assert.Less(t, perRecord, 130.0, "signals carry the compact form")
}
