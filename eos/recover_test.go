package eos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/eos"
	"github.com/sagabridge/sagabridge/internal/devstack"
)

// The Processor goes on committing after the transaction coordinator was
// out of reach for longer than sarama retries an end of transaction: the
// commit and then its abort both run out of retries, which leaves sarama's
// producer between transactions (not in its fatal state), and only another
// abort gets it out. (The Processor retried the batch with BeginTxn alone,
// which sarama refused for ever: nothing committed again, and Run did not
// stop.)
func TestTheProcessorCommitsAgainAfterAnAbortRanOutOfRetries(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out")
	require.NoError(t, err)
	defer kafka.Close()
	const refused = 2 * 51                                                                     // the commit's and then the abort's attempts (sarama's Retry.Max 50)
	ends := refuseFirst(kafka.Cluster, kmsg.EndTxn, refused, kerr.ConcurrentTransactions.Code) // retriable: sarama retries, then gives up
	const records = 10
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "recover",
		RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		enrichTo("out"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, records)
	assert.Greater(t, ends.Load(), int32(refused), "the coordinator was never out of reach")
	assert.Equal(t, int64(records), p.Stats().Outputs, "outputs committed")
}

// A dead letter too large for the DLQ topic (the record, its headers and
// the error over the topic's max.message.bytes, which only the broker
// knows) goes in reduced form (dlq.Failure.Reduced) on the next attempt,
// and the partition goes on. (The transaction failed, the batch was
// retried, the record dead-lettered again, the same way, for ever.)
func TestADeadLetterTooLargeForTheDLQGoesInReducedForm(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out")
	require.NoError(t, err)
	defer kafka.Close()
	const records, maxBytes = 3, 2_000
	createTopicWithLimit(t, kafka.Brokers, "in"+dlq.DefaultSuffix, maxBytes)
	value := make([]byte, maxBytes-200) // its output fits; its dead letter, with the DLQ's headers, does not
	require.NoError(t, fill(kafka.Brokers, "in", records, value))
	p := invalidAt(t, kafka.Brokers, "reduce", 0, 1)
	runUntilCommitted(t, p, records)
	assert.Equal(t, int64(1), p.Stats().DeadLettered)
	assert.GreaterOrEqual(t, p.Stats().Aborts, int64(1), "the broker refused the full dead letter")
	entries := readDLQ(t, kafka.Brokers)
	require.Len(t, entries, 1)
	assert.Equal(t, int64(1), entries[0].Failure.Offset)
	assert.True(t, entries[0].Failure.IsReduced(), "the dead letter is in reduced form")
}

// A function slower than the transaction timeout allows for a whole batch
// (here 300 records at 20 ms each against a 2 s timeout) gets its records
// committed in several transactions, each closed once it has been open
// half the timeout. (The transaction stayed open for the whole batch; the
// broker aborted it at the timeout and fenced the producer, the Processor
// stopped with ErrFenced as if another instance had taken over, and after a
// restart the same batch timed out the same way.)
func TestASlowFunctionCommitsBeforeTheTransactionTimesOut(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out")
	require.NoError(t, err)
	defer kafka.Close()
	const records = 300
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	enrich := enrichTo("out")
	slow := func(ctx context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		time.Sleep(20 * time.Millisecond)
		return enrich(ctx, rec)
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "slow",
		MaxBatch: records, TransactionTimeout: 2 * time.Second, RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		slow, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, records)
	assert.Equal(t, int64(records), p.Stats().Outputs, "outputs committed")
	// A transaction opens at its first send (100 records, 2 s in) and
	// closes a second later: two for the batch, where one would have been
	// open 4 s.
	assert.GreaterOrEqual(t, p.Stats().Commits, int64(2), "one transaction held the whole batch")
	assert.Zero(t, p.Stats().Aborts)
}

