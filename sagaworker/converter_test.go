package sagaworker

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// slowBatches is the SDK's default converter taking d to decode each
// event batch, as megabytes of signals take on a busy worker.
type slowBatches struct {
	converter.DataConverter
	d time.Duration
}

func (s slowBatches) FromPayloads(p *commonpb.Payloads, to ...any) error {
	if len(to) == 1 {
		if _, ok := to[0].(*event.Batch); ok {
			time.Sleep(s.d)
		}
	}
	return s.DataConverter.FromPayloads(p, to...)
}

// runLedgerWithSignals runs a ledger whose two records arrive in two
// signals through dc, and returns how the workflow ended.
func runLedgerWithSignals(t *testing.T, dc converter.DataConverter) error {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(dc)
	ledger.Register(env, ledger.Options{})
	env.RegisterDelayedCallback(func() {
		for i := range 2 {
			env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{{
				Topic: "t", Offset: int64(i), Value: fmt.Appendf(nil, `{"seq":%d,"total":2}`, i),
			}}})
		}
	}, time.Second)
	env.ExecuteWorkflow(ledger.WorkflowType, nil)
	require.True(t, env.IsWorkflowCompleted())
	return env.GetWorkflowError()
}

// An entity decodes signals in workflow code, every one that has arrived in
// one stretch. Batches that take over a second to decode (megabytes of them
// on a busy worker) trip the SDK's one-second deadlock detector with the
// plain converter (on a worker, the task then fails on every retry, since
// each replays the same signals); through DataConverter the decoding is not
// counted and the ledger completes.
func TestDataConverterLetsAnEntityDecodeSlowSignals(t *testing.T) {
	slow := slowBatches{DataConverter: converter.GetDefaultDataConverter(), d: 1200 * time.Millisecond}

	err := runLedgerWithSignals(t, slow)
	require.Error(t, err, "the plain converter should trip the deadlock detector, or this test proves nothing")
	assert.Contains(t, err.Error(), "deadlock")

	assert.NoError(t, runLedgerWithSignals(t, DataConverter(slow)))
}
