package workflows

import (
	"errors"
	"fmt"
	"math"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// ContractVersion is the version of the state query's JSON shape (Snapshot).
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
//     return Ctx.Fail), its status, current step and last error are kept in the
//     state query's answer (Snapshot) and survive ContinueAsNew;
//   - step timeouts (Ctx.StartTimeout) fire their OnTimeout handler and
//     survive ContinueAsNew too;
//   - a record that came before its precondition can be held (Ctx.Hold)
//     and is applied once the precondition holds, or rejected when the
//     saga ends;
//   - the workflow continues-as-new when Temporal suggests it (or at
//     MaxHistoryEvents or MaxAppliedPerRun), after draining pending signals
//     and updates, so no event is lost or applied twice across runs.
//
// Build it once per workflow function and register handlers before Run:
//
//	func OrderSaga(ctx workflow.Context, c *workflows.Snapshot[Order]) (workflows.Snapshot[Order], error) {
//		en := &workflows.Entity[Order]{Final: []string{"completed", "compensated"}}
//		workflows.On(en, "OrderPlaced", placeOrder)
//		return en.Run(ctx, c)
//	}
type Entity[S any] struct {
	// Apply applies a record no typed handler (On) matches. Optional: by
	// default such a record is rejected (kept in Snapshot.Rejected). It runs
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
	// reports itself cancelled; except that records which came after it
	// under on_closed_workflow new_run go to a new run, as they do after
	// any final status: the run then continues as new with them (its
	// state, StatusCancelled, stays queryable on that run with its run
	// ID), and a
	// client waiting on the workflow's result follows the new run. A
	// request that comes after the saga
	// reached its final status changes nothing: it does not run OnCancel,
	// and the run completes.
	OnCancel func(c *Ctx[S]) error
	// Signal is the signal the bridge sends. Optional, default "events".
	Signal string
	// Query is the query that returns the Snapshot. Optional, default "state".
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
	// answer instead of a second effect. The answers kept are bounded by
	// a quarter of MaxCarryBytes too, the oldest forgotten first; an
	// answer over that alone is remembered as a non-retryable error
	// (AnswerTooLargeToRemember) that says the update ran. Optional,
	// default 100.
	UpdateWindow int
	// KeepApplied keeps the positions of the last KeepApplied records in
	// Snapshot.Applied. Optional; default 0 (the watermarks and counters are
	// always kept).
	KeepApplied int
	// MaxHistoryEvents continues-as-new at this history length even before
	// Temporal suggests it. Optional; default only when suggested.
	MaxHistoryEvents int
	// MaxAppliedPerRun continues-as-new after this many records in one run,
	// bounding work replayed on a worker restart. Optional; default no limit.
	MaxAppliedPerRun int
	// MaxCarryBytes bounds the input of the next run (the Snapshot, with the
	// records that arrived and were not yet applied): records past it are
	// applied before continuing as new rather than carried, so the input
	// stays well under Temporal's 2 MB payload limit (over it, Temporal
	// terminates the run). A state alone over it stays in its run, which
	// tries again every stayRecheck (100) records. Optional, default 1 MiB.
	MaxCarryBytes int
	// MaxHeld bounds the records held at once (Ctx.Hold); a record held
	// past it is rejected. Optional, default 100.
	MaxHeld int

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
	// With Parallel every compensation has started before any fails, so
	// StopOnFailure does not apply.
	StopOnFailure bool
	// ActivityOptions apply to compensation activities. Optional; default a
	// 30 s start-to-close timeout, retried until done (backing off to a
	// minute; only a non-retryable error ends an undo).
	ActivityOptions workflow.ActivityOptions
}

// Validate checks the Entity's settings: the numbers must not be
// negative (0 takes the default). Call it when the worker starts. Run
// panics with its error, failing the workflow task until a fixed worker
// runs it, for a negative UpdateWindow or MaxCarryBytes, which break the
// run (a panic at the first update; never continuing as new); it reads
// the other settings' negative values as it always did.
func (en *Entity[S]) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{{"IdempotencyWindow", en.IdempotencyWindow}, {"UpdateWindow", en.UpdateWindow}, {"KeepApplied", en.KeepApplied},
		{"MaxHistoryEvents", en.MaxHistoryEvents}, {"MaxAppliedPerRun", en.MaxAppliedPerRun},
		{"MaxCarryBytes", en.MaxCarryBytes}, {"MaxHeld", en.MaxHeld}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("workflows: Entity.%s is %d: it must be 0 (the default) or more", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// Run applies records, updates and timeouts until the entity is done,
// continuing as new whenever history grows large. It returns the final
// Snapshot; on ContinueAsNew the error is the continue-as-new request.
func (en *Entity[S]) Run(ctx workflow.Context, carried *Snapshot[S]) (Snapshot[S], error) {
	if en.UpdateWindow < 0 || en.MaxCarryBytes < 0 {
		// A mistake in the worker's code that breaks the run: failing the
		// workflow task keeps the workflow, retried until a fixed worker
		// runs it, where failing the workflow would lose it.
		panic(en.Validate())
	}
	r, err := newRunner(ctx, en, carried)
	if err != nil {
		return r.snapshot(), err
	}
	for !r.done() {
		r.step()
		if !r.done() && r.appliedHere >= r.stayUntil && !r.cancelPending() && en.continueAsNew(ctx, r.appliedHere) {
			// Answer the updates already accepted, then hand the records
			// that arrived and were not applied to the next run, within
			// MaxCarryBytes (nextRun).
			r.closing = true
			if next, ok := r.nextRun(); ok {
				encodableTimestamps(&next)
				return next, workflow.NewContinueAsNewError(ctx, workflow.GetInfo(ctx).WorkflowType.Name, &next)
			}
			r.closing = false
			r.stayUntil = math.MaxInt // runs recorded before the state was looked at again stayed for good
			if workflow.GetVersion(ctx, recheckCarryChange, workflow.DefaultVersion, 1) >= 1 {
				r.stayUntil = r.appliedHere + stayRecheck
			}
		}
	}
	if r.cancelPending() {
		// A handler ended the saga while the request to cancel was
		// pending (its activities failed with it): the saga ended as the
		// handler chose, and the rest of the run (Finish, dead letters,
		// the memo) must not run on the cancelled context.
		r.ctx, _ = workflow.NewDisconnectedContext(r.ctx)
	} else if !r.cancelled && workflow.GetVersion(r.ctx, closeDisconnectedChange, workflow.DefaultVersion, 1) >= 1 {
		// The saga is over: a request to cancel that comes from here on
		// comes too late to change it, and must not cut Finish, the dead
		// letters or the memo short.
		r.ctx, _ = workflow.NewDisconnectedContext(r.ctx)
	}
	r.releaseHeld()
	r.drain()
	clear(r.timers) // they end with the run; nothing runs any more
	if en.Finish != nil {
		c := r.newCtx(event.Envelope{})
		if err := c.outcome(en.Finish(c)); err != nil {
			if workflow.GetVersion(r.ctx, drainOnFinishErrorChange, workflow.DefaultVersion, 1) >= 1 {
				r.drain() // records that came while Finish ran follow the policy, as when it succeeds
			}
			if len(r.lateRecords) > 0 {
				// The late records are counted as applied: failing the run
				// would lose them, so a new run takes them and the error is
				// only logged.
				workflow.GetLogger(r.ctx).Error("Finish failed; records that arrived after the final status go to a new run", "err", err.Error())
				r.finishErr = r.fitPreviousRunError(err.Error())
				return r.close(r.newRun())
			}
			if workflow.GetVersion(r.ctx, memoOnFinishErrorChange, workflow.DefaultVersion, 1) < 1 {
				return r.snapshot(), err // runs that failed Finish before the memo was written then
			}
			return r.close(err)
		}
		r.showStatus()
		r.drain() // records that came while Finish ran: rejected, not lost
	}
	if len(r.lateRecords) > 0 {
		return r.close(r.newRun())
	}
	if r.cancelled {
		return r.close(temporal.NewCanceledError(r.c.Status))
	}
	return r.close(nil)
}

// stayRecheck is how many records a run whose state was too large to carry
// applies before it looks again: held records or a bulky state that
// shrank would otherwise pin the run until Temporal's history limit
// terminates it. Each look measures the state (a JSON encoding).
const stayRecheck = 100

// recheckCarryChange is the workflow.GetVersion change ID that guards
// looking again (stayRecheck) at a state that was too large to carry.
const recheckCarryChange = "sagabridge.recheck-carry"

// closeDisconnectedChange is the workflow.GetVersion change ID that guards
// closing a saga that ended by itself on a disconnected context (older
// runs let a request to cancel that came meanwhile cancel Finish).
const closeDisconnectedChange = "sagabridge.close-disconnected"

// drainOnFinishErrorChange is the workflow.GetVersion change ID that
// guards handling the records that came while a failing Finish ran (older
// runs closed with them still in the signal channel).
const drainOnFinishErrorChange = "sagabridge.drain-on-finish-error"

// memoOnFinishErrorChange is the workflow.GetVersion change ID that guards
// writing the memo when Finish fails (older runs closed without it).
const memoOnFinishErrorChange = "sagabridge.memo-on-finish-error"

// close ends the run with err: it first records the watermarks in the memo,
// whatever the outcome, so that the bridge can tell a redelivered record
// for this closed workflow from a new one however it closed.
func (r *runner[S]) close(err error) (Snapshot[S], error) {
	final := r.snapshot()
	if merr := r.in.Close(r.ctx); merr != nil && err == nil {
		err = fmt.Errorf("record watermarks: %w", merr)
	}
	return final, err
}