// runUntilCommitted runs p until it has committed records input records,
// failing the test if it stops first or takes more than a minute, and
// stops it when the test ends.
// invalidAt is a Processor reading "in" that writes each record to "out"
// except those at offsets, which fail permanently (dead letters), with
// the producer's MaxMessageBytes at maxBytes (sarama's default if 0).
func invalidAt(t *testing.T, brokers []string, prefix string, maxBytes int, offsets ...int64) *eos.Processor {
	t.Helper()
	enrich := enrichTo("out")
	fn := func(ctx context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		if slices.Contains(offsets, rec.Offset) {
			return nil, eos.Permanent(errors.New("not a valid order"))
		}
		return enrich(ctx, rec)
	}
	p, err := eos.New(eos.Config{Brokers: brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: prefix,
		RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Sarama: func(c *sarama.Config) {
			if maxBytes > 0 {
				c.Producer.MaxMessageBytes = maxBytes
			}
		}},
		fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	return p
}

func runUntilCommitted(t *testing.T, p *eos.Processor, records int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.After(time.Minute)
	for p.Stats().Records < records {
		select {
		case <-done:
			t.Fatalf("the Processor stopped: %v", runErr)
		case <-deadline:
			t.Fatalf("%d of %d records committed in a minute (%+v)", p.Stats().Records, records, p.Stats())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A record whose function reports an outage (eos.Outage: the service it
// calls is down, or refuses the Processor's credentials) is not the
// record's fault: it is retried past Config.MaxAttempts for as long as the
// outage lasts, and never dead-lettered.
func TestARecordFailingOnAnOutageIsRetriedNotDeadLettered(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out", "in"+dlq.DefaultSuffix)
	require.NoError(t, err)
	defer kafka.Close()
	const records, outage = 3, 12 // the outage outlasts MaxAttempts (default 5) twice over
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	var calls atomic.Int32
	enrich := enrichTo("out")
	fn := func(ctx context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		if rec.Offset == 1 && calls.Add(1) <= outage {
			return nil, eos.Outage(errors.New("payment service: 401 unauthorized"))
		}
		return enrich(ctx, rec)
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "outage",
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond},
		fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, records)
	assert.Greater(t, calls.Load(), int32(outage), "the outage never ended")
	assert.Zero(t, p.Stats().DeadLettered, "a record dead-lettered for an outage")
	assert.Equal(t, int64(records), p.Stats().Outputs)
}

// A claim whose transactional producer cannot start for a while (its
// coordinator is loading, say, after a broker restart; sarama gives up
// after its retries) retries with backoff instead of stopping the whole
// Processor. (Run returned the error: every partition stopped.)
func TestAProducerThatCannotStartYetIsRetried(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out")
	require.NoError(t, err)
	defer kafka.Close()
	const refused = 60 // more than sarama's InitProducerId attempts (Retry.Max 50)
	inits := refuseFirst(kafka.Cluster, kmsg.InitProducerID, refused, kerr.CoordinatorLoadInProgress.Code)
	const records = 5
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "late",
		RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		enrichTo("out"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, records)
	assert.Greater(t, inits.Load(), int32(refused), "the coordinator was never loading")
}

// refuseFirst makes the broker answer the first n requests of key (EndTxn
// or InitProducerID) with the error code, and then serve them; it returns
// the count of requests seen.
func refuseFirst(c *kfake.Cluster, key kmsg.Key, n int32, code int16) *atomic.Int32 {
	var seen atomic.Int32
	c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if seen.Add(1) > n {
			return nil, nil, false // served by the broker from now on
		}
		c.KeepControl()
		resp := req.ResponseKind()
		switch r := resp.(type) {
		case *kmsg.EndTxnResponse:
			r.ErrorCode = code
		case *kmsg.InitProducerIDResponse:
			r.ErrorCode = code
		}
		return resp, nil, true
	})
	return &seen
}

// Of a batch's dead letters, only one too large for the producer
// (Producer.MaxMessageBytes) goes in reduced form, and at once: no
// transaction fails for it; one that fits keeps its value, so the DLQ tool
// can still redrive it. (Every dead letter of the batch's next attempt was
// reduced; then the oversized one was sent first and failed the
// transaction, the path on which sarama races: cmd/saramarace.)
func TestOnlyTheDeadLetterTooLargeForTheDLQIsReduced(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out", "in"+dlq.DefaultSuffix)
	require.NoError(t, err)
	defer kafka.Close()
	const maxBytes = 2_000
	prod, err := sarama.NewSyncProducer(kafka.Brokers, func() *sarama.Config {
		c := sarama.NewConfig()
		c.Producer.Return.Successes = true
		return c
	}())
	require.NoError(t, err)
	for _, v := range [][]byte{[]byte("v"), make([]byte, maxBytes-200), []byte("v"), []byte("v")} {
		_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "in", Value: sarama.ByteEncoder(v)})
		require.NoError(t, err)
	}
	require.NoError(t, prod.Close())
	p := invalidAt(t, kafka.Brokers, "reduce-one", maxBytes, 1, 2) // 1 too large for the DLQ as a dead letter, 2 not
	runUntilCommitted(t, p, 4)
	entries := readDLQ(t, kafka.Brokers)
	reduced := map[int64]bool{}
	for _, e := range entries {
		reduced[e.Failure.Offset] = e.Failure.IsReduced()
	}
	assert.Equal(t, map[int64]bool{1: true, 2: false}, reduced)
	assert.Zero(t, p.Stats().Aborts, "no transaction failed")
}

