package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
)

// fakePauser records which partitions the consumer would not fetch. Like
// sarama's consumer it remembers a pause after the partition is released.
type fakePauser struct {
	mu     sync.Mutex
	paused map[string]bool // "topic/partition"
}

func (f *fakePauser) set(parts map[string][]int32, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused == nil {
		f.paused = map[string]bool{}
	}
	for t, ps := range parts {
		for _, p := range ps {
			if on {
				f.paused[fmt.Sprintf("%s/%d", t, p)] = true
			} else { // as sarama forgets a resumed partition
				delete(f.paused, fmt.Sprintf("%s/%d", t, p))
			}
		}
	}
}
func (f *fakePauser) Pause(parts map[string][]int32)  { f.set(parts, true) }
func (f *fakePauser) Resume(parts map[string][]int32) { f.set(parts, false) }
func (f *fakePauser) state() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.paused)
}

// The circuits of testPressure's task queues.
var circuitQ1, circuitQ2 = circuitKey{"default", "q1"}, circuitKey{"default", "q2"}

func testPressure(t *testing.T) (*pressure, *fakePauser) {
	t.Helper()
	cfg := config.Default().Backpressure
	cfg.MaxRecords, cfg.MaxBytes, cfg.ResumeAt = 10, 1000, 0.5
	cfg.Backlog.HighTasks, cfg.Backlog.LowTasks, cfg.Backlog.HighAge, cfg.Backlog.LowAge = 100, 10, time.Minute, 10*time.Second
	p := newPressure(cfg, map[string][]string{"orders": {"q1"}, "payments": {"q2"}},
		map[string][]circuitKey{"orders": {circuitQ1}, "payments": {circuitQ2}}, quiet())
	pa := &fakePauser{}
	p.setPauser(pa)
	for _, tp := range []struct {
		topic string
		part  int32
	}{{"orders", 0}, {"orders", 1}, {"payments", 0}} {
		f := &flow{topic: tp.topic, partition: tp.part, pressure: p}
		p.register(f)
	}
	return p, pa
}

func TestInFlightBudgetPausesEverythingAndResumesAtTheLowWaterMark(t *testing.T) {
	p, pa := testPressure(t)
	p.shares = nil // as if both topics routed to one set of targets
	p.hold("orders", 9, 90)
	assert.Empty(t, pa.state(), "below the cap nothing pauses")
	p.hold("payments", 1, 10)
	assert.Equal(t, map[string]bool{"orders/0": true, "orders/1": true, "payments/0": true}, pa.state())
	r, _ := p.reason("orders")
	assert.Equal(t, ReasonInFlight, r)
	p.release("orders", 4, 40) // 6 held: above the low-water mark of 5
	r, _ = p.reason("orders")
	assert.Equal(t, ReasonInFlight, r, "hysteresis: still paused above the low-water mark")
	p.release("orders", 1, 10)
	assert.Empty(t, pa.state(), "every partition resumes at the low-water mark")
	held, _ := p.held()
	assert.Equal(t, int64(5), held)
}

func TestBytesAloneReachTheBudget(t *testing.T) {
	p, pa := testPressure(t)
	p.shares = nil
	p.hold("orders", 1, 1000)
	assert.True(t, pa.state()["payments/0"])
}

