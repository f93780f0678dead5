package bridge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// simServer is a fake Temporal with a given capacity: every accepted call
// queues one workflow task, served first in, first out, capacity per
// second. A workflow's lag is how long its oldest queued task has waited.
type simServer struct {
	capacity float64
	credit   float64
	fifo     []simCall
	queued   map[string][]time.Time // per workflow, its queued tasks' times
}

// simCall is one call's task: its workflow, when it was made and when each
// of its events arrived.
type simCall struct {
	sentAt
	arrived []time.Time
}

func (s *simServer) call(id string, now time.Time, arrived []time.Time) {
	s.fifo = append(s.fifo, simCall{sentAt{id, now}, arrived})
	s.queued[id] = append(s.queued[id], now)
}

// serve runs the server for dt, up to now, and returns the tasks it served.
func (s *simServer) serve(dt time.Duration) []simCall {
	var served []simCall
	s.credit += s.capacity * dt.Seconds()
	for ; s.credit >= 1 && len(s.fifo) > 0; s.credit-- {
		t := s.fifo[0]
		s.fifo = s.fifo[1:]
		s.queued[t.id] = s.queued[t.id][1:]
		served = append(served, t)
	}
	if len(s.fifo) == 0 {
		s.credit = min(s.credit, 1)
	}
	return served
}

func (s *simServer) lag(id string, now time.Time) time.Duration {
	if q := s.queued[id]; len(q) > 0 {
		return now.Sub(q[0])
	}
	return 0
}

// simResult is what one simulated run measured.
type simResult struct {
	// worst is the largest lag of any task served or queued in the last
	// third of the run.
	worst time.Duration
	// latencies are the events' waits from arrival to their task served,
	// for the calls made from simRun's from on, sorted.
	latencies []time.Duration
	calls     int
	end       time.Time
}

// p99 is the 99th percentile of r.latencies.
func (r simResult) p99() time.Duration { return r.latencies[len(r.latencies)*99/100] }

// simRun feeds events at rate over keys Zipf keys (seeded) for d, with the
// dispatch rule of the dispatcher (a key's events wait out the window from
// the first of them, then go in one call) and the coalescer sampling the
// server every SampleInterval, on a fake clock. Latencies are measured for
// the calls made from from on.
func simRun(c *coalescer, s *simServer, rng *rand.Rand, start time.Time, d time.Duration, rate float64, keys int, control bool, from time.Time) simResult {
	const dt = 5 * time.Millisecond
	z := rand.NewZipf(rng, 1.1, 1, uint64(keys-1))
	pend := map[string][]time.Time{} // per key, its pending events' arrivals
	var order []string               // pend's keys by their first pending event's arrival
	var r simResult
	owed := 0.0
	now := start
	nextSample := start.Add(c.cfg.SampleInterval)
	for now.Before(start.Add(d)) {
		now = now.Add(dt)
		for owed += rate * dt.Seconds(); owed >= 1; owed-- {
			id := fmt.Sprintf("wf-%d", z.Uint64())
			if len(pend[id]) == 0 {
				order = append(order, id)
			}
			pend[id] = append(pend[id], now)
		}
		// The keys whose first event has waited out the window, oldest
		// first (in map order a run was not a function of its seed).
		w := c.Window()
		due := 0
		for _, id := range order {
			if now.Sub(pend[id][0]) < w {
				break
			}
			s.call(id, now, pend[id])
			c.sent(id, now)
			r.calls++
			delete(pend, id)
			due++
		}
		order = order[due:]
		for _, t := range s.serve(dt) {
			if !t.at.Before(from) {
				for _, a := range t.arrived {
					r.latencies = append(r.latencies, now.Sub(a))
				}
			}
		}
		if control && !now.Before(nextSample) {
			nextSample = now.Add(c.cfg.SampleInterval)
			if id := c.sample(now); id == "" {
				c.step(0)
			} else {
				c.step(s.lag(id, now))
			}
		}
		if now.After(start.Add(d*2/3)) && len(s.fifo) > 0 {
			r.worst = max(r.worst, now.Sub(s.fifo[0].at))
		}
	}
	slices.Sort(r.latencies)
	r.end = now
	return r
}

