package eos

import (
	"context"
	"fmt"
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

// chanClaim is a claim of in/0 whose records come from ch.
type chanClaim struct{ ch chan *sarama.ConsumerMessage }

func (c chanClaim) Topic() string                            { return "in" }
func (c chanClaim) Partition() int32                         { return 0 }
func (c chanClaim) InitialOffset() int64                     { return 0 }
func (c chanClaim) HighWaterMarkOffset() int64               { return 1 }
func (c chanClaim) Messages() <-chan *sarama.ConsumerMessage { return c.ch }

// testLoop is a partitionLoop of in/0 over coord's producer, running fn
// over one record of value v, with MaxAttempts 2.
func testLoop(coord *txntest.Coordinator, fn Func, v string) *partitionLoop {
	cfg := Config{Brokers: []string{"b:9092"}, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "t", MaxAttempts: 2}.withDefaults()
	cfg.RetryInitial, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval = cfg.RetryInitial, cfg.RetryMax
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ch := make(chan *sarama.ConsumerMessage, 1)
	ch <- &sarama.ConsumerMessage{Topic: "in", Partition: 0, Offset: 0, Value: []byte(v)}
	return &partitionLoop{
		p: &Processor{cfg: cfg, fn: fn, log: log}, claim: chanClaim{ch}, txnID: "t-g-in-0", prod: coord.Producer(),
		log: log, retry: retry, failures: map[int64]int{}, maxBytes: 1 << 20, txnTimeout: 10 * time.Second,
	}
}

// dlqValue names a committed message by topic and value, with the reduced
// marker of a dead letter.
func dlqValue(m *sarama.ProducerMessage) string {
	v := "<null value>"
	if m.Value != nil {
		b, _ := m.Value.Encode()
		v = string(b)
	}
	for _, h := range m.Headers {
		if string(h.Key) == "sagabridge.dlq.reduced" {
			v += " [reduced]"
		}
	}
	return m.Topic + ":" + v
}

// A function's own error is the record's, whatever Kafka error it wraps
// (the function talks to Kafka itself): it is retried and dead-lettered.
// It was classified as the Processor's transaction error: one wrapping
// ErrProducerFenced stopped the Processor ("fenced by a newer instance"),
// one wrapping ErrUnknownMemberId ended the claim as a lost partition (a
// rebalance, and the record never reached MaxAttempts), and one wrapping
// ErrMessageSizeTooLarge sent the record's dead letter reduced, its value
// dropped, although it fit.
func TestAFunctionsOwnKafkaErrorIsTheRecords(t *testing.T) {
	for _, cause := range []error{sarama.ErrProducerFenced, sarama.ErrUnknownMemberId, sarama.ErrMessageSizeTooLarge} {
		coord := txntest.NewCoordinator(dlqValue, 0)
		fn := func(context.Context, *sarama.ConsumerMessage) ([]Output, error) {
			return nil, fmt.Errorf("lookup service: %w", cause)
		}
		l := testLoop(coord, fn, "small-order")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := l.run(ctx)
		cancel()
		assert.NoError(t, err, "%v", cause)
		assert.Equal(t, [][]string{{"in.dlq:small-order"}}, coord.Committed(), "%v: dead-lettered whole after 2 attempts", cause)
	}
}

// A function that panics on a record fails that record for good: it is
// dead-lettered with the panic and its stack. The panic took the process
// down, and after a restart the same record did again.
func TestAFunctionThatPanicsDeadLettersTheRecord(t *testing.T) {
	coord := txntest.NewCoordinator(dlqValue, 0)
	fn := func(context.Context, *sarama.ConsumerMessage) ([]Output, error) {
		var m map[string]int
		m["malformed"]++
		return nil, nil
	}
	l := testLoop(coord, fn, "bad")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	require.NoError(t, l.run(ctx))
	assert.Equal(t, [][]string{{"in.dlq:bad"}}, coord.Committed(), "dead-lettered at the first attempt")
}
