package workflows

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// runner is one run of an entity.
type runner[S any] struct {
	en          *Entity[S]
	ctx         workflow.Context
	c           Snapshot[S]
	in          *Inbox
	base        EntityStats
	appliedHere int

	updates workflow.Channel // of *updateRequest
	ahead   *updateRequest   // taken from updates by nextUpdate, not yet answered
	queued  int              // updates sent and not yet answered
	timers  map[string]*timer

	statusAttr  bool   // the status search attribute is on for this run
	shownStatus string // the status last written to the search attribute

	// lateRecords arrived after the final status under the new_run
	// policy; a new run applies them (runner.late).
	lateRecords []event.Envelope
	// lateBytes is the JSON size of lateRecords (event.Envelope.JSONSize);
	// lateFull is set once the new run's input had no room for one more
	// (late), and later ones are dead-lettered.
	lateBytes int
	lateFull  bool

	closing bool // continuing as new: new updates are refused
	// stayUntil: the state was too large to carry when the run last
	// tried to continue as new; it tries again once appliedHere reaches
	// this (stayRecheck records later).
	stayUntil int
	cancelled bool // the workflow was asked to cancel
	// compensating is set while Fail runs the undos: they stay listed as
	// pending, though the status Fail set may be final.
	compensating bool
	// finishErr is the error Finish returned, handed to the new run of the
	// late records (Snapshot.PreviousRunError).
	finishErr string
}

func newRunner[S any](ctx workflow.Context, en *Entity[S], carried *Snapshot[S]) (*runner[S], error) {
	r := &runner[S]{en: en, timers: map[string]*timer{}}
	if carried.fresh() {
		if en.Init != nil {
			r.c.State = en.Init(workflow.GetInfo(ctx).WorkflowExecution.ID)
		}
		r.c.Status = StatusNew
		if carried != nil { // a new run of a closed workflow: skip what it applied
			r.c.Watermarks, r.c.Inbox, r.c.OnClosed = carried.Watermarks, carried.Inbox, carried.OnClosed
			r.c.InboxAdmitted, r.c.PreviousRunError = carried.InboxAdmitted, carried.PreviousRunError
			r.c.RecentKeys, r.c.RecentUpdates = carried.RecentKeys, carried.RecentUpdates
			if carried.LateWatermarks != nil { // the closed run's, covering what it dead-lettered
				marks := maps.Clone(r.c.Watermarks)
				if marks == nil {
					marks = event.NewWatermarks()
				}
				for k, v := range carried.LateWatermarks {
					if old, ok := marks[k]; !ok || v > old {
						marks[k] = v
					}
				}
				r.c.Watermarks = marks
			}
		}
	} else {
		r.c = *carried
	}
	r.c.Version = ContractVersion
	if r.c.CompletedSteps == nil {
		r.c.CompletedSteps = []string{}
	}
	if r.c.Compensations == nil {
		r.c.Compensations = []CompensationResult{}
	}
	r.c.Stats.Runs++
	r.base = r.c.Stats

	opts := en.ActivityOptions
	if opts.StartToCloseTimeout == 0 && opts.ScheduleToCloseTimeout == 0 {
		opts.StartToCloseTimeout = 10 * time.Second
	}
	r.ctx = workflow.WithActivityOptions(ctx, opts)

	signal, query := en.Signal, en.Query
	if signal == "" {
		signal = event.DefaultSignal
	}
	if query == "" {
		query = "state"
	}
	r.in = NewInbox(ctx, signal, r.c.Watermarks)
	r.in.push(event.Batch{Events: r.c.Inbox, OnClosed: r.c.OnClosed})
	r.in.admittedAhead = min(max(r.c.InboxAdmitted, 0), len(r.c.Inbox))
	r.c.Inbox, r.c.OnClosed, r.c.InboxAdmitted, r.c.LateWatermarks = nil, "", 0, nil
	if en.IdempotencyHeader != "" {
		window := en.IdempotencyWindow
		if window == 0 {
			window = 1000
		}
		r.in.WithIdempotencyKeys(en.IdempotencyHeader, window, r.c.RecentKeys)
	}
	r.updates = workflow.NewBufferedChannel(ctx, 1<<20)
	if err := workflow.SetQueryHandler(ctx, query, func() (Snapshot[S], error) { return r.snapshot(), nil }); err != nil {
		return r, fmt.Errorf("register %s query: %w", query, err)
	}
	for _, register := range en.updates {
		if err := register(r); err != nil {
			return r, err
		}
	}
	if en.StatusSearchAttribute != "" {
		r.statusAttr = workflow.GetVersion(ctx, statusSearchAttributeChange, workflow.DefaultVersion, 1) >= 1
		r.showStatus()
	}
	for _, t := range r.c.Timeouts {
		if _, ok := en.timeouts[t.Name]; !ok { // the handler was removed since
			r.reject(Rejection{Timeout: t.Name, Reason: "carried timeout has no OnTimeout handler"})
			continue
		}
		r.startTimer(t.Name, t.At)
	}
	r.c.Timeouts = nil
	return r, nil
}

