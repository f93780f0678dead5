package bridge

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sagabridge/sagabridge/config"
)

// Coalescing under load. SignalWithStart returns once Temporal has the
// signal in history, long before a worker has applied it: when the workers
// cannot keep up, every extra call is one more workflow task queued, and
// the tail grows while the calls still look fast. So the bridge watches how
// long workflow tasks wait to start, sampling a workflow it signalled a
// while ago, and widens a dispatch window while they wait longer than
// dispatch.coalesce.target_lag: a workflow's records then wait up to the
// window for more of that workflow's records, and one call carries them
// all. The window narrows again, to nothing, as the wait falls. Under a
// load the workers take, the bridge sends at once, as before.

// WorkflowTaskLagReader is implemented by a Temporal seam that can tell how
// long a workflow's pending workflow task has waited to start
// (temporalsdk.Client does, with DescribeWorkflowExecution). Without it
// the dispatch window stays closed. Safe for concurrent use.
type WorkflowTaskLagReader interface {
	// WorkflowTaskLag returns how long workflowID's pending workflow task
	// has waited to start, or waited before it started; zero when it has
	// none.
	WorkflowTaskLag(ctx context.Context, workflowID string) (time.Duration, error)
}

// Bounds of the window's steps: it opens at minWindow and closes when it
// would fall below it.
const minWindow = 10 * time.Millisecond

// sentAt is a workflow the bridge signalled, and when.
type sentAt struct {
	id string
	at time.Time
}

// coalescer holds the dispatch window and the control law that sets it.
// Safe for concurrent use.
type coalescer struct {
	cfg config.Coalesce
	log *slog.Logger

	mu     sync.Mutex
	window time.Duration
	lag    time.Duration // the last sampled lag
	over   bool          // the last sample was over the bar
	recent []sentAt      // a ring of recently signalled workflows
	next   int

	// The edge: where tasks last began to wait. edge is the widest window
	// of the second before (narrower windows let the workflows' calls
	// outrun the server), edgeRate the calls per second made then. past
	// holds the windows of the last samples, calls counts the calls since
	// the last sample and rate smooths them over two samples.
	edge     time.Duration
	edgeRate float64
	past     [edgeSamples]time.Duration
	calls    int
	rate     float64
}

// edgeSamples is how many samples back the window that began a wait is
// looked for: at the default 250ms interval, one second, about how long
// calls take to show as a wait in the sampled workflows' tasks.
const edgeSamples = 4

// recentSends is how many recently signalled workflows are remembered to
// pick a sample from.
const recentSends = 64

func newCoalescer(cfg config.Coalesce, log *slog.Logger) *coalescer {
	return &coalescer{cfg: cfg, log: log, recent: make([]sentAt, 0, recentSends)}
}

// Window is how long a workflow's first pending record waits for more
// before its call is made; zero sends at once.
func (c *coalescer) Window() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.window
}

// lastLag is the last sampled workflow-task lag.
func (c *coalescer) lastLag() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lag
}

// sent remembers that Temporal accepted a call to id at now. It keeps at
// most one call per eighth of the target lag, so that the ring spans eight
// targets however many calls are made.
func (c *coalescer) sent(id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if n := len(c.recent); n > 0 && now.Sub(c.recent[(c.next+n-1)%n].at) < c.cfg.TargetLag/8 {
		return
	}
	if len(c.recent) < recentSends {
		c.recent = append(c.recent, sentAt{id, now})
		return
	}
	c.recent[c.next] = sentAt{id, now}
	c.next = (c.next + 1) % recentSends
}

// sample picks the workflow to ask about: the one signalled most recently
// at least target_lag before now, so that a workflow task still waiting
// has waited longer than the target. "" when there is none.
func (c *coalescer) sample(now time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best sentAt
	for _, s := range c.recent {
		if now.Sub(s.at) >= c.cfg.TargetLag && s.at.After(best.at) {
			best = s
		}
	}
	return best.id
}

