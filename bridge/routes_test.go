package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// queueTemporal answers calls per task queue: refused ones fail with
// Unavailable; held ones block until release is closed; the rest are
// accepted. It counts the calls in flight per task queue.
type queueTemporal struct {
	fakeTemporal
	refused, held string
	release       chan struct{}
	mu            sync.Mutex
	inFlight, max map[string]int
}

func newQueueTemporal() *queueTemporal {
	return &queueTemporal{release: make(chan struct{}), inFlight: map[string]int{}, max: map[string]int{}}
}

func (q *queueTemporal) SignalWithStart(ctx context.Context, target Target, b event.Batch) error {
	q.mu.Lock()
	q.inFlight[target.TaskQueue]++
	q.max[target.TaskQueue] = max(q.max[target.TaskQueue], q.inFlight[target.TaskQueue])
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.inFlight[target.TaskQueue]--
		q.mu.Unlock()
	}()
	switch target.TaskQueue {
	case q.refused:
		return serviceerror.NewUnavailable("task queue unwell")
	case q.held:
		select {
		case <-q.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return q.fakeTemporal.SignalWithStart(ctx, target, b)
}

func (q *queueTemporal) maxInFlight(taskQueue string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.max[taskQueue]
}

// topicClaim is a claim of one partition of topic.
type topicClaim struct {
	fakeClaim
	topic string
}

func (c topicClaim) Topic() string { return c.topic }

// claim runs ConsumeClaim over msgs of topic until ctx ends; it returns
// the session, whose committed offset the test watches.
func claim(t *testing.T, ctx context.Context, b *Bridge, topic string, msgs []*sarama.ConsumerMessage) (*fakeSession, <-chan struct{}) {
	t.Helper()
	ch := make(chan *sarama.ConsumerMessage, len(msgs))
	for _, m := range msgs {
		ch <- m
	}
	s := &fakeSession{ctx: ctx}
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, topicClaim{fakeClaim: fakeClaim{ch: ch}, topic: topic}))
	}()
	return s, done
}

// records makes n records of topic, each for its own key.
func records(topic string, n int) []*sarama.ConsumerMessage {
	out := make([]*sarama.ConsumerMessage, n)
	for i := range out {
		out[i] = &sarama.ConsumerMessage{Topic: topic, Offset: int64(i), Key: fmt.Appendf(nil, "k%d", i), Value: []byte(`{}`)}
	}
	return out
}

func twoRoutes(tune func(c *config.Config)) config.Config {
	c := config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{Concurrency: 2, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Routes: []config.Route{
			{Topic: "orders", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "qa"},
			{Topic: "payments", WorkflowType: "P", WorkflowID: "payment-{key}", TaskQueue: "qb"},
		},
	}
	if tune != nil {
		tune(&c)
	}
	return c
}

// A task queue whose calls keep failing opens its own circuit: its topic
// pauses and its workflows wait parked, holding no dispatch worker, while
// the other route's records are delivered and committed (two workers,
// eight failing workflows).
func TestAnOpenCircuitPausesOnlyItsRoutesAndHoldsNoWorker(t *testing.T) {
	tc := newQueueTemporal()
	tc.refused = "qb"
	dl := &fakeDLQ{}
	b, err := New(twoRoutes(func(c *config.Config) {
		c.Backpressure.Circuit = config.Circuit{Failures: 2, OpenFor: time.Hour}
	}), Deps{Temporal: tc, DeadLetters: dl, Logger: quiet()})
	require.NoError(t, err)
	b.dispatcher.start(2)
	defer b.dispatcher.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sb, doneB := claim(t, ctx, b, "payments", records("payments", 8))
	require.Eventually(t, func() bool { r, _ := b.pressure.reason("payments"); return r == ReasonCircuitOpen }, 5*time.Second, time.Millisecond)
	sa, doneA := claim(t, ctx, b, "orders", records("orders", 8))
	require.Eventually(t, func() bool { return sa.committed() == 8 }, 5*time.Second, time.Millisecond,
		"the healthy route's records are delivered while the other circuit is open")

	r, _ := b.pressure.reason("orders")
	assert.Empty(t, r, "the healthy route's topic is not paused")
	assert.Equal(t, gobreakerOpen, b.circuits[circuitKey{"default", "qb"}].breaker.State().String())
	assert.Equal(t, "closed", b.circuits[circuitKey{"default", "qa"}].breaker.State().String())
	assert.Zero(t, sb.committed(), "nothing of the refused route is committed")
	dl.mu.Lock()
	assert.Empty(t, dl.failures, "nothing is dead-lettered")
	dl.mu.Unlock()
	cancel()
	<-doneA
	<-doneB
}

