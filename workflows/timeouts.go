package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// OnTimeout registers the handler of the timeout name (Ctx.StartTimeout).
func OnTimeout[S any](en *Entity[S], name string, fn func(c *Ctx[S]) error) {
	if en.timeouts == nil {
		en.timeouts = map[string]func(c *Ctx[S]) error{}
	}
	en.timeouts[name] = fn
}

// StartTimeout starts the timeout name: unless cancelled, its OnTimeout
// handler runs after d, once the records that came before it fired have
// been applied (a record waiting when the deadline passed wins over it),
// and before those that came later. Starting a running timeout restarts it. A name
// with no OnTimeout handler starts nothing and returns an error naming it
// (ErrNoTimeoutHandler); a handler that returns it has its record rejected.
// After Fail it is refused (see Ctx.Fail) and returns an error wrapping
// ErrAfterFail.
func (c *Ctx[S]) StartTimeout(name string, d time.Duration) error {
	if err := c.refuse(fmt.Sprintf("StartTimeout(%q)", name)); err != nil {
		return err
	}
	if _, ok := c.r.en.timeouts[name]; !ok {
		return fmt.Errorf("start timeout %q: %w", name, ErrNoTimeoutHandler)
	}
	c.r.startTimer(name, workflow.Now(c).Add(d))
	return nil
}

// ErrNoTimeoutHandler is returned by Ctx.StartTimeout for a timeout that
// has no OnTimeout handler.
var ErrNoTimeoutHandler = errors.New("no OnTimeout handler registered for this timeout")

// CancelTimeout stops the timeout name; it does nothing if none runs.
func (c *Ctx[S]) CancelTimeout(name string) { c.r.cancelTimer(name) }

// timer is a running step timeout.
type timer struct {
	at     time.Time
	fired  workflow.Future
	cancel workflow.CancelFunc
	// after is how many batches of records had come when it fired, set
	// (stamped) in the workflow task it fired in: those go first
	// (runner.readyInTurn).
	after   int
	stamped bool
}

// fire runs the handler of the timeout name, which has fired.
func (r *runner[S]) fire(name string, f workflow.Future) {
	delete(r.timers, name)
	if f.Get(r.ctx, nil) != nil { // cancelled
		return
	}
	c := r.newCtx(event.Envelope{})
	if reason := c.rejection(r.en.timeouts[name](c)); reason != "" {
		r.reject(Rejection{Timeout: name, Reason: reason})
		workflow.GetLogger(r.ctx).Warn("timeout handler failed", "timeout", name, "reason", reason)
	}
	r.showStatus()
	r.retryHeld()
}

// startTimer starts (or restarts) the timeout name, which has a handler,
// to fire at at.
func (r *runner[S]) startTimer(name string, at time.Time) {
	r.cancelTimer(name)
	tctx, cancel := workflow.WithCancel(r.ctx)
	var fired workflow.Future
	if d := at.Sub(workflow.Now(r.ctx)); d > 0 {
		fired = workflow.NewTimerWithOptions(tctx, d, workflow.TimerOptions{Summary: name})
	} else { // already due (carried across ContinueAsNew)
		f, s := workflow.NewFuture(r.ctx)
		s.Set(nil, nil)
		fired = f
	}
	t := &timer{at: at, fired: fired, cancel: cancel}
	r.timers[name] = t
	// The main loop may be in a handler when it fires: note then how many
	// batches had come. (No command: replay is not affected.)
	workflow.Go(r.ctx, func(ctx workflow.Context) {
		if fired.Get(ctx, nil) == nil && !t.stamped {
			t.after, t.stamped = r.in.received+r.in.ch.Len(), true
		}
	})
}

// cancelTimer stops the timeout name if it runs.
func (r *runner[S]) cancelTimer(name string) {
	if t, ok := r.timers[name]; ok {
		t.cancel()
		delete(r.timers, name)
	}
}

// timerNames lists the running timeouts in a deterministic order.
func (r *runner[S]) timerNames() []string {
	names := make([]string, 0, len(r.timers))
	for name := range r.timers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
