package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/ledger"
	"github.com/sagabridge/sagabridge/workflows"
)

// A topic deleted and created again under the same name starts its offsets
// at 0 again. Workflows that applied the old topic's offsets must not take
// the new topic's records for duplicates: watermarks are kept per topic ID.
func TestARecreatedTopicsRecordsAreAppliedNotSkipped(t *testing.T) {
	e := newEnv(t, 1)
	const keys, perPhase = 3, 5
	phase := func(first int) []ledger.Record {
		var recs []ledger.Record
		for seq := first; seq < first+perPhase; seq++ {
			for k := range keys {
				v, err := json.Marshal(ledger.Value{Seq: seq, Total: 2 * perPhase})
				require.NoError(t, err)
				recs = append(recs, ledger.Record{Key: fmt.Sprintf("%s-re-%d", e.id, k), Value: v})
			}
		}
		return recs
	}
	before := e.produceLedger(phase(1))
	_, stop := e.runBridge(e.ledgerTopic + "-before")
	for key := range before {
		require.Eventually(t, func() bool {
			v, err := e.tc.QueryWorkflow(t.Context(), "ledger-"+key, "", "state")
			if err != nil {
				return false
			}
			var c workflows.Carry[ledger.State]
			return v.Get(&c) == nil && c.State.Count == perPhase
		}, 60*time.Second, 100*time.Millisecond, "ledger %s applied the first records", key)
	}
	stop()

	require.NoError(t, stack.Kafka.Cluster.DeleteTopic(e.ledgerTopic))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(e.ledgerTopic, 1, nil))
	// A new producer: the old one's metadata names the deleted topic.
	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	defer p.Close()
	after, err := ledger.Produce(p, e.ledgerTopic, phase(perPhase+1))
	require.NoError(t, err)
	for key, offs := range after {
		require.Equal(t, before[key][:len(offs)], offs, "the new topic reuses the old offsets")
	}
	// A new group, as after an offset reset (Kafka drops a deleted topic's
	// committed offsets too).
	_, stop = e.runBridge(e.ledgerTopic + "-after")
	defer stop()
	want := map[string][]int64{}
	for key := range before {
		want[key] = append(append([]int64{}, before[key]...), after[key]...)
	}
	e.assertLedgers(want, 60*time.Second)
	assert.Len(t, want, keys)
}