// succeeded reports whether the saga has reached its end other than by
// cancellation: it is done (a status in Entity.Final, or Entity.Done) and
// was not cancelled. Nothing can run its pending compensations any more,
// so the state no longer lists them. That is the success case: a saga that
// reached its final status through Fail has none pending anyway (Fail runs
// and forgets them); a cancelled saga whose OnCancel did not Fail keeps
// them, for an operator to run by hand.
func (r *runner[S]) succeeded() bool {
	return r.done() && !r.cancelled
}

// done reports whether the entity has finished.
func (r *runner[S]) done() bool {
	return r.cancelled || (r.en.Done != nil && r.en.Done(&r.c.State)) || slices.Contains(r.en.Final, r.c.Status)
}

// step applies one thing: a pending record, an update or a fired timeout,
// waiting for one if none is ready.
func (r *runner[S]) step() {
	if r.cancelPending() {
		r.cancel()
		return
	}
	if e, ok := r.in.admitPending(); ok {
		r.apply(e)
		return
	}
	if r.readyInTurn() {
		return
	}
	sel := workflow.NewSelector(r.ctx)
	sel.AddReceive(r.in.ch, func(ch workflow.ReceiveChannel, _ bool) {
		var b event.Batch
		if !ch.ReceiveAsync(&b) {
			// A signal that cannot be decoded (corrupted, or a batch format
			// this worker does not read yet): the SDK logged and dropped it.
			// Receive would wait here for the next signal, and no timeout,
			// update or cancellation would be handled meanwhile.
			if workflow.GetVersion(r.ctx, undecodableSignalChange, workflow.DefaultVersion, 1) >= 1 {
				return
			}
			ch.Receive(r.ctx, &b) // runs recorded before this check waited, as they did then
		}
		r.in.push(b)
	})
	sel.AddReceive(r.updates, func(ch workflow.ReceiveChannel, _ bool) {
		var req *updateRequest
		ch.Receive(r.ctx, &req)
		r.queued--
		r.handleUpdate(req)
	})
	for _, name := range r.timerNames() {
		sel.AddFuture(r.timers[name].fired, func(f workflow.Future) { r.fire(name, f) })
	}
	if !r.cancelled {
		sel.AddReceive(r.ctx.Done(), func(workflow.ReceiveChannel, bool) { r.cancel() })
	}
	sel.Select(r.ctx)
}