// The controller on a fake clock against a fake server that takes 300
// calls/s, fed 500 events/s over 1,000 Zipf keys (what one call per event
// would need: 500 calls/s). Without the window the queue of workflow tasks
// grows for as long as the load lasts; with it the window opens, calls fall
// under the capacity and the wait stays bounded. When the load drops to 50
// events/s the window closes again.
func TestCoalescerWidensUntilTheServerKeepsUpAndClosesWhenLoadDrops(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	cfg := config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: 250 * time.Millisecond}
	start := time.Unix(1_700_000_000, 0)

	off := newCoalescer(cfg, quiet())
	rOff := simRun(off, &simServer{capacity: 300, queued: map[string][]time.Time{}},
		rand.New(rand.NewPCG(seed, 1)), start, 60*time.Second, 500, 1000, false, start)
	assert.Greater(t, rOff.worst, 10*time.Second, "the fake server must be overloaded without a window (%d calls)", rOff.calls)

	on := newCoalescer(cfg, quiet())
	srv := &simServer{capacity: 300, queued: map[string][]time.Time{}}
	rng := rand.New(rand.NewPCG(seed, 1))
	rOn := simRun(on, srv, rng, start, 60*time.Second, 500, 1000, true, start)
	t.Logf("without the window: %d calls, worst wait %s; with it: %d calls, worst wait %s in the last 20 s, window %s",
		rOff.calls, rOff.worst, rOn.calls, rOn.worst, on.Window())
	assert.Positive(t, on.Window(), "the window opened")
	assert.Less(t, rOn.worst, 3*time.Second, "with the window the wait is bounded")

	_ = simRun(on, srv, rng, rOn.end, 15*time.Second, 50, 1000, true, rOn.end)
	assert.Zero(t, on.Window(), "the window closed once the load fell")
}

// Near the server's capacity a window that only matches its tasks' wait to
// start holds the server at its edge, where one burst of calls queues
// seconds of tasks before the window widens again; so the window widens
// until the wait is under half of it. On the fake server (1,000 Zipf keys,
// 60 s, the calls made after 20 s), each event's wait from arrival to its
// task served, P99 over 40 seeds: with the old law (widen while the wait
// exceeds the window) 1.48-2.09 s at 500 events/s against 200 tasks/s,
// 1.91-2.73 s at 1,000 against 300 and 1.40-1.75 s at 2,000 against 500;
// with this one 0.80-1.02, 1.07-1.51 and 0.79-1.02 s (P50 no worse).
// Since one slow sample holds an open window (300 seeds, each the median of
// three streams): 0.67-0.94, 1.01-1.68 and 0.66-0.87 s; single streams
// reached 1.94 s at 1,000 against 300 (1.53 s before that change).
func TestTheWindowKeepsHeadroomAtTheServersEdge(t *testing.T) {
	assertSimP99(t, 60*time.Second, 20*time.Second, []simCase{
		{500, 200, 1250 * time.Millisecond},
		{1000, 300, 1800 * time.Millisecond},
		{2000, 500, 1250 * time.Millisecond},
	})
}

// simCase is a load on the fake server and the P99 its events' waits must
// stay under.
type simCase struct {
	rate, capacity float64
	p99            time.Duration
}

// assertSimP99 runs each case for d from a closed window, three streams
// of a seed it logs, with the defaults' target, cap and sampling, and
// asserts the median of their P99s of the waits of the calls made from the
// from-th second on.
func assertSimP99(t *testing.T, d, from time.Duration, cases []simCase) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	cfg := config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: 250 * time.Millisecond}
	start := time.Unix(1_700_000_000, 0)
	for _, tc := range cases {
		var p99s []time.Duration
		for i := range uint64(3) {
			c := newCoalescer(cfg, quiet())
			r := simRun(c, &simServer{capacity: tc.capacity, queued: map[string][]time.Time{}},
				rand.New(rand.NewPCG(seed, i)), start, d, tc.rate, 1000, true, start.Add(from))
			t.Logf("%.0f events/s against %.0f tasks/s: P50 %s, P99 %s, %d calls, window %s", tc.rate, tc.capacity,
				r.latencies[len(r.latencies)/2], r.p99(), r.calls, c.Window())
			p99s = append(p99s, r.p99())
		}
		slices.Sort(p99s)
		assert.Less(t, p99s[1], tc.p99, "%.0f events/s against %.0f tasks/s: median P99", tc.rate, tc.capacity)
	}
}