// With routes to two sets of targets, each set's topics may hold half the
// budget (5 records, 500 bytes): at that they pause alone, and they resume
// at the low-water mark of their share.
func TestEachSetOfTargetsHoldsItsShareOfTheBudget(t *testing.T) {
	p, pa := testPressure(t)
	p.hold("orders", 4, 40)
	assert.Empty(t, pa.state(), "below the share nothing pauses")
	p.hold("orders", 1, 10)
	assert.Equal(t, map[string]bool{"orders/0": true, "orders/1": true}, pa.state(), "orders alone pause")
	r, _ := p.reason("orders")
	assert.Equal(t, ReasonTargetShare, r)
	p.hold("payments", 4, 40)
	assert.Equal(t, map[string]bool{"orders/0": true, "orders/1": true}, pa.state(), "payments keep their share")
	p.release("orders", 2, 20)
	assert.True(t, pa.state()["orders/0"], "hysteresis: 3 held, above the low-water mark of 2.5")
	p.release("orders", 1, 10)
	assert.Equal(t, map[string]bool{}, pa.state(), "orders resume at the low-water mark of their share")
	p.hold("payments", 0, 460)
	assert.Equal(t, map[string]bool{"payments/0": true}, pa.state(), "bytes alone reach a share")

	one := newShares(config.Backpressure{MaxRecords: 10, MaxBytes: 1000}, map[string][]circuitKey{
		"orders": {circuitQ1, circuitQ2}, "payments": {circuitQ2, circuitQ1}, "refunds": {circuitQ1, circuitQ2, circuitQ1}})
	assert.Nil(t, one, "topics routed to one set of targets share the whole budget")
}

// A budget reads what it holds when it settles: a release counted after a
// hold crossed the mark but before the pause took the lock leaves it not
// over, rather than over with nothing held and nothing left to release.
func TestABudgetSettlesOnWhatItHoldsNow(t *testing.T) {
	b := newBudget(10, 1000, 0.5)
	_, _, check := b.add(10, 10)
	assert.True(t, check, "the hold crossed the mark")
	_, _, check = b.add(-10, -10) // a release before the hold's settle
	assert.False(t, check, "not over yet: nothing to settle")
	assert.False(t, b.settle(), "the hold's settle finds nothing held")
	assert.False(t, b.over.Load())

	b.add(10, 10)
	assert.True(t, b.settle())
	assert.True(t, b.over.Load())
	_, _, check = b.add(-5, -5)
	assert.True(t, check, "at the low-water mark")
	assert.True(t, b.settle())
	assert.False(t, b.over.Load())
}

// Two releases at once, each adding its records and then its bytes, can
// each see the other half done: one sees the other's records still held,
// the other its bytes, and neither reaches the low-water mark. The budget
// stayed over with nothing held, every partition paused for good. While
// over, every release settles, and the last to finish its adds reads
// them all.
func TestTwoReleasesAtOnceLeaveNoBudgetOverWithNothingHeld(t *testing.T) {
	b := newBudget(30000, 6<<20, 0.5)
	b.add(16000, 1<<20) // partition A: many small records
	b.add(4000, 11<<19) // partition B: fewer, larger
	require.True(t, b.settle(), "6.5 MiB is over 6")
	// B releases its records; A releases all it holds; B its bytes.
	rB := b.records.Add(-4000)
	_, _, checkA := b.add(-16000, -(1 << 20))
	byB := b.bytes.Add(-(11 << 19))
	checkB := b.mayCross(rB, byB, true)
	assert.True(t, checkA || checkB, "neither release settles: A saw B's bytes, B saw A's records")
	if checkA || checkB {
		assert.True(t, b.settle())
	}
	assert.False(t, b.over.Load(), "over with %d records and %d bytes held", b.records.Load(), b.bytes.Load())
}

func TestBacklogPausesOnlyTheTopicsOfThatTaskQueue(t *testing.T) {
	p, pa := testPressure(t)
	p.observeBacklog("q1", Backlog{Tasks: 100})
	assert.Empty(t, pa.state(), "a count with no age is stale: nothing waits")
	p.observeBacklog("q1", Backlog{Tasks: 100, Age: time.Second})
	assert.Equal(t, map[string]bool{"orders/0": true, "orders/1": true}, pa.state())
	r, _ := p.reason("orders")
	assert.Equal(t, ReasonBacklog+":q1", r)
	r, _ = p.reason("payments")
	assert.Empty(t, r)

	p.observeBacklog("q1", Backlog{Tasks: 50, Age: time.Second})
	assert.True(t, pa.state()["orders/0"], "hysteresis: still paused between the marks")
	p.observeBacklog("q1", Backlog{Tasks: 10, Age: 20 * time.Second})
	assert.True(t, pa.state()["orders/0"], "an old backlog keeps it paused")
	p.observeBacklog("q1", Backlog{Tasks: 10, Age: time.Second})
	assert.False(t, pa.state()["orders/0"])

	p.observeBacklog("q2", Backlog{Tasks: 1, Age: 2 * time.Minute})
	assert.True(t, pa.state()["payments/0"], "age alone crosses the high-water mark")
}

