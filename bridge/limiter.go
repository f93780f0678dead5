package bridge

import (
	"context"
	"sync"
	"time"
)

// limiter is an AIMD concurrency limit on calls to Temporal. Each call
// that succeeds within the latency target raises the limit by 1/limit (one
// call per round of calls); a call that fails with a retryable error or
// runs over the target cuts it by a quarter, at most once per target
// interval so one burst of failures counts as one signal. Safe for
// concurrent use.
type limiter struct {
	min, max float64
	target   time.Duration
	now      func() time.Time

	mu       sync.Mutex
	limit    float64
	inFlight int
	waiters  int // acquire calls waiting for a slot
	lastCut  time.Time
	freed    chan struct{} // closed and replaced when a slot may have opened
}

func newLimiter(minimum, maximum int, target time.Duration, now func() time.Time) *limiter {
	return &limiter{
		min: float64(minimum), max: float64(maximum), target: target, now: now,
		limit: float64(maximum), freed: make(chan struct{}),
	}
}

// acquire waits for a call slot; it fails only when ctx ends.
func (l *limiter) acquire(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.inFlight < int(l.limit) {
			l.inFlight++
			l.mu.Unlock()
			return nil
		}
		freed := l.freed
		l.waiters++
		l.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
		}
		l.mu.Lock()
		l.waiters--
		l.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// done returns a slot, reporting how long the call took and whether it
// met congestion (a retryable error).
func (l *limiter) done(latency time.Duration, congested bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	now := l.now()
	switch {
	case congested || latency > l.target:
		if now.Sub(l.lastCut) >= l.target {
			l.limit = max(l.min, l.limit*0.75)
			l.lastCut = now
		}
	default:
		l.limit = min(l.max, l.limit+1/l.limit)
	}
	close(l.freed)
	l.freed = make(chan struct{})
}

// abort returns a slot that was not used for a call.
func (l *limiter) abort() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	close(l.freed)
	l.freed = make(chan struct{})
}

// current returns the limit.
func (l *limiter) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// waiting returns how many calls wait for a slot.
func (l *limiter) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiters
}
