package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// ContractVersion is the version of the state query's JSON shape (Carry).
// It changes only when a field changes meaning or disappears; new fields
// may appear within a version. See docs/STATE.md.
const ContractVersion = 1

// StatusNew is the status of an entity before any handler set one.
const StatusNew = "new"

// StatusCancelled is the status the runtime gives a saga whose workflow
// was cancelled (temporal workflow cancel), unless Entity.OnCancel says
// otherwise.
const StatusCancelled = "cancelled"

// statusSearchAttributeChange is the workflow.GetVersion change ID that
// guards the status search attribute, so histories recorded before an
// entity enabled it still replay.
const statusSearchAttributeChange = "sagabridge.status-search-attribute"

// Entity is the runtime of a long-lived workflow fed by the bridge: one
// workflow per key that applies every record once, in order, for as long
// as records come. User code registers typed handlers (On, OnTimeout,
// OnUpdate) and never touches signal channels, dedupe or ContinueAsNew:
//
//   - records are applied exactly once, in the order the bridge sent them,
//     deduped by (topic, partition, offset) and optionally by an
//     idempotency-key header; updates are deduped by update ID;
//   - a saga's completed steps and their compensations (Ctx.Completed,
//     Ctx.Fail), its status, current step and last error are kept in the
//     state query's answer (Carry) and survive ContinueAsNew;
//   - step timeouts (Ctx.StartTimeout) fire their OnTimeout handler and
//     survive ContinueAsNew too;
//   - the workflow continues-as-new when Temporal suggests it (or at
//     MaxHistoryEvents or MaxAppliedPerRun), after draining pending signals
//     and updates, so no event is lost or applied twice across runs.
//
// Build it once per workflow function and register handlers before Run:
//
//	func OrderSaga(ctx workflow.Context, c *workflows.Carry[Order]) (workflows.Carry[Order], error) {
//		en := &workflows.Entity[Order]{Final: []string{"completed", "compensated"}}
//		workflows.On(en, "OrderPlaced", placeOrder)
//		return en.Run(ctx, c)
//	}
type Entity[S any] struct {
	// Apply applies a record no typed handler (On) matches. Optional: by
	// default such a record is rejected (kept in Carry.Rejected). It runs
	// in workflow code: it must be deterministic and may run activities.
	Apply func(ctx workflow.Context, s *S, e event.Envelope)
	// Init returns the initial state of a new entity (not of a continued
	// run), given its workflow ID. Optional; default the zero S.
	Init func(workflowID string) S
	// Done reports that the entity has finished; the workflow then applies
	// the records already signalled and closes. Optional; see Final.
	Done func(s *S) bool
	// Final lists statuses (Ctx.SetStatus, Ctx.Fail) that end the entity.
	// The entity is done when Done says so or its status is in Final;
	// with neither it runs forever (continuing as new).
	Final []string
	// Finish runs once after the last record was applied, before the
	// workflow closes: publish an outcome here. An error fails the workflow.
	// Optional.
	Finish func(c *Ctx[S]) error
	// OnCancel runs when the workflow is asked to cancel. Optional; by
	// default the saga fails with StatusCancelled, compensating its
	// completed steps. Either way the run then closes (Finish runs) and
	// reports itself cancelled.
	OnCancel func(c *Ctx[S]) error
	// Signal is the signal the bridge sends. Optional, default "events".
	Signal string
	// Query is the query that returns the Carry. Optional, default "state".
	Query string
	// ActivityOptions apply to activities handlers start with the Ctx.
	// Optional; default a 10 s start-to-close timeout and the server's
	// default retry policy.
	ActivityOptions workflow.ActivityOptions
	// Compensation configures how Ctx.Fail undoes completed steps.
	Compensation CompensationOptions
	// StatusSearchAttribute names a Keyword search attribute the runtime
	// keeps equal to the status, so sagas can be listed by status
	// (temporal workflow list --query 'SagaStatus="compensated"'). The
	// attribute must be registered on the namespace first, or workflow
	// tasks fail. Optional; default off. Turning it on for a workflow type
	// with runs under way is safe: it is guarded by workflow.GetVersion.
	StatusSearchAttribute string
	// IdempotencyHeader names a record header with a producer-side
	// idempotency key; records whose key was seen among the last
	// IdempotencyWindow keys are dropped. Optional.
	IdempotencyHeader string
	// IdempotencyWindow is how many keys are remembered. Optional, default 1000.
	IdempotencyWindow int
	// UpdateWindow is how many update results are remembered across runs,
	// so a client retrying an update with the same update ID gets the first
	// answer instead of a second effect. Optional, default 100.
	UpdateWindow int
	// KeepApplied keeps the positions of the last KeepApplied records in
	// Carry.Applied. Optional; default 0 (the watermarks and counters are
	// always kept).
	KeepApplied int
	// MaxHistoryEvents continues-as-new at this history length even before
	// Temporal suggests it. Optional; default only when suggested.
	MaxHistoryEvents int
	// MaxAppliedPerRun continues-as-new after this many records in one run,
	// bounding work replayed on a worker restart. Optional; default no limit.
	MaxAppliedPerRun int

	handlers map[string]func(c *Ctx[S]) error
	timeouts map[string]func(c *Ctx[S]) error
	updates  []func(r *runner[S]) error
}