// readyInTurn answers the update waiting first, or runs a timeout that
// has fired, once the records that came before it have been taken in:
// the selector below, which alone handled them, took a waiting batch of
// records first whenever there was one, so under a steady stream (a
// record arriving during each handler) a timeout due in a minute fired
// ten minutes late, and an update waited as long, until the records
// stopped. Records that came before an update or a timeout are still
// applied first, as before: a payment that arrived before its deadline
// wins over the deadline. Runs recorded before this check went on as they
// did then.
func (r *runner[S]) readyInTurn() bool {
	upd := r.queued > 0
	var fired []string
	for _, name := range r.timerNames() {
		if t := r.timers[name]; t.fired.IsReady() {
			fired = append(fired, name)
		}
	}
	if !upd && len(fired) == 0 {
		return false
	}
	if workflow.GetVersion(r.ctx, readyInTurnChange, workflow.DefaultVersion, 1) < 1 {
		return false
	}
	// Due once the batches that came before it are received, or the
	// channel is empty: a signal that could not be decoded was counted
	// but is never received (the SDK drops it).
	due := func(after int) bool { return after <= r.in.received || r.in.ch.Len() == 0 }
	if req := r.nextUpdate(); req != nil && due(req.after) {
		return r.answerQueuedUpdate()
	}
	for _, name := range fired {
		t := r.timers[name]
		if !t.stamped { // its watcher has not run yet: it fired in this workflow task
			t.after, t.stamped = r.in.received+r.in.ch.Len(), true
		}
		if due(t.after) {
			r.fire(name, t.fired)
			return true
		}
	}
	return false
}

// readyInTurnChange is the workflow.GetVersion change ID that guards
// handling ready updates and timeouts in turn with records (readyInTurn).
const readyInTurnChange = "sagabridge.ready-in-turn"

// cancelPending reports whether the workflow was asked to cancel and the
// run has not handled it yet: the request came while a handler ran (its
// activities failed with the cancellation), and the selector, which
// handles a request that comes while the run waits, was not reached.
// Applying the next record then would run its handler on the cancelled
// context. Runs recorded before this check handle the request when they
// next wait, as they did then.
func (r *runner[S]) cancelPending() bool {
	return !r.cancelled && r.ctx.Err() != nil &&
		workflow.GetVersion(r.ctx, cancelBetweenRecordsChange, workflow.DefaultVersion, 1) >= 1
}

// undecodableSignalChange is the workflow.GetVersion change ID that guards
// going on after a signal that cannot be decoded (step).
const undecodableSignalChange = "sagabridge.undecodable-signal"

// cancelBetweenRecordsChange is the workflow.GetVersion change ID that
// guards handling a cancellation between records and ending a run on a
// disconnected context (cancelPending, Entity.Run).
const cancelBetweenRecordsChange = "sagabridge.cancel-between-records"

// cancel handles a cancellation request: from here on the run works on a
// disconnected context, so that compensations, Finish and the memo still
// happen; OnCancel (by default Fail with StatusCancelled) decides what the
// saga does; then the run closes and reports itself cancelled.
func (r *runner[S]) cancel() {
	r.cancelled = true
	r.ctx, _ = workflow.NewDisconnectedContext(r.ctx)
	c := r.newCtx(event.Envelope{})
	if r.en.OnCancel != nil {
		if reason := c.rejection(r.en.OnCancel(c)); reason != "" {
			r.reject(Rejection{Reason: "cancel handler: " + reason})
		}
	} else {
		_ = c.Fail(StatusCancelled, temporal.NewCanceledError("workflow cancelled"))
	}
	r.showStatus()
}

// apply hands one new record to its handler, or rejects it.
func (r *runner[S]) apply(e event.Envelope) {
	if r.done() {
		r.late(e)
		return
	}
	pos := r.count(e)
	reason, held := r.handle(e)
	switch {
	case held:
		r.hold(e, pos, reason)
		return // nothing changed: the held records wait on
	case reason != "":
		r.rejectRecord(e, pos, reason)
	}
	r.showStatus()
	r.retryHeld()
}

// count records that e is applied (or rejected) and returns its position.
func (r *runner[S]) count(e event.Envelope) AppliedEvent {
	r.appliedHere++
	r.c.Stats.Applied++
	if r.c.Key == "" {
		r.c.Key = e.Key
	}
	pos := AppliedEvent{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset, Type: e.Type}
	if r.en.KeepApplied > 0 {
		r.c.Applied = append(r.c.Applied, pos)
		if over := len(r.c.Applied) - r.en.KeepApplied; over > 0 {
			r.c.Applied = slices.Delete(r.c.Applied, 0, over)
		}
	}
	return pos
}

