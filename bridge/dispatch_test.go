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
	mixed    int // calls that carried records of several partitions
	got      map[string][]int64
	byPart   map[string]map[int32][]int64 // workflow → partition → offsets, in call order
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
		if o.byPart != nil {
			if o.byPart[t.WorkflowID] == nil {
				o.byPart[t.WorkflowID] = map[int32][]int64{}
			}
			o.byPart[t.WorkflowID][e.Partition] = append(o.byPart[t.WorkflowID][e.Partition], e.Offset)
		}
		if e.Partition != b.Events[0].Partition {
			o.mixed++
		}
	}
	return nil
}

func (o *orderingTemporal) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	return nil, nil
}

func (o *orderingTemporal) TaskQueueBacklog(context.Context, string) (Backlog, error) {
	return Backlog{}, nil
}

func (o *orderingTemporal) CheckAccess(context.Context) error { return nil }

func (o *orderingTemporal) AppliedWatermarks(context.Context, string) (event.Watermarks, error) {
	return nil, serviceerror.NewNotFound("no flow control here")
}

func TestDispatchKeepsPerWorkflowOrderWithOneCallInFlightAndCoalesces(t *testing.T) {
	tc := &orderingTemporal{inFlight: map[string]bool{}, got: map[string][]int64{}, rng: rand.New(rand.NewPCG(1, 2))}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
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
	// Without coalescing every record is a call (3,000); with it, 565-620
	// calls in 60 runs here (the linger and the random call times vary it).
	assert.Less(t, tc.calls, n/4, "records were coalesced into calls")
	assert.Equal(t, uint64(n), b.Stats().Delivered)
}

// Two partitions feed the same workflows (keys that two producers hash
// differently, or a topic whose partition count changed): still one call in
// flight per workflow, each call from one partition, and each partition's
// records in offset order.
func TestTwoPartitionsFeedingOneWorkflowKeepEachPartitionsOrder(t *testing.T) {
	tc := &orderingTemporal{inFlight: map[string]bool{}, got: map[string][]int64{},
		byPart: map[string]map[int32][]int64{}, rng: rand.New(rand.NewPCG(5, 6))}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 20, Linger: time.Millisecond, MaxInFlight: 100},
		Dispatch: config.Dispatch{Concurrency: 8, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	b.dispatcher.start(8)
	defer b.dispatcher.stop()

	const n = 1000
	want := map[string]map[int32][]int64{}
	var sessions []*fakeSession
	var chans []chan *sarama.ConsumerMessage
	var wg sync.WaitGroup
	for p := range int32(2) {
		ch := make(chan *sarama.ConsumerMessage, n)
		for i := range n {
			key := fmt.Sprintf("k%d", i%5) // five workflows, each fed by both partitions
			m := msg(int64(i), key, `{}`)
			m.Partition = p
			ch <- m
			if want["order-"+key] == nil {
				want["order-"+key] = map[int32][]int64{}
			}
			want["order-"+key][p] = append(want["order-"+key][p], int64(i))
		}
		s := &fakeSession{ctx: context.Background()}
		sessions = append(sessions, s)
		chans = append(chans, ch)
		wg.Go(func() { assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch, partition: p})) })
	}
	require.Eventually(t, func() bool {
		return sessions[0].committed() == n && sessions[1].committed() == n
	}, 30*time.Second, time.Millisecond)
	for _, ch := range chans {
		close(ch) // revoke
	}
	wg.Wait()
	tc.mu.Lock()
	defer tc.mu.Unlock()
	assert.Zero(t, tc.overlaps, "two calls were in flight for one workflow")
	assert.Zero(t, tc.mixed, "a call carried records of two partitions")
	assert.Equal(t, want, tc.byPart, "each workflow got each partition's records once, in offset order")
}

// While the in-flight budget is full the bridge is catching up: what it
// holds is all it may read, so the next call should carry as many records
// as it can, not go to whichever workflow became ready first. A workflow
// with few records still goes first once it has waited long enough (its
// records × wait outweighs the others'), so none is starved.
func TestAFullBudgetServesTheWorkflowWithTheMostWaitingFirst(t *testing.T) {
	now := time.Unix(1000, 0)
	b, err := New(config.Config{
		Kafka:  config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: &orderingTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet(), Now: func() time.Time { return now }})
	require.NoError(t, err)
	f := &flow{ctx: context.Background()}
	submit := func(wf string, records int) {
		f.units.Add(1)
		b.dispatcher.submit(&unit{flow: f, queue: wf, route: 0, base: &Target{WorkflowType: "O", TaskQueue: "q"}, records: make([]record, records)})
	}
	next := func() string {
		b.dispatcher.mu.Lock()
		defer b.dispatcher.mu.Unlock()
		q, _ := b.dispatcher.pick()
		require.NotNil(t, q)
		// What a worker does with it, the call done at once.
		q.queued = false
		for _, u := range b.dispatcher.take(q) {
			u.flow.units.Done()
		}
		b.dispatcher.schedule(q)
		return q.id
	}

	both := func(first, second string, records int, gap time.Duration) {
		submit(first, 1)
		now = now.Add(gap)
		submit(second, records)
		now = now.Add(100 * time.Millisecond)
	}
	both("rare", "hot", 50, 10*time.Millisecond)
	require.Equal(t, "rare", next(), "under the budget, workflows go in the order they became ready")
	require.Equal(t, "hot", next())

	b.pressure.budget.over.Store(true)
	both("rare", "hot", 50, 10*time.Millisecond)
	require.Equal(t, "hot", next(), "with the budget full, the workflow with the most records waiting goes first")
	require.Equal(t, "rare", next())

	both("rare", "hot", 50, 10*time.Second) // rare: 1 × 10.1 s; hot: 50 × 0.1 s
	require.Equal(t, "rare", next(), "a workflow that waited long enough goes before a larger new one")
	require.Equal(t, "hot", next())

	b.pressure.budget.over.Store(false)
	b.pressure.setCapped(f, true) // a partition at batch.max_in_flight holds all it may read too
	both("rare", "hot", 50, 10*time.Millisecond)
	require.Equal(t, "hot", next(), "with a partition at its cap, the workflow with the most records waiting goes first")
	require.Equal(t, "rare", next())
	b.pressure.setCapped(f, false)
	both("rare", "hot", 50, 10*time.Millisecond)
	require.Equal(t, "rare", next(), "below every cap, first ready goes first again")
}
