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

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// simServer is a fake Temporal with a given capacity: every accepted call
// queues one workflow task, served first in, first out, capacity per
// second. A workflow's lag is how long its oldest queued task has waited.
type simServer struct {
	capacity float64
	credit   float64
	fifo     []sentAt
	queued   map[string][]time.Time // per workflow, its queued tasks' times
}

func (s *simServer) call(id string, now time.Time) {
	s.fifo = append(s.fifo, sentAt{id, now})
	s.queued[id] = append(s.queued[id], now)
}

// serve runs the server for dt.
func (s *simServer) serve(dt time.Duration) {
	s.credit += s.capacity * dt.Seconds()
	for ; s.credit >= 1 && len(s.fifo) > 0; s.credit-- {
		t := s.fifo[0]
		s.fifo = s.fifo[1:]
		s.queued[t.id] = s.queued[t.id][1:]
	}
	if len(s.fifo) == 0 {
		s.credit = min(s.credit, 1)
	}
}

func (s *simServer) lag(id string, now time.Time) time.Duration {
	if q := s.queued[id]; len(q) > 0 {
		return now.Sub(q[0])
	}
	return 0
}

// simKey is one key's pending events in the simulation.
type simKey struct {
	first   time.Time // when its oldest pending event arrived
	pending int
}

// simRun feeds events at rate over keys Zipf keys (seeded) for d, with the
// dispatch rule of the dispatcher (a key's events wait out the window from
// the first of them, then go in one call) and the coalescer sampling the
// server every SampleInterval, on a fake clock. It returns the largest lag
// of any task served or queued in the last third of the run, and the calls
// made.
func simRun(c *coalescer, s *simServer, rng *rand.Rand, start time.Time, d time.Duration, rate float64, keys int, control bool) (worst time.Duration, calls int, end time.Time) {
	const dt = 5 * time.Millisecond
	z := rand.NewZipf(rng, 1.1, 1, uint64(keys-1))
	pend := map[string]*simKey{}
	owed := 0.0
	now := start
	nextSample := start.Add(c.cfg.SampleInterval)
	for now.Before(start.Add(d)) {
		now = now.Add(dt)
		for owed += rate * dt.Seconds(); owed >= 1; owed-- {
			id := fmt.Sprintf("wf-%d", z.Uint64())
			k := pend[id]
			if k == nil {
				k = &simKey{first: now}
				pend[id] = k
			}
			k.pending++
		}
		w := c.Window()
		for id, k := range pend {
			if now.Sub(k.first) >= w {
				s.call(id, now)
				c.sent(id, now)
				calls++
				delete(pend, id)
			}
		}
		s.serve(dt)
		if control && !now.Before(nextSample) {
			nextSample = now.Add(c.cfg.SampleInterval)
			if id := c.sample(now); id == "" {
				c.step(0)
			} else {
				c.step(s.lag(id, now))
			}
		}
		if now.After(start.Add(d * 2 / 3)) {
			if len(s.fifo) > 0 {
				worst = max(worst, now.Sub(s.fifo[0].at))
			}
		}
	}
	return worst, calls, now
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
	worstOff, callsOff, _ := simRun(off, &simServer{capacity: 300, queued: map[string][]time.Time{}},
		rand.New(rand.NewPCG(seed, 1)), start, 60*time.Second, 500, 1000, false)
	assert.Greater(t, worstOff, 10*time.Second, "the fake server must be overloaded without a window (%d calls)", callsOff)

	on := newCoalescer(cfg, quiet())
	srv := &simServer{capacity: 300, queued: map[string][]time.Time{}}
	rng := rand.New(rand.NewPCG(seed, 1))
	worstOn, callsOn, now := simRun(on, srv, rng, start, 60*time.Second, 500, 1000, true)
	t.Logf("without the window: %d calls, worst wait %s; with it: %d calls, worst wait %s in the last 20 s, window %s",
		callsOff, worstOff, callsOn, worstOn, on.Window())
	assert.Positive(t, on.Window(), "the window opened")
	assert.Less(t, worstOn, 3*time.Second, "with the window the wait is bounded")

	_, _, _ = simRun(on, srv, rng, now, 15*time.Second, 50, 1000, true)
	assert.Zero(t, on.Window(), "the window closed once the load fell")
}