// The control law, step by step: a first wait over the target opens the
// window at 10 ms (and holds an open one); a wait that lasts widens it at
// once to the wait, then by half per sample while the wait exceeds half
// the window, up to the cap; it holds while the wait is between a
// quarter and half of the window (or the target), and narrows by a
// quarter to nothing below that.
func TestCoalescerStepsWidenHoldAndClose(t *testing.T) {
	ms := time.Millisecond
	c := newCoalescer(config.Coalesce{TargetLag: 200 * ms, MaxWindow: 700 * ms, SampleInterval: time.Second}, quiet())
	var got []time.Duration
	for range 6 {
		c.step(250 * ms)
		got = append(got, c.Window())
	}
	assert.Equal(t, []time.Duration{10 * ms, 250 * ms, 375 * ms, 562500 * time.Microsecond, 562500 * time.Microsecond, 562500 * time.Microsecond}, got,
		"opens at 10 ms, jumps to the lasting wait, widens by half while the wait exceeds half the window, then holds")
	c.step(2 * time.Second)
	assert.Equal(t, 562500*time.Microsecond, c.Window(), "one slow sample in an open window holds it")
	c.step(2 * time.Second)
	assert.Equal(t, 700*ms, c.Window(), "a wait that lasts: capped")
	c.step(200 * ms)
	assert.Equal(t, 700*ms, c.Window(), "between a quarter and half of the window the window holds")
	var narrowing []time.Duration
	for c.Window() > 0 && len(narrowing) < 30 {
		c.step(0)
		narrowing = append(narrowing, c.Window())
	}
	// 525, 393.75, ..., 12.5 ms, then under 10 ms: closed.
	require.Len(t, narrowing, 15, "%v", narrowing)
	assert.Equal(t, 525*ms, narrowing[0])
	assert.Zero(t, narrowing[14], "below 10ms it closes")
}

// A max_window under the 10 ms a window opens at caps it too. (One slow
// sample opened it at 10 ms, over a 5 ms max_window.)
func TestCoalescerWindowNeverExceedsASmallMaxWindow(t *testing.T) {
	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: 5 * time.Millisecond, SampleInterval: time.Second}, quiet())
	for _, lag := range []time.Duration{900 * time.Millisecond, 900 * time.Millisecond, 0, 900 * time.Millisecond} {
		c.step(lag)
		assert.LessOrEqual(t, c.Window(), 5*time.Millisecond, "after a sample of %s", lag)
	}
}

// One slow sample is not a wait that lasts: it opens the window at 10 ms
// only, and it closes again at the next fast one.
func TestCoalescerOpensSmallOnOneSlowSample(t *testing.T) {
	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: time.Second}, quiet())
	c.step(900 * time.Millisecond)
	assert.Equal(t, minWindow, c.Window())
	c.step(0)
	assert.Zero(t, c.Window())
	c.step(900 * time.Millisecond)
	c.step(900 * time.Millisecond)
	assert.Equal(t, 900*time.Millisecond, c.Window(), "two in a row: the wait lasts")
}

// After a step in load the window reaches its level within a few samples:
// the first 15 s on the fake server, from a closed window (1,000 Zipf keys,
// P99 over 40 seeds). Widening by half per sample from 10 ms took 2.25 s
// to reach 250 ms, and the tasks queued meanwhile made it 2.08-2.76 s at
// 500 events/s against 200 tasks/s, 2.94-3.63 s at 1,000 against 300 and
// 3.13-3.85 s at 2,000 against 500; widening at once to a wait that lasts,
// 0.98-1.14, 1.41-1.59 and 1.57-1.74 s.
func TestTheWindowOpensQuicklyWhenTheLoadSteps(t *testing.T) {
	assertSimP99(t, 15*time.Second, 0, []simCase{
		{500, 200, 1600 * time.Millisecond},
		{1000, 300, 2300 * time.Millisecond},
		{2000, 500, 2500 * time.Millisecond},
	})
}