// A record whose function returns an output too large for the producer
// (Producer.MaxMessageBytes) is a poison record: it is dead-lettered at
// once, with an error that names the output, its size and the limit, and
// the partition goes on; no transaction is tried with the output. (Every
// attempt failed its transaction on sarama's size check and the batch was
// retried for ever: the partition stalled on the record.)
func TestARecordWhoseOutputIsTooLargeIsDeadLettered(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out", "in"+dlq.DefaultSuffix)
	require.NoError(t, err)
	defer kafka.Close()
	const records, maxBytes = 4, 2_000
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	fn := func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		v := rec.Value
		if rec.Offset == 1 {
			v = make([]byte, maxBytes)
		}
		return []eos.Output{{Topic: "out", Key: rec.Key, Value: rec.Value}, {Topic: "out", Key: rec.Key, Value: v}}, nil
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "big-output",
		RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Sarama: func(c *sarama.Config) { c.Producer.MaxMessageBytes = maxBytes }},
		fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, records)
	st := p.Stats()
	assert.Equal(t, int64(1), st.DeadLettered)
	assert.Equal(t, int64(2*(records-1)), st.Outputs, "the other records' outputs, and none of the poison record's")
	assert.Zero(t, st.Aborts, "no transaction failed")

	entries := readDLQ(t, kafka.Brokers)
	require.Len(t, entries, 1)
	f := entries[0].Failure
	assert.Equal(t, int64(1), f.Offset)
	assert.False(t, f.IsReduced(), "the input record itself is small: its dead letter keeps it")
	assert.Contains(t, f.Err, `output 2 of 2 (topic "out")`)
	assert.Contains(t, f.Err, "Producer.MaxMessageBytes 2000")
}

// A record whose output the broker refuses as too large for its topic
// (the topic's max.message.bytes, which only the broker knows) is
// dead-lettered, and the records sent beside it are not: the broker
// refuses the whole batch, so the next attempt sends each of those
// records' outputs one by one, and the one refused then is the poison record.
// (The batch was retried for ever, each dead letter reduced in vain: the
// partition stalled on the record.)
func TestARecordWhoseOutputTheBrokerRefusesIsDeadLettered(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "in"+dlq.DefaultSuffix)
	require.NoError(t, err)
	defer kafka.Close()
	const records, maxBytes = 4, 2_000
	createTopicWithLimit(t, kafka.Brokers, "out", maxBytes)
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	fn := func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		v := rec.Value
		if rec.Offset == 1 {
			v = make([]byte, maxBytes+500) // under the producer's limit, over the topic's
		}
		return []eos.Output{{Topic: "out", Key: rec.Key, Value: v}}, nil
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "refused-output",
		RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, records)
	st := p.Stats()
	assert.Equal(t, int64(1), st.DeadLettered)
	assert.Equal(t, int64(records-1), st.Outputs)
	assert.GreaterOrEqual(t, st.Aborts, int64(1), "the broker refused the output")

	entries := readDLQ(t, kafka.Brokers)
	require.Len(t, entries, 1)
	assert.Equal(t, int64(1), entries[0].Failure.Offset)
	assert.Contains(t, entries[0].Failure.Err, "the broker refused the record's outputs as too large")
}

// readDLQ reads every dead letter of the "in" topic's DLQ.
func readDLQ(t *testing.T, brokers []string) []dlq.Entry {
	t.Helper()
	client, err := sarama.NewClient(brokers, dlq.ConsumerConfig(sarama.V3_6_0_0))
	require.NoError(t, err)
	defer client.Close()
	entries, err := dlq.Read(context.Background(), client, "in"+dlq.DefaultSuffix, dlq.Filter{})
	require.NoError(t, err)
	return entries
}

// createTopicWithLimit creates topic, one partition, with the broker-side
// max.message.bytes at maxBytes.
func createTopicWithLimit(t *testing.T, brokers []string, topic string, maxBytes int) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, sarama.NewConfig())
	require.NoError(t, err)
	defer admin.Close()
	limit := fmt.Sprint(maxBytes)
	require.NoError(t, admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false))
}
