package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// countRecords is a workflow written without workflows.Inbox: it reads the
// bridge's batches from the signal channel itself, registers no applied
// query, and returns once it has received want records.
func countRecords(want int) func(ctx workflow.Context) (int, error) {
	return func(ctx workflow.Context) (int, error) {
		ch := workflow.GetSignalChannel(ctx, event.DefaultSignal)
		n := 0
		for n < want {
			var b event.Batch
			ch.Receive(ctx, &b)
			n += len(b.Events)
		}
		return n, nil
	}
}

// A workflow type that registers no applied query is told apart, on a real
// server, from a workflow whose query fails for another reason: past its
// window the bridge asks, the worker answers "unknown queryType", and the
// bridge sends the type without flow control. (Any failed query was taken
// for a missing handler; the check now reads the SDK's answer, so this
// guards its wording: were it not recognised, the bridge would ask again
// for ever and the workflow would never get its records.)
func TestAWorkflowTypeWithoutTheAppliedQueryIsSentEverything(t *testing.T) {
	e := newEnv(t, 1)
	tq := e.taskQueue + "-plain"
	const records = 30
	e.startWorkerOn(tq, func(w worker.Worker) {
		w.RegisterWorkflowWithOptions(countRecords(records), workflow.RegisterOptions{Name: "CountRecords"})
	})
	at := e.produceLedger(ledger.Stream(e.id+"-plain-", 1, records, 1.1, 151))
	require.Len(t, at, 1)
	_, stop := e.runBridgeWith(e.ledgerTopic, func(c *config.Config) {
		c.Routes = c.Routes[1:]
		c.Routes[0].TaskQueue = tq
		c.Routes[0].WorkflowType = "CountRecords"
		c.Dispatch.WorkflowWindowRecords = 5 // the first call carries five; the next must ask
	})
	defer stop()
	for key := range at {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		require.Eventually(t, func() bool {
			_, err := e.tc.DescribeWorkflowExecution(ctx, "ledger-"+key, "")
			return err == nil
		}, time.Minute, 50*time.Millisecond, "the bridge never started the workflow")
		var n int
		require.NoError(t, e.tc.GetWorkflow(ctx, "ledger-"+key, "").Get(ctx, &n), "bridge log:\n%s", e.bridgeLogs.String())
		assert.Equal(t, records, n)
	}
	assert.True(t, strings.Contains(e.bridgeLogs.String(), "workflow type does not answer the applied query"),
		"the bridge never asked the workflow: the test proves nothing")
}
