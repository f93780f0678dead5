package bridge

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

// simpleSession commits outside any group generation (generation -1, no
// member), as a TxnOffsetCommit without KIP-447's member check.
type simpleSession struct{ fakeSession }

func (*simpleSession) GenerationID() int32 { return -1 }
func (*simpleSession) MemberID() string    { return "" }

// A bridge whose partition's transactional ID was taken over by a newer
// owner (it stalled past its session; the group gave the partition to
// another instance, whose producer fenced ours) releases the partition and
// leaves the new owner alone. (Its final commit on close used to find the
// fenced producer in sarama's fatal state and replace it: a new producer
// of the same transactional ID, which fenced the rightful owner in turn
// and aborted its open transaction.)
func TestAFencedCommitterDoesNotFenceTheNewOwner(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	cfg := config.Config{
		Kafka:  config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g"},
		DLQ:    config.DLQ{Transactional: true, TransactionalIDPrefix: "fence"},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults()
	kc := cfg.Kafka
	b, err := New(cfg, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)

	lost := make(chan struct{})
	old, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() { close(lost) })
	require.NoError(t, err)

	// The new owner's producer, of the same transactional ID, fences ours.
	pc, err := connect.TransactionalProducerConfig(kc, 0, old.txnID)
	require.NoError(t, err)
	owner, err := sarama.NewSyncProducer(kc.Brokers, pc)
	require.NoError(t, err)
	defer owner.Close()

	old.advance(5) // committed on the next tick, which finds the producer fenced
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("the fenced committer did not release its partition")
	}
	_ = old.close()

	// The new owner commits, undisturbed.
	require.NoError(t, owner.BeginTxn())
	offsets := map[string][]*sarama.PartitionOffsetMetadata{"orders": {{Partition: 0, Offset: 7}}}
	require.NoError(t, owner.AddOffsetsToTxnWithGroupMetadata(offsets,
		sarama.NewConsumerGroupMetadataFromSession(&simpleSession{}, "g", nil)))
	err = owner.CommitTxn()
	assert.NoError(t, err, "the new owner was fenced by the old one")
	assert.False(t, kafkatxn.Fenced(err))
}