// rejectRecord records and logs that the record e at pos was not acted on.
func (r *runner[S]) rejectRecord(e event.Envelope, pos AppliedEvent, reason string) {
	r.reject(Rejection{AppliedEvent: &pos, Reason: reason})
	workflow.GetLogger(r.ctx).Warn("event rejected", "type", e.Type, "position", e.Position().String(), "reason", reason)
}

// keepRejected is how many rejections the state lists.
const keepRejected = 100

// keepSteps is how many completed steps, and compensations that ran, the
// state lists: the last ones. A saga has far fewer; an entity that never
// ends would otherwise carry one more name per step into every run, until
// its state was too large to continue as new.
const keepSteps = 1000

// keepStepsChange is the workflow.GetVersion change ID that guards
// keeping only the last keepSteps: the state's size decides what a run
// carries into the next, so histories recorded with every step kept must
// replay with every step kept.
const keepStepsChange = "sagabridge.keep-steps"

// keepLastSteps drops the oldest of list past keepSteps, in runs recorded
// since keepStepsChange; it asks only once the list is that long.
func keepLastSteps[T any](ctx workflow.Context, list []T) []T {
	if len(list) <= keepSteps || workflow.GetVersion(ctx, keepStepsChange, workflow.DefaultVersion, 1) < 1 {
		return list
	}
	return slices.Delete(list, 0, len(list)-keepSteps)
}

// reject records a rejection, keeping the last keepRejected.
func (r *runner[S]) reject(rej Rejection) {
	r.c.Stats.Rejected++
	r.c.Rejected = append(r.c.Rejected, rej)
	if over := len(r.c.Rejected) - keepRejected; over > 0 {
		r.c.Rejected = slices.Delete(r.c.Rejected, 0, over)
	}
}

// showStatus writes the status to the search attribute when it changed.
func (r *runner[S]) showStatus() {
	if !r.statusAttr || r.c.Status == r.shownStatus {
		return
	}
	key := temporal.NewSearchAttributeKeyKeyword(r.en.StatusSearchAttribute)
	if err := workflow.UpsertTypedSearchAttributes(r.ctx, key.ValueSet(r.c.Status)); err != nil {
		workflow.GetLogger(r.ctx).Error("upsert status search attribute", "attribute", r.en.StatusSearchAttribute, "err", err)
		return
	}
	r.shownStatus = r.c.Status
}

// snapshot returns the Snapshot as of now. Lists the contract shows as []
// are never null, and the pending compensations of a saga that has ended
// without failing are gone (see succeeded).
func (r *runner[S]) snapshot() Snapshot[S] {
	c := r.rawSnapshot()
	encodableTimestamps(&c)
	return c
}

// rawSnapshot is snapshot with the records' timestamps as decoded, some
// perhaps not encodable (encodableTimestamps).
func (r *runner[S]) rawSnapshot() Snapshot[S] {
	c := r.c
	if c.CompletedSteps == nil {
		c.CompletedSteps = []string{}
	}
	if c.Compensations == nil {
		c.Compensations = []CompensationResult{}
	}
	if r.succeeded() && !r.compensating {
		c.PendingCompensations = nil
	}
	if r.in != nil {
		c.Watermarks, c.RecentKeys = r.in.Watermarks, r.in.RecentKeys()
		c.Stats.Deduped = r.base.Deduped + r.in.Deduped
		c.Stats.DedupedByKey = r.base.DedupedByKey + r.in.DedupedByKey
	}
	c.Timeouts = nil
	for _, name := range r.timerNames() {
		c.Timeouts = append(c.Timeouts, Timeout{Name: name, At: r.timers[name].at})
	}
	if c.Held != nil {
		c.Held = slices.Clone(c.Held)
	}
	return c
}
