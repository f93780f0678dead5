package bridge

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/kafkatxn/txntest"
)

// A commit whose reply was lost (the coordinator out of reach for longer
// than sarama retries EndTxn, after the commit reached it) has an unknown
// outcome: it is finished by committing again, which the coordinator takes
// as a no-op if it committed. The committer aborted it instead; the
// coordinator, committed, refused (INVALID_TXN_STATE), sarama made the
// producer fatal, and the dead letters went again in a new transaction:
// twice in the DLQ, for read_committed readers too.
func TestACommitWhoseReplyWasLostIsFinishedNotSentAgain(t *testing.T) {
	coord := txntest.NewCoordinator(func(m *sarama.ProducerMessage) string {
		return headerOf(m, dlq.HeaderOffset)
	}, 2)
	var producers atomic.Int32
	newProducer := func() (sarama.SyncProducer, error) {
		producers.Add(1)
		return coord.Producer(), nil
	}
	prod, _ := newProducer()
	var committed []dlq.Failure
	c := &txnCommitter{
		prod: prod, newProducer: newProducer, failed: new(atomic.Uint64), reduced: new(atomic.Uint64),
		maxBytes: 1 << 20, topic: "orders", partition: 0, txnID: "txn-g-orders-0", suffix: dlq.DefaultSuffix,
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		onCommit: func(fs []dlq.Failure) { committed = append(committed, fs...) }, lost: func() { t.Error("lost") },
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	c.enqueue(dlq.Failure{Topic: "orders", Offset: 0, Class: dlq.ClassDecode, Err: "bad"})
	c.advance(1)
	for range 4 { // the first two replies are lost
		if _, err := c.commit(); err == nil {
			break
		}
	}
	assert.Equal(t, [][]string{{"0"}}, coord.Committed(), "the dead letter of offset 0, by committed transaction")
	require.Len(t, committed, 1, "dead letters counted as committed")
	assert.Equal(t, int64(1), c.committed)
	assert.Equal(t, int32(1), producers.Load(), "the producer was replaced")
}

// headerOf is the value of msg's header key.
func headerOf(msg *sarama.ProducerMessage, key string) string {
	for _, h := range msg.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}