const gobreakerOpen = "open"

// A route's concurrency caps its calls in flight; the other route's
// workflows are served meanwhile by the workers it leaves.
func TestARouteHoldsNoMoreThanItsShareOfWorkers(t *testing.T) {
	tc := newQueueTemporal()
	tc.held = "qa"
	b, err := New(twoRoutes(func(c *config.Config) {
		c.Dispatch.Concurrency = 4
		c.Routes[0].Concurrency = 1
	}), Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	b.dispatcher.start(4)
	defer b.dispatcher.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sa, doneA := claim(t, ctx, b, "orders", records("orders", 6))
	// The busy route holds its worker before the other route starts, or
	// the other could finish before the busy one made its first call.
	require.Eventually(t, func() bool { return tc.maxInFlight("qa") > 0 }, 5*time.Second, time.Millisecond)
	sb, doneB := claim(t, ctx, b, "payments", records("payments", 6))
	require.Eventually(t, func() bool { return sb.committed() == 6 }, 5*time.Second, time.Millisecond,
		"the other route is served while the busy one holds its one worker")
	assert.Equal(t, 1, tc.maxInFlight("qa"), "the route never had more than its share of calls in flight")
	close(tc.release)
	require.Eventually(t, func() bool { return sa.committed() == 6 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 1, tc.maxInFlight("qa"))
	cancel()
	<-doneA
	<-doneB
}

// Records of two routes (two event types of one topic) for one workflow
// are sent in offset order, each call with its own route's target.
func TestRecordsOfTwoRoutesForOneWorkflowKeepTheirTargets(t *testing.T) {
	tc := &fakeTemporal{}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Routes: []config.Route{
			{Topic: "orders", TypeHeader: "event-type", Types: []string{"A"}, WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "qa"},
			{Topic: "orders", TypeHeader: "event-type", Types: []string{"B"}, WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "qb", Signal: "b-events"},
		},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	typed := func(offset int64, typ string) *sarama.ConsumerMessage {
		m := msg(offset, "k", `{}`)
		m.Headers = []*sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte(typ)}}
		return m
	}
	consume(t, b, context.Background(), typed(0, "A"), typed(1, "A"), typed(2, "B"), typed(3, "A"))
	var got []string
	for i, target := range tc.targets {
		for _, e := range tc.batches[i].Events {
			got = append(got, fmt.Sprintf("%d:%s/%s", e.Offset, target.TaskQueue, target.Signal))
		}
	}
	assert.Equal(t, []string{"0:qa/events", "1:qa/events", "2:qb/b-events", "3:qa/events"}, got)
}

