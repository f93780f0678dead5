package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// continueAsNew reports whether this run is large enough to start afresh.
func (en *Entity[S]) continueAsNew(ctx workflow.Context, appliedHere int) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() ||
		(en.MaxHistoryEvents > 0 && info.GetCurrentHistoryLength() >= en.MaxHistoryEvents) ||
		(en.MaxAppliedPerRun > 0 && appliedHere >= en.MaxAppliedPerRun)
}

// settleUpdates answers every accepted update, moving records that arrive
// meanwhile to the inbox without applying them, and waits for the update
// handlers to return. New updates are refused while closing.
func (r *runner[S]) settleUpdates() {
	r.settle(func() bool {
		var b event.Batch
		if r.in.ch.ReceiveAsync(&b) {
			r.in.pending = append(r.in.pending, b.Events...)
			return true
		}
		return r.answerQueuedUpdate()
	})
}

// drain applies everything already received (records, updates, fired
// timeouts) and waits for running update handlers, so that nothing is
// lost when the run closes or continues as new.
func (r *runner[S]) drain() { r.settle(r.drainOne) }

// settle runs step until nothing is ready, waits until an update is queued
// or every update handler has returned, and repeats until nothing arrived
// while it waited.
func (r *runner[S]) settle(step func() bool) {
	for {
		for step() {
		}
		workflow.Await(r.ctx, func() bool { return r.queued > 0 || workflow.AllHandlersFinished(r.ctx) })
		if !step() {
			return
		}
	}
}

// drainOne applies one ready item without blocking and reports whether it did.
func (r *runner[S]) drainOne() bool {
	if e, ok := r.in.TryNext(); ok {
		r.apply(e)
		return true
	}
	if r.answerQueuedUpdate() {
		return true
	}
	if !r.done() {
		for _, name := range r.timerNames() {
			if t := r.timers[name]; t.fired.IsReady() {
				r.fire(name, t.fired)
				return true
			}
		}
	}
	return false
}
