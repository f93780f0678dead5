package e2e

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// Offsets never stop committing in silence: the broker answers one of the
// bridge's transactional commits (dlq.transactional) with an error that puts
// sarama's producer in its fatal state. The committer counts the failure,
// replaces the producer and goes on committing.
func TestAFatalTransactionalErrorDoesNotStopCommits(t *testing.T) {
	e := newEnv(t, 2)
	prefix := "fatal-" + e.id
	var injected atomic.Bool
	stack.Kafka.Cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.EndTxnRequest)
		if !strings.HasPrefix(r.TransactionalID, prefix) || !r.Commit || injected.Swap(true) {
			stack.Kafka.Cluster.KeepControl()
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidProducerIDMapping.Code // fatal for sarama
		return resp, nil, true
	})
	b, stop := e.runBridgeWith(e.ledgerTopic, func(c *config.Config) {
		c.DLQ.Transactional, c.DLQ.TransactionalIDPrefix = true, prefix
		c.Routes = c.Routes[1:] // the ledger topic only
	})
	defer stop()

	at := e.produceLedger(ledger.Stream(e.id+"-", 10, 100, 1.1, 111))
	e.assertLedgers(at, time.Minute)
	require.Eventually(t, func() bool { return committedTotal(t, e.ledgerTopic, e.ledgerTopic) == 100 },
		30*time.Second, 50*time.Millisecond, "offsets stopped committing; bridge log:\n%s", lastLines(e.bridgeLogs.String(), 30))
	assert.True(t, injected.Load(), "the fatal error was never injected")
	assert.GreaterOrEqual(t, b.Stats().CommitFailures, uint64(1), "the failed commit was not counted")
	assert.Contains(t, e.bridgeLogs.String(), "the transactional producer is in a fatal state; recreating it")
}