// Where a fixed 200 ms window keeps the server up, the law must not
// lose to it by much: narrowing by a quarter all the way let the window
// close past the edge every few seconds, and each time tasks queued before
// the wait showed. On the fake server (1,000 Zipf keys, 60 s, the calls
// made after 20 s, 12 seeds) that law's P99 was 400-750 ms at 500
// events/s against 350 tasks/s and 430-590 ms at 1,000 against 450,
// against the fixed window's 205 and 220; holding near the edge, 260-350
// and 360-505. The median of seven streams of one seed is asserted. Over
// 500 seeds it was 275-340 ms and 370-475 ms; with five streams, 365-525
// at 1,000 against 450 (over 450 ms in 14 seeds of 500, where the law
// before one slow sample held the window had 365-440 in 200: holding
// costs this noiseless server a little, see
// TestSporadicSlowSamplesDoNotRatchetTheWindow for what it buys).
func TestTheWindowHoldsNearWhereTheServerFellBehind(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	cfg := config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: 250 * time.Millisecond}
	start := time.Unix(1_700_000_000, 0)
	for _, tc := range []simCase{{500, 350, 380 * time.Millisecond}, {1000, 450, 500 * time.Millisecond}} {
		var p99s []time.Duration
		for i := range uint64(7) {
			c := newCoalescer(cfg, quiet())
			r := simRun(c, &simServer{capacity: tc.capacity, queued: map[string][]time.Time{}},
				rand.New(rand.NewPCG(seed, i)), start, time.Minute, tc.rate, 1000, true, start.Add(20*time.Second))
			p99s = append(p99s, r.p99())
		}
		slices.Sort(p99s)
		t.Logf("%.0f events/s against %.0f tasks/s: P99 %v", tc.rate, tc.capacity, p99s)
		assert.Less(t, p99s[3], tc.p99, "%.0f events/s against %.0f tasks/s: median P99", tc.rate, tc.capacity)
	}
}

// The edge, step by step: a wait that begins remembers the widest window
// of the second before it; narrowing within one and a half times that
// window takes a sixty-fourth per sample while the calls keep their rate,
// and a quarter once they fall to half of it, or when the edge is within
// a third of the cap.
func TestTheWindowNarrowsSlowlyNearTheEdgeUntilTheCallsFall(t *testing.T) {
	ms := time.Millisecond
	c := newCoalescer(config.Coalesce{TargetLag: 200 * ms, MaxWindow: time.Second, SampleInterval: 250 * ms}, quiet())
	sample := sampler(c)
	c.window = 400 * ms
	sample(100, 0) // 400 → 300: no edge yet, a quarter
	sample(100, 0) // → 225
	sample(100, 0) // → 168.75
	require.Equal(t, 168750*time.Microsecond, c.Window())
	sample(100, 500*ms) // the wait begins: the edge is the widest window of the second before
	require.Equal(t, 400*ms, c.edge)
	require.Equal(t, 500*ms, sample(100, 500*ms), "a wait that lasts: at least the wait")
	w := 500 * ms
	for i := range 20 {
		w -= w / 64
		require.Equal(t, w, sample(100, 0), "sample %d: within 1.5 × the edge, the calls as they were, a sixty-fourth", i)
	}
	w -= w / 64
	require.Equal(t, w, sample(20, 0), "the calls begin to fall: the smoothed rate is still over half the edge's")
	w -= w / 4
	assert.Equal(t, w, sample(20, 0), "under half the edge's calls per second: a quarter again")
	c.window = time.Second
	assert.Equal(t, 750*ms, sample(100, 0), "where a quarter stays above 1.5 × the edge, a quarter")
	c.window, c.edge = time.Second, 700*ms
	assert.Equal(t, 750*ms, sample(100, 0), "an edge within a third of the cap is not held")
}