// The control law, step by step: it opens at 10ms, widens by half up to
// the cap while the lag is over the target, holds between half the target
// and the target, and narrows by a quarter to nothing below half of it.
func TestCoalescerStepsWidenHoldAndClose(t *testing.T) {
	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: 100 * time.Millisecond, SampleInterval: time.Second}, quiet())
	var got []time.Duration
	for _, lag := range []time.Duration{time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second} {
		c.step(lag)
		got = append(got, c.Window())
	}
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{10 * ms, 15 * ms, 22500 * time.Microsecond, 33750 * time.Microsecond, 50625 * time.Microsecond,
		75937500, 100 * ms}, got)
	c.step(150 * ms)
	assert.Equal(t, 100*ms, c.Window(), "between half the target and the target the window holds")
	var narrowing []time.Duration
	for c.Window() > 0 && len(narrowing) < 20 {
		c.step(0)
		narrowing = append(narrowing, c.Window())
	}
	// 100, 75, 56.25, 42.2, 31.6, 23.7, 17.8, 13.3, 10.01 ms, then under 10 ms: closed.
	require.Len(t, narrowing, 9, "%v", narrowing)
	assert.Equal(t, 75*ms, narrowing[0])
	assert.Zero(t, narrowing[8], "below 10ms it closes")
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
				Kafka:    config.Kafka{Brokers: []string{"b"}, Group: "g"},
				Batch:    config.Batch{MaxRecords: 1, Linger: time.Millisecond},
				Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
				Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
			}, Deps{Temporal: tm, DeadLetters: &fakeDLQ{}, Logger: quiet()})
			require.NoError(t, err)
			b.coalesce.window = tc.window
			b.dispatcher.start(4)
			defer b.dispatcher.stop()
			ch := make(chan *sarama.ConsumerMessage, 3)
			s := &fakeSession{ctx: context.Background()}
			var wg sync.WaitGroup
			wg.Go(func() { assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch})) })
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
			close(ch)
			wg.Wait()
			tm.mu.Lock()
			defer tm.mu.Unlock()
			assert.Len(t, tm.sizes, tc.calls, "calls (records in each: %v)", tm.sizes)
		})
	}
}

// Above the target the window follows the lag: with tasks waiting 600 ms
// whatever the window, it settles between the lag and half as much again,
// not at the cap, since a record waiting longer in the window than its
// task waits to start would add more than it saves.
func TestCoalescerWindowFollowsTheLagAboveTheTarget(t *testing.T) {
	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: 5 * time.Second, SampleInterval: time.Second}, quiet())
	for range 40 {
		c.step(600 * time.Millisecond)
	}
	assert.GreaterOrEqual(t, c.Window(), 600*time.Millisecond)
	assert.LessOrEqual(t, c.Window(), 900*time.Millisecond)
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
	assert.Equal(t, drained.Age, p.oldestBacklog(), "a new reading counts")

	c := newCoalescer(config.Coalesce{TargetLag: 200 * time.Millisecond, MaxWindow: time.Second, SampleInterval: time.Millisecond}, quiet())
	for range 20 {
		c.step(p.oldestBacklog())
	}
	require.Equal(t, time.Second, c.Window())

	p.observeBacklog("q1", drained) // the server's cache, 2 s later
	assert.Zero(t, p.oldestBacklog(), "the same reading again is the server's cache, not a backlog that stayed")
	for range 20 {
		c.step(p.oldestBacklog()) // every sampled workflow: nothing pending
	}
	assert.Zero(t, c.Window())

	p.observeBacklog("q1", Backlog{Tasks: 41, Age: 4 * time.Second})
	assert.Equal(t, 4*time.Second, p.oldestBacklog(), "a reading that changed is new")
}