// A count stuck over the high-water mark (the server's count is
// approximate and lags) with an oldest task of a few milliseconds, or none,
// is a task queue whose workers keep up: it pauses nothing. (Each reading
// with an age paused the topics and each without resumed them: a pause and
// a resume every poll, logged each time.)
func TestAStaleCountWithFreshTasksDoesNotPause(t *testing.T) {
	p, pa := testPressure(t)
	for i := range 10 {
		p.observeBacklog("q1", Backlog{Tasks: 5000, Age: time.Duration(i%2) * 3 * time.Millisecond})
		assert.False(t, pa.state()["orders/0"], "reading %d paused", i)
	}
	_, _, _, pauses := p.snapshot()
	assert.Zero(t, pauses[ReasonBacklog], "pauses")
	p.observeBacklog("q1", Backlog{Tasks: 5000, Age: 2 * time.Second})
	assert.True(t, pa.state()["orders/0"], "a count whose oldest task has waited seconds pauses")
}

func TestReasonsCombineAndReadersAreWokenOnEveryChange(t *testing.T) {
	p, pa := testPressure(t)
	p.setCircuitOpen(circuitQ1, true)
	p.observeBacklog("q1", Backlog{Tasks: 500, Age: time.Second})
	r, changed := p.reason("orders")
	assert.Equal(t, ReasonCircuitOpen+","+ReasonBacklog+":q1", r)
	r, _ = p.reason("payments")
	assert.Empty(t, r, "q1's circuit pauses only the topics that route to q1")
	assert.False(t, pa.state()["payments/0"])

	p.setCircuitOpen(circuitQ1, false)
	<-changed // a reader waiting on the old state is woken
	r, changed = p.reason("orders")
	assert.Equal(t, ReasonBacklog+":q1", r, "the backlog still holds")
	assert.True(t, pa.state()["orders/0"])
	assert.False(t, pa.state()["payments/0"])
	p.observeBacklog("q1", Backlog{})
	<-changed
	r, _ = p.reason("orders")
	assert.Empty(t, r)
	assert.False(t, pa.state()["orders/0"])
}

func TestAPartitionAtItsCapPausesAlone(t *testing.T) {
	p, pa := testPressure(t)
	f0 := &flow{topic: "orders", partition: 0, pressure: p}
	f1 := &flow{topic: "orders", partition: 1, pressure: p}
	p.register(f0)
	p.register(f1)
	p.setCapped(f0, true)
	assert.True(t, pa.state()["orders/0"])
	assert.False(t, pa.state()["orders/1"])
	p.setCircuitOpen(circuitQ1, true)
	p.setCapped(f0, false)
	assert.True(t, pa.state()["orders/0"], "still paused for the circuit")
	p.setCircuitOpen(circuitQ1, false)
	assert.False(t, pa.state()["orders/0"])
}

func TestNewClaimOfAPausedTopicStartsPaused(t *testing.T) {
	p, pa := testPressure(t)
	p.setCircuitOpen(circuitQ2, true)
	f := &flow{topic: "payments", partition: 3, pressure: p}
	p.register(f)
	assert.True(t, pa.state()["payments/3"])
	p.unregister(f)
	p.setCircuitOpen(circuitQ2, false)
	assert.True(t, pa.state()["payments/3"], "a released partition is no longer this member's to resume")
}

