package eos

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/internal/kafkatxn/txntest"
)

// A transaction whose commit reply was lost (the coordinator out of reach
// for longer than sarama retries EndTxn, after the commit reached it) is
// finished by committing it again. The Processor aborted it: the
// coordinator, committed, refused (INVALID_TXN_STATE), sarama made the
// producer fatal and the Processor stopped, so the records were processed
// again, and their outputs were written twice, for read_committed readers
// too.
func TestABatchWhoseCommitReplyWasLostIsCommittedOnce(t *testing.T) {
	coord := txntest.NewCoordinator(func(m *sarama.ProducerMessage) string {
		v, _ := m.Value.Encode()
		return string(v)
	}, 2)
	prod := coord.Producer()
	fn := func(_ context.Context, rec *sarama.ConsumerMessage) ([]Output, error) {
		return []Output{{Topic: "out", Value: append([]byte("out-"), rec.Value...)}}, nil
	}
	cfg := Config{Brokers: []string{"b:9092"}, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "t"}.withDefaults()
	cfg.RetryInitial, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval = cfg.RetryInitial, cfg.RetryMax
	l := &partitionLoop{
		p: &Processor{cfg: cfg, fn: fn, log: slog.New(slog.NewTextHandler(io.Discard, nil))}, txnID: "t-g-in-0", prod: prod,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), retry: retry, failures: map[int64]int{},
		maxBytes: 1 << 20, txnTimeout: 10 * time.Second,
	}
	batch := []*sarama.ConsumerMessage{{Topic: "in", Partition: 0, Offset: 0, Value: []byte("a")}}
	n, err := l.step(context.Background(), batch)
	require.NoError(t, err, "the batch failed, so run processes it again")
	assert.Equal(t, 1, n)
	assert.Equal(t, [][]string{{"out-a"}}, coord.Committed(), "the outputs, by committed transaction")
	assert.Zero(t, prod.TxnStatus()&sarama.ProducerTxnFlagFatalError, "the producer is fatal")
}