// A sample is a workflow signalled at least the target lag ago, so that
// its task, if still queued, has waited longer than the target.
func TestCoalescerSamplesAWorkflowSignalledAtLeastTheTargetAgo(t *testing.T) {
	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: 250 * time.Millisecond}, quiet())
	t0 := time.Unix(1_700_000_000, 0)
	assert.Empty(t, c.sample(t0))
	c.sent("a", t0)
	c.sent("b", t0.Add(10*time.Millisecond)) // within an eighth of the target of "a": not kept
	c.sent("c", t0.Add(100*time.Millisecond))
	assert.Empty(t, c.sample(t0.Add(150*time.Millisecond)))
	assert.Equal(t, "a", c.sample(t0.Add(250*time.Millisecond)))
	assert.Equal(t, "c", c.sample(t0.Add(300*time.Millisecond)))
}

// countingTemporal counts calls and the records in each.
type countingTemporal struct {
	orderingTemporal
	sizes []int
}

func (o *countingTemporal) SignalWithStart(ctx context.Context, t Target, b event.Batch) error {
	o.mu.Lock()
	o.sizes = append(o.sizes, len(b.Events))
	o.mu.Unlock()
	return nil
}

// Records of one workflow arriving 50 ms apart go in one call while the
// window is 400 ms, and in a call each with no window.
func TestTheDispatchWindowHoldsAWorkflowsRecordsForOneCall(t *testing.T) {
	for _, tc := range []struct {
		window time.Duration
		calls  int
	}{{400 * time.Millisecond, 1}, {0, 3}} {
		t.Run(fmt.Sprint(tc.window), func(t *testing.T) {
			tm := &countingTemporal{}
			b, err := New(config.Config{
				Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
				Batch:    config.Batch{MaxRecords: 1, Linger: time.Millisecond},
				Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
				Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
			}, Deps{Temporal: tm, DeadLetters: &fakeDLQ{}, Logger: quiet()})
			require.NoError(t, err)
			b.coalescerFor("q").window = tc.window
			ch, s, done := claimInBackground(t, b)
			for i := range 3 {
				ch <- msg(int64(i), "a", `{}`)
				if i < 2 {
					time.Sleep(50 * time.Millisecond)
				}
				if tc.window == 0 {
					require.Eventually(t, func() bool { return s.committed() == int64(i+1) }, 5*time.Second, time.Millisecond)
				}
			}
			require.Eventually(t, func() bool { return s.committed() == 3 }, 5*time.Second, time.Millisecond)
			done()
			tm.mu.Lock()
			defer tm.mu.Unlock()
			assert.Len(t, tm.sizes, tc.calls, "calls (records in each: %v)", tm.sizes)
		})
	}
}

// Above the target the window keeps the wait under half of it: with tasks
// waiting 600 ms whatever the window, it settles between twice the wait
// and half as much again, not at the cap.
func TestCoalescerWindowStaysAtTwiceTheLagAboveTheTarget(t *testing.T) {
	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: 5 * time.Second, SampleInterval: time.Second}, quiet())
	for range 40 {
		c.step(600 * time.Millisecond)
	}
	assert.GreaterOrEqual(t, c.Window(), 1200*time.Millisecond)
	assert.LessOrEqual(t, c.Window(), 1800*time.Millisecond)
}

type lagReader time.Duration

func (l lagReader) WorkflowTaskLag(context.Context, string) (time.Duration, error) {
	return time.Duration(l), nil
}

// A task that timed out on a worker's sticky queue waits on the task
// queue, where the sampled workflow does not show it: the backlog's age
// opens the window too.
func TestCoalescerWatchesTheTaskQueueBacklogToo(t *testing.T) {
	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: time.Millisecond}, quiet())
	c.sent("wf", time.Now().Add(-time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.watchLag(ctx, lagReader(0), time.Now, func() time.Duration { return 30 * time.Second })
	require.Eventually(t, func() bool { return c.Window() == time.Second }, 5*time.Second, time.Millisecond)
}

// slowLagReader answers after a round trip of its own.
type slowLagReader struct {
	rtt time.Duration
	lag time.Duration
}

func (r slowLagReader) WorkflowTaskLag(ctx context.Context, _ string) (time.Duration, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(r.rtt):
		return r.lag, nil
	}
}