// A partition this member released while paused at its own in-flight cap,
// and is given back in a later rebalance, fetches again: sarama's consumer
// keeps the pause across the reassignment (as the fake does), and the new
// claim has nothing in flight, so no later change of reason would ever
// resume it. (register only paused: the partition stayed paused for good.)
func TestAPartitionGivenBackAfterAPausedReleaseFetches(t *testing.T) {
	p, pa := testPressure(t)
	f := &flow{topic: "orders", partition: 5, pressure: p}
	p.register(f)
	p.setCapped(f, true)
	require.True(t, pa.state()["orders/5"], "a partition at its cap pauses")
	p.unregister(f)
	again := &flow{topic: "orders", partition: 5, pressure: p}
	p.register(again)
	assert.False(t, pa.state()["orders/5"], "the partition given back stays paused")
}

func TestLimiterIncreasesAdditivelyAndCutsMultiplicatively(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, 8, time.Second, func() time.Time { return now })
	assert.Equal(t, 8, l.current())
	ctx := context.Background()
	require.NoError(t, l.acquire(ctx))
	l.done(10*time.Millisecond, true)
	assert.Equal(t, 6, l.current(), "a failure cuts the limit by a quarter")
	require.NoError(t, l.acquire(ctx))
	l.done(10*time.Millisecond, true)
	assert.Equal(t, 6, l.current(), "a second failure within the target interval is the same congestion")
	now = now.Add(time.Second)
	require.NoError(t, l.acquire(ctx))
	l.done(3*time.Second, false)
	assert.Equal(t, 4, l.current(), "a call slower than the target is congestion too")
	for range 20 {
		now = now.Add(time.Second)
		require.NoError(t, l.acquire(ctx))
		l.done(time.Second, true)
	}
	assert.Equal(t, 2, l.current(), "never below the floor")
	succeed := func(n int) {
		for range n {
			require.NoError(t, l.acquire(ctx))
			l.done(time.Millisecond, false)
		}
	}
	succeed(3) // 2 + 1/2 + 1/2.5 + 1/2.9
	assert.Equal(t, 3, l.current(), "each success adds 1/limit: about one slot per round of calls")
	succeed(3)
	assert.Equal(t, 4, l.current())
	succeed(50)
	assert.Equal(t, 8, l.current(), "successes grow it back to the ceiling, and no further")
}

