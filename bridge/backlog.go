package bridge

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"
)

// observeBacklog records a task queue's backlog and pauses or resumes the
// topics routed to it, with hysteresis between the high and low marks.
func (p *pressure) observeBacklog(taskQueue string, bl Backlog) {
	c := p.cfg.Backlog
	p.mu.Lock()
	defer p.mu.Unlock()
	last, seen := p.backlogs[taskQueue]
	p.cached[taskQueue] = seen && last == bl
	p.backlogs[taskQueue] = bl
	delete(p.unreadable, taskQueue)
	switch {
	// The count is approximate and can lag behind: it pauses only with an
	// oldest task that has waited countedAge, and a backlog whose oldest
	// task is zero seconds old is empty, whatever the count says.
	case !p.backedUp[taskQueue] && ((bl.Tasks >= c.HighTasks && bl.Age >= min(countedAge, c.HighAge)) || bl.Age >= c.HighAge):
		p.backedUp[taskQueue] = true
		p.pauses[ReasonBacklog]++
		p.log.Warn("pausing partitions: task queue backed up", "reason", ReasonBacklog, "task_queue", taskQueue,
			"backlog_tasks", bl.Tasks, "backlog_age", bl.Age, "high_tasks", c.HighTasks, "high_age", c.HighAge,
			"topics", p.topicsOf(taskQueue))
		p.applyLocked()
	case p.backedUp[taskQueue] && (bl.Tasks <= c.LowTasks || bl.Age == 0) && bl.Age <= c.LowAge:
		delete(p.backedUp, taskQueue)
		p.log.Info("task queue backlog below the low-water mark", "reason", ReasonBacklog, "task_queue", taskQueue,
			"backlog_tasks", bl.Tasks, "backlog_age", bl.Age)
		p.applyLocked()
	}
}

// countedAge is how long a backlog's oldest task must have waited for its
// count to pause the topics. A count stuck over high_tasks beside an oldest
// task of a few milliseconds (a task queue whose workers keep up) paused
// them on each reading with an age and resumed them on each without.
const countedAge = time.Second

// backlogAge is the age of the oldest backlogged task of taskQueue, as
// last measured. Temporal serves DescribeTaskQueue from a cache
// (matching.TaskQueueInfoByBuildIdTTL, 5 s by default), so a poll can
// repeat the reading before it, to the nanosecond, long after that backlog
// drained; a reading that repeats is the cache and counts as none. A
// backlog that stays changes its age with every reading the server makes
// anew, so it still counts once per cache period, and the dispatch window
// does not rest on it alone: it samples workflows' pending tasks.
func (p *pressure) backlogAge(taskQueue string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cached[taskQueue] {
		return 0
	}
	return p.backlogs[taskQueue].Age
}

// topicsOf lists the topics that route to taskQueue.
func (p *pressure) topicsOf(taskQueue string) []string {
	var ts []string
	for t, qs := range p.topicQueues {
		if slices.Contains(qs, taskQueue) {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	return ts
}

// backlogTimeout bounds one DescribeTaskQueue call.
const backlogTimeout = 5 * time.Second

// staleAfter is how many polls in a row may fail before a task queue's
// last backlog reading expires: a check that keeps failing (a permission
// the bridge lacks, say) must not hold its topics paused forever.
const staleAfter = 3

// watchBacklogs polls each task queue's backlog until ctx ends. Errors are
// logged when they start and stop, not on every poll, and counted. A
// reading stands for staleAfter failed polls, then expires: its pause lifts
// and /readyz says the backlog cannot be read (the circuit breaker still
// decides whether Temporal is reachable).
func (p *pressure) watchBacklogs(ctx context.Context, t Temporal) {
	queues := map[string]bool{}
	for _, qs := range p.topicQueues {
		for _, q := range qs {
			queues[q] = true
		}
	}
	var wg sync.WaitGroup
	for q := range queues {
		wg.Go(func() {
			failed := 0
			tick := time.NewTicker(p.cfg.Backlog.PollInterval)
			defer tick.Stop()
			for {
				cctx, cancel := context.WithTimeout(ctx, backlogTimeout)
				bl, err := t.TaskQueueBacklog(cctx, q)
				cancel()
				switch {
				case ctx.Err() != nil:
				case err != nil:
					failed++
					p.backlogFailures.Add(1)
					if failed == 1 {
						p.log.Warn("cannot read task queue backlog", "task_queue", q, "err", err)
					}
					if failed == staleAfter {
						p.expireBacklog(q, err)
					}
				default:
					if failed > 0 {
						p.log.Info("reading task queue backlog again", "task_queue", q)
					}
					failed = 0
					p.observeBacklog(q, bl)
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
}

// expireBacklog forgets taskQueue's last reading after it could not be
// read staleAfter times in a row, lifting its pause.
func (p *pressure) expireBacklog(taskQueue string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.backlogs, taskQueue)
	delete(p.cached, taskQueue)
	p.unreadable[taskQueue] = err.Error()
	if p.backedUp[taskQueue] {
		delete(p.backedUp, taskQueue)
		p.applyLocked()
	}
	p.log.Warn("task queue backlog unreadable: its last reading expired; its topics are no longer paused for it",
		"task_queue", taskQueue, "failed_polls", staleAfter, "err", err)
}

// unreadableBacklogs lists the task queues whose backlog cannot be read,
// with the last error.
func (p *pressure) unreadableBacklogs() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.unreadable)
}