// A sample may take longer than four short intervals (a 50 ms round trip
// to Temporal Cloud at a 10 ms sample_interval): each sample had four
// intervals, so none was answered and the window followed the backlog
// alone, which here never opens it.
func TestASampleSlowerThanItsIntervalIsStillRead(t *testing.T) {
	c := newCoalescer(config.Coalesce{TargetLag: 100 * time.Millisecond, MaxWindow: time.Second, SampleInterval: 10 * time.Millisecond}, quiet())
	c.sent("wf", time.Now().Add(-time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.watchLag(ctx, slowLagReader{rtt: 50 * time.Millisecond, lag: 2 * time.Second}, time.Now, func() time.Duration { return 0 })
	require.Eventually(t, func() bool { return c.Window() == time.Second }, 5*time.Second, time.Millisecond,
		"the sampled 2 s wait did not open the window")
}

// Temporal answers DescribeTaskQueue from a cache (the server's
// matching.TaskQueueInfoByBuildIdTTL, 5 s by default), so polls 2 s apart
// can return one reading, to the nanosecond, seconds after the backlog has
// drained. Seen at 100 events/s: a drained backlog read as 2.34 s old three
// polls in a row held the window at its cap for 6 s while every sampled
// workflow had no task pending. Only a reading the server computed anew
// counts for the window.
func TestARepeatedBacklogReadingDoesNotHoldTheWindowOpen(t *testing.T) {
	p, _ := testPressure(t)
	drained := Backlog{Tasks: 40, Age: 2336886396 * time.Nanosecond}
	p.observeBacklog("q1", drained)
	assert.Equal(t, drained.Age, p.backlogAge("q1"), "a new reading counts")

	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: time.Millisecond}, quiet())
	for range 20 {
		c.step(p.backlogAge("q1"))
	}
	require.Equal(t, time.Second, c.Window())

	p.observeBacklog("q1", drained) // the server's cache, 2 s later
	assert.Zero(t, p.backlogAge("q1"), "the same reading again is the server's cache, not a backlog that stayed")
	for range 20 {
		c.step(p.backlogAge("q1")) // every sampled workflow: nothing pending
	}
	assert.Zero(t, c.Window())

	p.observeBacklog("q1", Backlog{Tasks: 41, Age: 4 * time.Second})
	assert.Equal(t, 4*time.Second, p.backlogAge("q1"), "a reading that changed is new")
}

// Each routed task queue has its own dispatch window: workers that fall
// behind on one task queue make its workflows' records wait, not those of
// a task queue whose workers keep up. (One window served every task queue:
// a slow one made every route's records wait.)
func TestEachTaskQueueHasItsOwnDispatchWindow(t *testing.T) {
	tm := &countingTemporal{}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 1, Linger: time.Millisecond},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Routes: []config.Route{
			{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "slow"},
			{Topic: "payments", TypeHeader: "event-type", WorkflowType: "P", WorkflowID: "payment-{key}", TaskQueue: "fast"},
		},
	}, Deps{Temporal: tm, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	// The slow task queue's tasks wait 2 s, the fast one's not at all.
	lag := lagByPrefix{"order-": 2 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, q := range []string{"slow", "fast"} {
		c := b.coalescerFor(q)
		c.sent(map[string]string{"slow": "order-x", "fast": "payment-x"}[q], time.Now().Add(-time.Second))
		go c.watchLag(ctx, lag, time.Now, func() time.Duration { return 0 })
	}
	require.Eventually(t, func() bool { return b.coalescerFor("slow").Window() == time.Second }, 5*time.Second, time.Millisecond,
		"the slow task queue's window did not open to its cap")
	assert.Zero(t, b.coalescerFor("fast").Window(), "the fast task queue's window opened")

	ch, s, done := claimInBackground(t, b)
	for i := range 3 {
		m := msg(int64(i), "a", `{}`)
		m.Topic = "payments"
		ch <- m
		require.Eventually(t, func() bool { return s.committed() == int64(i+1) }, 500*time.Millisecond, time.Millisecond,
			"record %d of the fast task queue waited out the slow one's 1 s window", i)
	}
	done()
}

// claimInBackground starts b's dispatcher and consumes a claim of the
// records sent on ch until done, which closes ch and waits.
func claimInBackground(t *testing.T, b *Bridge) (ch chan<- *sarama.ConsumerMessage, s *fakeSession, done func()) {
	t.Helper()
	b.dispatcher.start(4)
	t.Cleanup(b.dispatcher.stop)
	msgs := make(chan *sarama.ConsumerMessage, 3)
	s = &fakeSession{ctx: context.Background()}
	var wg sync.WaitGroup
	wg.Go(func() { assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: msgs})) })
	return msgs, s, func() { close(msgs); wg.Wait() }
}