// CompensationOptions configure how a saga undoes its completed steps.
type CompensationOptions struct {
	// Parallel runs the compensations concurrently (for independent steps,
	// such as a flight, a hotel and a car) instead of newest first.
	Parallel bool
	// StopOnFailure stops at the first failed compensation and reports the
	// rest as skipped, for undos that are only safe in order. Default
	// false: a failed compensation is reported and the rest still run.
	StopOnFailure bool
	// ActivityOptions apply to compensation activities. Optional; default a
	// 30 s start-to-close timeout with up to 10 attempts.
	ActivityOptions workflow.ActivityOptions
}

// Carry is an entity's state with what the runtime keeps across runs. It is
// the workflow's input on a continued run (nil on the first), its result,
// and the answer to the state query: a documented JSON contract
// (ContractVersion, docs/STATE.md).
type Carry[S any] struct {
	// Version is ContractVersion.
	Version int `json:"version"`
	// Key is the record key of the entity's events (of the first record applied).
	Key string `json:"key"`
	Progress
	// State is the user's state.
	State S `json:"state"`
	// Watermarks are the highest applied offset per "topic/partition".
	Watermarks event.Watermarks `json:"watermarks"`
	// Applied lists the positions of the last Entity.KeepApplied records
	// applied (including rejected ones), oldest first.
	Applied []AppliedEvent `json:"applied,omitempty"`
	// Stats counts what the entity has done over all its runs.
	Stats EntityStats `json:"stats"`
	// PendingCompensations are the undos of the completed steps, oldest first.
	PendingCompensations []Undo `json:"pending_compensations,omitempty"`
	// Timeouts are the step timeouts running, by name.
	Timeouts []Timeout `json:"timeouts,omitempty"`
	// RecentKeys are the remembered idempotency keys, oldest first.
	RecentKeys []string `json:"recent_keys,omitempty"`
	// RecentUpdates are the remembered update results, oldest first.
	RecentUpdates []UpdateResult `json:"recent_updates,omitempty"`
	// Inbox holds records that arrived but were not yet applied when the
	// run continued as new; the next run applies them first.
	Inbox []event.Envelope `json:"inbox,omitempty"`
}

// Progress is where a saga stands.
type Progress struct {
	// Status is set by handlers (Ctx.SetStatus, Ctx.Fail); StatusNew at first.
	Status string `json:"status"`
	// CurrentStep is the step begun and not completed (Ctx.Begin).
	CurrentStep string `json:"current_step,omitempty"`
	// CompletedSteps lists completed steps in order (Ctx.Completed).
	CompletedSteps []string `json:"completed_steps"`
	// Compensations lists the compensations that ran, in the order they
	// ran, with an error where one failed.
	Compensations []CompensationResult `json:"compensations"`
	// LastError is the failure that made the saga compensate, if any.
	LastError string `json:"last_error,omitempty"`
	// Rejected lists the last 100 records and timeouts that were applied
	// but could not be acted on (unknown type, undecodable value, handler
	// error, or the entity was already done), with the reason; Stats.Rejected
	// counts them all. Nothing is dropped silently.
	Rejected []Rejection `json:"rejected,omitempty"`
}

// Rejection is a record or timeout the entity could not act on, and why.
type Rejection struct {
	// AppliedEvent is the record's position; absent for a timeout.
	*AppliedEvent
	// Timeout names the timeout whose handler failed, for timeouts.
	Timeout string `json:"timeout,omitempty"`
	Reason  string `json:"reason"`
}