func TestLimiterBlocksAtTheLimitUntilASlotFrees(t *testing.T) {
	l := newLimiter(1, 1, time.Second, time.Now)
	require.NoError(t, l.acquire(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, l.acquire(ctx), context.DeadlineExceeded)
	got := make(chan error)
	go func() { got <- l.acquire(context.Background()) }()
	l.abort()
	require.NoError(t, <-got)
}

func TestCircuitOpensOnRepeatedUnavailableAndClosesAfterAProbe(t *testing.T) {
	tc := &fakeTemporal{}
	for range 5 {
		tc.script = append(tc.script, serviceerror.NewUnavailable("down"))
	}
	b, err := New(config.Config{
		Kafka:        config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch:     config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Backpressure: config.Backpressure{Circuit: config.Circuit{Failures: 3, OpenFor: 100 * time.Millisecond}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	openedCh := make(chan struct{})
	watching, stopWatching := context.WithCancel(context.Background())
	defer stopWatching() // the watcher ends with the test even if the circuit never opens
	go func() {
		for {
			r, changed := b.pressure.reason("orders")
			if r == ReasonCircuitOpen {
				close(openedCh)
				return
			}
			select {
			case <-changed:
			case <-watching.Done():
				return
			}
		}
	}()
	s := consume(t, b, context.Background(), msg(0, "a", `{}`))
	assert.Equal(t, int64(1), s.committed())
	select {
	case <-openedCh:
	default:
		t.Fatal("the circuit never opened")
	}
	// 3 failures open it; each later probe is one call: 2 more failures, then success.
	assert.Equal(t, 6, tc.calls, "no calls while the circuit is open, one probe at a time")
	r, _ := b.pressure.reason("orders")
	assert.Empty(t, r, "the successful probe closed the circuit")
}

// backlogScript answers TaskQueueBacklog from a script; after it, with err.
type backlogScript struct {
	fakeTemporal
	mu     sync.Mutex
	script []Backlog
	err    error
	polls  int
}

func (s *backlogScript) TaskQueueBacklog(context.Context, string) (Backlog, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.polls++
	if len(s.script) > 0 {
		bl := s.script[0]
		s.script = s.script[1:]
		return bl, nil
	}
	return Backlog{}, s.err
}

func (s *backlogScript) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls
}

// A backlog check that keeps failing (a permission the bridge lacks, say)
// must not hold its topics paused forever: after three failed polls the
// last reading expires, the pause lifts, and the failures are counted and
// shown in /readyz.
func TestAnUnreadableBacklogExpiresAfterThreeFailedPolls(t *testing.T) {
	p, pa := testPressure(t)
	p.cfg.Backlog.PollInterval = time.Millisecond
	tc := &backlogScript{script: []Backlog{{Tasks: 500, Age: time.Minute}},
		err: serviceerror.NewPermissionDenied("no DescribeTaskQueue for you", "")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); p.watchBacklogs(ctx, tc) }()

	require.Eventually(t, func() bool { return tc.count() >= 2 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return len(p.unreadableBacklogs()) == 2 }, 5*time.Second, time.Millisecond,
		"the readings never expired")
	_, _, _, pauses := p.snapshot()
	assert.Equal(t, uint64(1), pauses[ReasonBacklog], "the first reading paused a topic")
	assert.False(t, pa.state()["orders/0"], "an expired reading still pauses its topic")
	assert.False(t, pa.state()["payments/0"], "an expired reading still pauses its topic")
	assert.GreaterOrEqual(t, p.backlogFailures.Load(), uint64(staleAfter))
	assert.Contains(t, p.unreadableBacklogs()["q1"], "no DescribeTaskQueue for you")
	cancel()
	<-done
}

// onLog calls fn with each record's message, on the logging goroutine.
type onLog struct {
	slog.Handler
	fn func(msg string)
}

func (h onLog) Handle(ctx context.Context, r slog.Record) error {
	h.fn(r.Message)
	return h.Handler.Handle(ctx, r)
}

func (h onLog) WithAttrs(as []slog.Attr) slog.Handler {
	return onLog{h.Handler.WithAttrs(as), h.fn}
}

// The log line that says the circuit opened is an event an operator (or a
// test scraping /metrics) may act on: by the time it is written the
// partitions are already paused for the circuit, and by the time "closed"
// is written they are no longer.
func TestTheCircuitLogLinesFollowThePauseState(t *testing.T) {
	tc := &fakeTemporal{}
	for range 3 {
		tc.script = append(tc.script, serviceerror.NewUnavailable("down"))
	}
	var b *Bridge
	var mu sync.Mutex
	seen := map[string]string{} // log message → the orders topic's pause reason when it was written
	log := slog.New(onLog{slog.NewTextHandler(io.Discard, nil), func(msg string) {
		if !strings.HasPrefix(msg, "circuit to Temporal") {
			return
		}
		r, _ := b.pressure.reason("orders")
		mu.Lock()
		defer mu.Unlock()
		seen[strings.SplitN(msg, ":", 2)[0]] = r
	}})
	b, err := New(config.Config{
		Kafka:        config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch:     config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Backpressure: config.Backpressure{Circuit: config.Circuit{Failures: 3, OpenFor: 50 * time.Millisecond}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: log})
	require.NoError(t, err)
	s := consume(t, b, context.Background(), msg(0, "a", `{}`))
	assert.Equal(t, int64(1), s.committed())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]string{
		"circuit to Temporal opened":    ReasonCircuitOpen,
		"circuit to Temporal half-open": ReasonCircuitOpen,
		"circuit to Temporal closed":    "",
	}, seen)
}