// A Go routing function names each record's workflow; its error, an empty
// ID or a panic dead-letters the record with class route, and the
// partition moves on.
func TestARouteFuncNamesTheWorkflow(t *testing.T) {
	cfg := config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Routes:   []config.Route{{Name: "orders", Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}
	fn := func(rec *sarama.ConsumerMessage) (string, error) {
		switch k := string(rec.Key); k {
		case "bad":
			return "", errors.New("no customer")
		case "empty":
			return "", nil
		case "boom":
			panic("oops")
		default:
			return "custom-" + k, nil
		}
	}
	_, err := New(cfg, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}}, WithRouteFunc("payments", fn))
	require.ErrorContains(t, err, `WithRouteFunc("payments"): no route has that name`)
	_, err = New(cfg, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}}, WithRouteFunc("orders", nil))
	require.ErrorContains(t, err, `WithRouteFunc("orders"): the function is nil`)

	tc, dl := &fakeTemporal{}, &fakeDLQ{}
	b, err := New(cfg, Deps{Temporal: tc, DeadLetters: dl, Logger: quiet()}, WithRouteFunc("orders", fn))
	require.NoError(t, err)
	s := consume(t, b, context.Background(), msg(0, "a", `{}`), msg(1, "bad", `{}`), msg(2, "empty", `{}`), msg(3, "boom", `{}`), msg(4, "b", `{}`))
	assert.Equal(t, int64(5), s.committed())
	var ids []string
	for _, target := range tc.targets {
		ids = append(ids, target.WorkflowID)
	}
	assert.ElementsMatch(t, []string{"custom-a", "custom-b"}, ids)
	dl.mu.Lock()
	defer dl.mu.Unlock()
	require.Len(t, dl.failures, 3)
	for i, want := range []string{"no customer", "empty workflow ID", "panicked: oops"} {
		assert.Equal(t, dlq.ClassRoute, dl.failures[i].Class)
		assert.Contains(t, dl.failures[i].Err, want)
		assert.Contains(t, dl.failures[i].Err, `route "orders"`)
	}
}

// saLister is a Temporal seam that lists the namespace's search attributes.
type saLister struct {
	fakeTemporal
	types map[string]string
}

func (s *saLister) SearchAttributeTypes(context.Context) (map[string]string, error) {
	return s.types, nil
}

// A route's start options reach the seam typed; its search attributes are
// checked against the namespace's at start, errors naming the field.
func TestStartOptionsReachTheSeamAndSearchAttributesAreCheckedAtStart(t *testing.T) {
	cfg := twoRoutes(func(c *config.Config) {
		r := &c.Routes[1]
		r.RunTimeout, r.ExecutionTimeout = time.Hour, 2*time.Hour
		r.Memo = map[string]any{"team": "billing"}
		r.SearchAttributes = map[string]config.SearchAttribute{
			"Tier": {Type: config.SearchAttributeKeyword, Value: "gold"}, "Priority": {Type: config.SearchAttributeInt, Value: 3},
			"Missing": {Type: config.SearchAttributeBool, Value: true},
			"Tags":    {Type: config.SearchAttributeKeywordList, Value: []any{"a"}},
		}
	})
	tc := &saLister{types: map[string]string{"Tier": "keyword", "Priority": "double"}}
	b, err := New(cfg, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	err = b.checkSearchAttributes(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "routes[1].search_attributes.Missing: no search attribute Missing is registered in namespace default (temporal operator search-attribute create --namespace default --name Missing --type Bool)")
	assert.Contains(t, err.Error(), "routes[1].search_attributes.Priority: is registered in namespace default as double, not int")
	// The command the hint gives is one the Temporal CLI takes: it spells
	// the type KeywordList, not keyword_list.
	assert.Contains(t, err.Error(), "routes[1].search_attributes.Tags: no search attribute Tags is registered in namespace default (temporal operator search-attribute create --namespace default --name Tags --type KeywordList)")
	assert.NotContains(t, err.Error(), "Tier")

	target, _, err := b.router.Route(&sarama.ConsumerMessage{Topic: "payments", Key: []byte("k"), Value: []byte(`{}`)})
	require.NoError(t, err)
	assert.Equal(t, StartOptions{
		RunTimeout: time.Hour, ExecutionTimeout: 2 * time.Hour, Memo: map[string]any{"team": "billing"},
		SearchAttributes: map[string]SearchAttribute{
			"Tier": {Type: "keyword", Value: "gold"}, "Priority": {Type: "int", Value: int64(3)}, "Missing": {Type: "bool", Value: true},
			"Tags": {Type: "keyword_list", Value: []string{"a"}},
		},
	}, target.Start)
	target, _, err = b.router.Route(&sarama.ConsumerMessage{Topic: "orders", Key: []byte("k"), Value: []byte(`{}`)})
	require.NoError(t, err)
	assert.Zero(t, target.Start, "the other route sets no start options")
}
