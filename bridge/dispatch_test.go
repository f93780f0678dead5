package bridge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// orderingTemporal checks the dispatcher's promises from the outside: it
// records each workflow's offsets in call order and fails if two calls for
// one workflow overlap. Calls take a random few milliseconds and
// sometimes fail with a retryable error.
type orderingTemporal struct {
	mu       sync.Mutex
	inFlight map[string]bool
	overlaps int
	calls    int
	got      map[string][]int64
	rng      *rand.Rand
}

func (o *orderingTemporal) SignalWithStart(ctx context.Context, t Target, b event.Batch) error {
	o.mu.Lock()
	if o.inFlight[t.WorkflowID] {
		o.overlaps++
	}
	o.inFlight[t.WorkflowID] = true
	fail := o.rng.IntN(10) == 0
	pause := time.Duration(o.rng.IntN(3000)) * time.Microsecond
	o.mu.Unlock()
	time.Sleep(pause)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight[t.WorkflowID] = false
	if fail {
		return serviceerror.NewUnavailable("flaky")
	}
	o.calls++
	for _, e := range b.Events {
		o.got[t.WorkflowID] = append(o.got[t.WorkflowID], e.Offset)
	}
	return nil
}

func (o *orderingTemporal) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	return nil, nil
}

func (o *orderingTemporal) TaskQueueBacklog(context.Context, string) (Backlog, error) {
	return Backlog{}, nil
}

func TestDispatchKeepsPerWorkflowOrderWithOneCallInFlightAndCoalesces(t *testing.T) {
	tc := &orderingTemporal{inFlight: map[string]bool{}, got: map[string][]int64{}, rng: rand.New(rand.NewPCG(1, 2))}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 50, Linger: time.Millisecond, MaxInFlight: 200},
		Dispatch: config.Dispatch{Concurrency: 8, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)

	const n = 3000
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[string][]int64{}
	var msgs []*sarama.ConsumerMessage
	for i := range n {
		key := fmt.Sprintf("k%d", min(rng.IntN(40), rng.IntN(40))) // skewed: low keys are hot
		msgs = append(msgs, msg(int64(i), key, `{}`))
		want["order-"+key] = append(want["order-"+key], int64(i))
	}
	s := consume(t, b, context.Background(), msgs...)

	assert.Equal(t, int64(n), s.committed())
	assert.Zero(t, tc.overlaps, "two calls were in flight for one workflow")
	assert.Equal(t, want, tc.got, "each workflow got its records once, in offset order")
	assert.Less(t, tc.calls, n/5, "records were coalesced into calls")
	assert.Equal(t, uint64(n), b.Stats().Delivered)
}