// step applies one sampled lag to the window. It widens while the lag
// exceeds both the target and half the window, two samples in a row: at
// once to at least the lag, then by half per sample, so a wait that lasts
// is met within two samples. One such sample alone opens a closed window
// at minWindow and holds an open one: widening by half on each sporadic
// slow sample while the hold below narrowed by a sixty-fourth between
// them ratcheted the window to its cap at light load
// (docs/BENCHMARKS.md). It narrows (closing below minWindow) while the lag
// is under half of the larger of the two, by a quarter, or slowly near
// where a wait last began (see narrowing); in between it holds. So under
// load the window settles at two to four times its tasks' wait to start:
// the server keeps headroom, since near its capacity a wait that is half
// the window is one burst away from a backlog that takes seconds to drain
// (a window that only matched the wait kept the server at that edge and
// let its tail tip over, docs/BENCHMARKS.md). At light load it closes.
func (c *coalescer) step(lag time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lag = lag
	was := c.window
	bar := max(c.cfg.TargetLag, c.window/2)
	over, again := lag > bar, c.over
	c.over = over
	c.rate = c.rate/2 + float64(c.calls)/c.cfg.SampleInterval.Seconds()/2
	c.calls = 0
	if over && !again { // a wait begins: remember where
		c.edge, c.edgeRate = slices.Max(c.past[:]), c.rate
	}
	copy(c.past[1:], c.past[:edgeSamples-1])
	c.past[0] = was
	switch {
	case over && again: // a wait that lasts: at least the wait at once
		c.window = min(c.cfg.MaxWindow, max(c.window*3/2, lag))
	case over && c.window == 0: // one slow sample opens it a little
		c.window = min(c.cfg.MaxWindow, minWindow)
	case over: // one slow sample in an open window is not yet a wait: hold
	case lag < bar/2 && c.window > 0:
		c.window -= c.narrowing()
		if c.window < minWindow {
			c.window = 0
		}
	}
	switch {
	case was == 0 && c.window > 0:
		c.log.Info("workflow tasks wait to start: coalescing each workflow's records in a dispatch window",
			"lag", lag, "target_lag", c.cfg.TargetLag, "window", c.window, "max_window", c.cfg.MaxWindow)
	case was > 0 && c.window == 0:
		c.log.Info("workflow tasks start within the target again: dispatching at once", "lag", lag, "target_lag", c.cfg.TargetLag)
	}
}

// narrowing is how much one sample under the bar takes off the window: a
// quarter, or a sixty-fourth (halving it in 44 samples, 11 s at the
// default interval) while it is within one and a half times the edge and
// the bridge still makes more than half the calls per second it made
// there. Narrowing by a quarter all the way let the window close past the
// edge every few seconds, and each time the server fell behind before the
// wait showed: on the fake server, where a fixed 200ms window kept up,
// the window's P99 was 2.3-2.6 times that window's
// (TestTheWindowHoldsNearWhereTheServerFellBehind).
// When the load falls the calls fall with it and the window closes as
// fast as before. An edge within a third of max_window is not held: there
// no window keeps the server up, and on the real stack at 2,000 events/s
// (window at its cap throughout) the hot key's workflow task timed out in
// four rounds of six held near the cap, against one of six without
// (docs/BENCHMARKS.md). The caller holds c.mu.
func (c *coalescer) narrowing() time.Duration {
	if c.window-c.window/4 < c.edge*3/2 && c.edge < c.cfg.MaxWindow*2/3 && c.rate > c.edgeRate/2 {
		return c.window / 64
	}
	return c.window / 4
}

// watchLag samples the workflow-task lag every sample_interval and steps
// the window, until ctx ends. The lag stepped is the larger of the sampled
// workflow's and backlogAge, the age of the oldest task in the routed task
// queues' backlogs as last read (backlog.go): a sticky task that timed out
// waits there, on the task queue, while the sampled workflow may have none
// pending. When the workflow cannot be read (deleted after retention, or
// a permission the bridge lacks) the backlog's age is stepped alone, and
// the failure is logged when it starts and when it ends.
func (c *coalescer) watchLag(ctx context.Context, r WorkflowTaskLagReader, now func() time.Time, backlogAge func() time.Duration) {
	tick := time.NewTicker(c.cfg.SampleInterval)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id := c.sample(now())
		if id == "" {
			c.step(backlogAge()) // nothing sent for a while
			continue
		}
		// Four intervals, and at least a second: a round trip longer than
		// four short intervals would have had every sample time out.
		cctx, cancel := context.WithTimeout(ctx, max(c.cfg.SampleInterval*4, time.Second))
		lag, err := r.WorkflowTaskLag(cctx, id)
		cancel()
		if err != nil {
			if !failing && ctx.Err() == nil {
				c.log.Warn("cannot read a workflow's pending task; the dispatch window follows the task-queue backlog alone until it can",
					"workflow_id", id, "err", err)
			}
			failing = true
			c.step(backlogAge())
			continue
		}
		if failing {
			c.log.Info("reading workflows' pending tasks again", "workflow_id", id)
			failing = false
		}
		age := backlogAge()
		c.step(max(lag, age))
		c.log.Debug("dispatch window stepped", "workflow_id", id, "workflow_task_lag", lag, "backlog_age", age, "window", c.Window())
	}
}

// coalescerFor is the dispatch window of taskQueue's workflows.
func (b *Bridge) coalescerFor(taskQueue string) *coalescer {
	if c := b.coalescers[taskQueue]; c != nil {
		return c
	}
	return b.otherCoalescer
}

// widestWindow is the widest dispatch window of any task queue, and the
// longest workflow-task lag last sampled on any.
func (b *Bridge) widestWindow() (window, lag time.Duration) {
	for _, c := range b.coalescers {
		window, lag = max(window, c.Window()), max(lag, c.lastLag())
	}
	return window, lag
}