// lagByPrefix reads a workflow's task lag from the longest prefix of its ID
// it holds; 0 for other workflows.
type lagByPrefix map[string]time.Duration

func (l lagByPrefix) WorkflowTaskLag(_ context.Context, id string) (time.Duration, error) {
	for p, d := range l {
		if strings.HasPrefix(id, p) {
			return d, nil
		}
	}
	return 0, nil
}

// Sporadic slow samples do not ratchet the window up. At a steady call
// rate, held near where a wait began, one workflow's task now and then
// waits over the bar: a single sample, not a wait that lasts. On the dev
// server at 500 events/s over warm workflows, widening by half on each
// such sample while the hold narrowed by a sixty-fourth between them
// walked the window up through the stream (321 ms to 1 s) where a fixed
// 200 ms window had half the P99 (docs/BENCHMARKS.md); here it went from
// 300 to 631 ms in 35 s, then, its edge past two thirds of the cap, closed.
func TestSporadicSlowSamplesDoNotRatchetTheWindow(t *testing.T) {
	ms := time.Millisecond
	c := newCoalescer(config.Coalesce{TargetLag: 200 * ms, MaxWindow: time.Second, SampleInterval: 250 * ms}, quiet())
	step := sampler(c)
	widest := time.Duration(0)
	sample := func(lag time.Duration) { widest = max(widest, step(100, lag)) }
	c.window = 300 * ms
	for range edgeSamples { // held: the wait between a quarter and half of the window
		sample(150 * ms)
	}
	for range 12 { // a minute: one slow sample every 5 s
		sample(max(200*ms, c.Window()/2) + 50*ms)
		for range 19 {
			sample(0)
		}
	}
	assert.LessOrEqual(t, widest, 300*ms, "the widest window over a minute of sporadic slow samples")
}

// sampler drives c, whose SampleInterval is 250 ms, on a fake clock: each
// call spreads calls sends over one interval, steps c with the sampled
// lag and returns its window.
func sampler(c *coalescer) func(calls int, lag time.Duration) time.Duration {
	now := time.Unix(1_700_000_000, 0)
	return func(calls int, lag time.Duration) time.Duration {
		for range calls {
			now = now.Add(250 * time.Millisecond / time.Duration(calls))
			c.sent("wf", now)
		}
		c.step(lag)
		return c.Window()
	}
}

// A simulated run is a function of its seed, so a failure's logged seed
// reproduces it. (Keys were dispatched in map order, which Go randomizes:
// a seed whose median P99 was 515 ms in a CI run gave 420 ms here.)
func TestASimulatedRunIsAFunctionOfItsSeed(t *testing.T) {
	cfg := config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: 250 * time.Millisecond}
	start := time.Unix(1_700_000_000, 0)
	run := func() simResult {
		return simRun(newCoalescer(cfg, quiet()), &simServer{capacity: 450, queued: map[string][]time.Time{}},
			rand.New(rand.NewPCG(1796539797148560456, 0)), start, 20*time.Second, 1000, 1000, true, start)
	}
	first := run()
	for range 3 {
		again := run()
		require.Equal(t, first.calls, again.calls)
		require.Equal(t, first.latencies, again.latencies)
	}
}