// Timeout is a running step timeout.
type Timeout struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// UpdateResult is a remembered update outcome.
type UpdateResult struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Result []byte `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

// EntityStats counts what an entity has done over all its runs.
type EntityStats struct {
	// Applied counts records applied (including rejected ones).
	Applied int `json:"applied"`
	// Deduped counts redelivered records dropped by offset.
	Deduped int `json:"deduped"`
	// DedupedByKey counts records dropped by idempotency key.
	DedupedByKey int `json:"deduped_by_key"`
	// Rejected counts records and timeouts rejected (see Progress.Rejected).
	Rejected int `json:"rejected"`
	// Updates counts updates applied.
	Updates int `json:"updates"`
	// DedupedUpdates counts updates answered from a remembered result.
	DedupedUpdates int `json:"deduped_updates"`
	// Runs counts this run and the ones it continued from.
	Runs int `json:"runs"`
}

// Run applies records, updates and timeouts until the entity is done,
// continuing as new whenever history grows large. It returns the final
// Carry; on ContinueAsNew the error is the continue-as-new request.
func (en *Entity[S]) Run(ctx workflow.Context, carried *Carry[S]) (Carry[S], error) {
	r, err := newRunner(ctx, en, carried)
	if err != nil {
		return r.snapshot(), err
	}
	for !r.done() {
		r.step()
		if !r.done() && en.continueAsNew(ctx, r.appliedHere) {
			// Answer the updates already accepted, then hand the records
			// that arrived and were not applied to the next run: applying
			// them here could run activities while more arrive, and a busy
			// key would never get to continue as new.
			r.closing = true
			r.settleUpdates()
			next := r.snapshot()
			next.Inbox = r.in.pending
			return next, workflow.NewContinueAsNewError(ctx, workflow.GetInfo(ctx).WorkflowType.Name, &next)
		}
	}
	r.drain()
	clear(r.timers) // they end with the run; nothing runs any more
	if en.Finish != nil {
		if err := en.Finish(r.newCtx(event.Envelope{})); err != nil {
			return r.snapshot(), err
		}
		r.showStatus()
		r.drain() // records that came while Finish ran: rejected, not lost
	}
	final := r.snapshot()
	if err := r.in.Close(r.ctx); err != nil {
		return final, fmt.Errorf("record watermarks: %w", err)
	}
	if r.cancelled {
		return final, temporal.NewCanceledError(final.Status)
	}
	return final, nil
}

// continueAsNew reports whether this run is large enough to start afresh.
func (en *Entity[S]) continueAsNew(ctx workflow.Context, appliedHere int) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() ||
		(en.MaxHistoryEvents > 0 && info.GetCurrentHistoryLength() >= en.MaxHistoryEvents) ||
		(en.MaxAppliedPerRun > 0 && appliedHere >= en.MaxAppliedPerRun)
}

// runner is one run of an entity.
type runner[S any] struct {
	en          *Entity[S]
	ctx         workflow.Context
	c           Carry[S]
	in          *Inbox
	base        EntityStats
	appliedHere int

	updates workflow.Channel // of *updateRequest
	queued  int              // updates sent and not yet received
	timers  map[string]*timer

	statusAttr  bool   // the status search attribute is on for this run
	shownStatus string // the status last written to the search attribute

	closing   bool // continuing as new: new updates are refused
	cancelled bool // the workflow was asked to cancel
}

// timer is a running step timeout.
type timer struct {
	at     time.Time
	fired  workflow.Future
	cancel workflow.CancelFunc
}

func newRunner[S any](ctx workflow.Context, en *Entity[S], carried *Carry[S]) (*runner[S], error) {
	r := &runner[S]{en: en, timers: map[string]*timer{}}
	if carried != nil {
		r.c = *carried
	} else {
		if en.Init != nil {
			r.c.State = en.Init(workflow.GetInfo(ctx).WorkflowExecution.ID)
		}
		r.c.Status = StatusNew
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
	r.in.pending, r.c.Inbox = r.c.Inbox, nil
	if en.IdempotencyHeader != "" {
		window := en.IdempotencyWindow
		if window == 0 {
			window = 1000
		}
		r.in.WithIdempotencyKeys(en.IdempotencyHeader, window, r.c.RecentKeys)
	}
	r.updates = workflow.NewBufferedChannel(ctx, 1<<20)
	if err := workflow.SetQueryHandler(ctx, query, func() (Carry[S], error) { return r.snapshot(), nil }); err != nil {
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

// done reports whether the entity has finished.
func (r *runner[S]) done() bool {
	return r.cancelled || (r.en.Done != nil && r.en.Done(&r.c.State)) || slices.Contains(r.en.Final, r.c.Status)
}

// step applies one thing: a pending record, an update or a fired timeout,
// waiting for one if none is ready.
func (r *runner[S]) step() {
	if e, ok := r.in.admitPending(); ok {
		r.apply(e)
		return
	}
	sel := workflow.NewSelector(r.ctx)
	sel.AddReceive(r.in.ch, func(ch workflow.ReceiveChannel, _ bool) {
		var b event.Batch
		ch.Receive(r.ctx, &b)
		r.in.pending = append(r.in.pending, b.Events...)
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

// cancel handles a cancellation request: from here on the run works on a
// disconnected context, so that compensations, Finish and the memo still
// happen; OnCancel (by default Fail with StatusCancelled) decides what the
// saga does; then the run closes and reports itself cancelled.
func (r *runner[S]) cancel() {
	r.cancelled = true
	r.ctx, _ = workflow.NewDisconnectedContext(r.ctx)
	c := r.newCtx(event.Envelope{})
	if r.en.OnCancel != nil {
		if err := r.en.OnCancel(c); err != nil {
			r.reject(Rejection{Reason: "cancel handler: " + err.Error()})
		}
	} else {
		c.Fail(StatusCancelled, temporal.NewCanceledError("workflow cancelled"))
	}
	r.showStatus()
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

// answerQueuedUpdate handles one update waiting in the queue, if any.
func (r *runner[S]) answerQueuedUpdate() bool {
	var req *updateRequest
	if !r.updates.ReceiveAsync(&req) {
		return false
	}
	r.queued--
	r.handleUpdate(req)
	return true
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

// apply hands one new record to its handler, or rejects it.
func (r *runner[S]) apply(e event.Envelope) {
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
	var err error
	switch h, ok := r.en.handlers[e.Type]; {
	case r.done():
		err = fmt.Errorf("already %s", r.c.Status)
	case ok:
		err = h(r.newCtx(e))
	case r.en.Apply != nil:
		r.en.Apply(r.ctx, &r.c.State, e)
	default:
		err = fmt.Errorf("no handler for event type %q", e.Type)
	}
	if err != nil {
		r.reject(Rejection{AppliedEvent: &pos, Reason: err.Error()})
		workflow.GetLogger(r.ctx).Warn("event rejected", "type", e.Type, "position", e.Position().String(), "reason", err.Error())
	}
	r.showStatus()
}

// keepRejected is how many rejections the state lists.
const keepRejected = 100

// reject records a rejection, keeping the last keepRejected.
func (r *runner[S]) reject(rej Rejection) {
	r.c.Stats.Rejected++
	r.c.Rejected = append(r.c.Rejected, rej)
	if over := len(r.c.Rejected) - keepRejected; over > 0 {
		r.c.Rejected = slices.Delete(r.c.Rejected, 0, over)
	}
}

// fire runs the handler of the timeout name, which has fired.
func (r *runner[S]) fire(name string, f workflow.Future) {
	delete(r.timers, name)
	if f.Get(r.ctx, nil) != nil { // cancelled
		return
	}
	if err := r.en.timeouts[name](r.newCtx(event.Envelope{})); err != nil {
		r.reject(Rejection{Timeout: name, Reason: err.Error()})
		workflow.GetLogger(r.ctx).Warn("timeout handler failed", "timeout", name, "reason", err.Error())
	}
	r.showStatus()
}

// startTimer starts (or restarts) the timeout name to fire at at.
func (r *runner[S]) startTimer(name string, at time.Time) {
	if _, ok := r.en.timeouts[name]; !ok {
		panic(fmt.Sprintf("sagabridge: timeout %q has no OnTimeout handler", name))
	}
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
	r.timers[name] = &timer{at: at, fired: fired, cancel: cancel}
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

// snapshot returns the Carry as of now.
func (r *runner[S]) snapshot() Carry[S] {
	c := r.c
	if r.in != nil {
		c.Watermarks, c.RecentKeys = r.in.Watermarks, r.in.RecentKeys()
		c.Stats.Deduped = r.base.Deduped + r.in.Deduped
		c.Stats.DedupedByKey = r.base.DedupedByKey + r.in.DedupedByKey
	}
	c.Timeouts = nil
	for _, name := range r.timerNames() {
		c.Timeouts = append(c.Timeouts, Timeout{Name: name, At: r.timers[name].at})
	}
	return c
}
