package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// A hot key's ContinueAsNew never exceeds Temporal's limits: one key, 20 MB
// of events of 200 KB in signals of up to 1 MB, applied by a handler that
// takes time. Without a bound, the runtime carried every signal that had
// arrived into the next run's input (three 1 MB signals made a 3 MB input,
// and Temporal terminates a run whose input is over its 2 MB payload
// limit); and the bridge, whose one-call-in-flight slot frees when a signal
// is in history, kept sending to a workflow that was behind. Now the run
// never ends terminated, and every event is applied once, in order, in as
// many runs as needed.
func TestAHotKeyOfTwentyMegabytesContinuesAsNewWithinTheLimits(t *testing.T) {
	e := newEnv(t, 1)
	tq := e.taskQueue + "-slow"
	e.startWorkerOn(tq, func(w worker.Worker) { ledger.Register(w, ledger.Options{ApplyDelay: 200 * time.Millisecond}) })

	recs := ledger.Stream(e.id+"-hot-", 1, 100, 1.1, 141)
	ledger.Pad(recs, 200<<10)
	pc := bigProducerConfig()
	pc.Producer.MaxMessageBytes = 1 << 20 // batches within the topic's default max.message.bytes
	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, pc)
	require.NoError(t, err)
	defer p.Close()
	at, err := ledger.Produce(p, e.ledgerTopic, recs)
	require.NoError(t, err)

	b, stop := e.runBridgeWith(e.ledgerTopic, func(c *config.Config) {
		c.Routes = c.Routes[1:]
		c.Routes[0].TaskQueue = tq
		c.Dispatch.MaxCallBytes = 1 << 20
	})
	defer stop()
	e.assertLedgers(at, 5*time.Minute) // a terminated run would end the ledger with an error
	st, err := e.ledgerResult(t.Context(), e.id+"-hot-0")
	require.NoError(t, err)
	assert.Greater(t, st.Runs, 1, "20 MB of events took more than one run")
	runs := e.closedRuns("ledger-" + e.id + "-hot-0")
	t.Logf("100 events of 200 KB in %d calls, %d runs (%v), %d flow-control waits",
		b.Stats().Calls, st.Runs, runs, b.Stats().WindowWaits)
	assert.NotContains(t, runs, "Terminated", "a run was terminated")
	assert.Positive(t, b.Stats().WindowWaits, "the bridge never had to wait for the workflow: the test proves nothing about flow control")
}

// closedRuns lists the close status of every run of workflow id.
func (e *env) closedRuns(id string) []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	var token []byte
	for {
		resp, err := e.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: "WorkflowId = '" + id + "'", NextPageToken: token})
		require.NoError(e.t, err)
		for _, ex := range resp.GetExecutions() {
			out = append(out, ex.GetStatus().String())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out
		}
	}
}
