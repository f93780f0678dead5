package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
)

// hangingDLQ never answers a write until its context ends, as a DLQ
// whose partition leader is out of reach: sarama retries for minutes.
type hangingDLQ struct {
	mu    sync.Mutex
	tries int
}

func (h *hangingDLQ) Write(ctx context.Context, _ dlq.Failure) error {
	h.mu.Lock()
	h.tries++
	h.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

func (h *hangingDLQ) triesSoFar() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tries
}

// A DLQ write that does not answer is given up after dispatch.call_timeout,
// as a call to Temporal is, and counts as a failing DLQ (its partition
// paused, /readyz, dlq_write_failures_total): writes that hung held the
// dispatch workers with no deadline, so with poison on as many partitions
// as there are workers no record of any partition reached Temporal, and
// nothing said why. (Partition 2's good record was never committed.)
func TestAHungDLQWriteGivesItsWorkerBack(t *testing.T) {
	tc := &fakeTemporal{}
	dl := &hangingDLQ{}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{Linger: time.Millisecond},
		Dispatch: config.Dispatch{Concurrency: 2, CallTimeout: 200 * time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults(), Deps{Temporal: tc, DeadLetters: dl, Logger: quiet()})
	require.NoError(t, err)
	b.dispatcher.start(2)
	defer b.dispatcher.stop()
	claim := func(p int32, m *sarama.ConsumerMessage) (*fakeSession, func()) {
		m.Partition = p
		ch := make(chan *sarama.ConsumerMessage, 1)
		ch <- m
		s := &fakeSession{ctx: context.Background()}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch, partition: p})
		}()
		return s, func() { close(ch); <-done }
	}
	for p := range int32(2) { // poison on as many partitions as there are workers
		_, stop := claim(p, msg(0, "k", `{not json`))
		defer stop()
	}
	require.Eventually(t, func() bool { return dl.triesSoFar() >= 2 }, 10*time.Second, time.Millisecond, "the dead letters were never written")
	s, stop := claim(2, msg(0, "good", `{}`))
	defer stop()
	assert.Eventually(t, func() bool { return s.committed() == 1 }, 10*time.Second, time.Millisecond,
		"a partition without dead letters is delivered while the DLQ hangs")
	assert.Positive(t, b.dlqFailures.Load(), "a write that hung counts as a DLQ failure")
}
