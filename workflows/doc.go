// Package workflows holds the workflow-side runtime that entity and saga
// workflows fed by the bridge share:
//
//   - Entity is the runtime: users register typed handlers per event type
//     (On), step timeouts (OnTimeout) and Temporal Updates with a validator
//     (OnUpdate); Entity.Run owns the signal loop, exact dedupe by
//     (topic, partition, offset) and idempotency key, ordered application,
//     compensations kept as data (Ctx.Completed, UndoActivity, and
//     return Ctx.Fail, which is final for the handler call), records held
//     until their precondition holds (return Ctx.Hold), ContinueAsNew with
//     everything carried, the versioned state query (Snapshot: the query's
//     answer, the workflow's result and a continued run's input;
//     ContractVersion) and an optional saga-status search attribute.
//   - Inbox is the lower-level piece Entity uses: it receives event batches
//     from the bridge's signal, admits each record once (by per-partition
//     offset watermarks) and in offset order, and records the watermarks in
//     the memo at close (event.MemoKey) so the bridge can recognise a
//     redelivery to a closed workflow.
//   - Saga keeps compensation closures for workflows that do not use Entity.
//   - DeadLetter sends the record behind a saga step whose activity ran out
//     of retries to the DLQ (with workflow ID, run ID and activity type),
//     through the activities.DeadLetterer activity; RetriesExhausted tells
//     such a failure from a business answer.
//
// # Failing a saga
//
// A handler that finds a step failed returns c.Fail(status, err): the
// pending compensations run, newest first, and the status is set. Fail is
// final: any later step, status change or timeout on that Ctx is refused
// and reported in the state's rejected list, naming the call.
//
// A step that failed other than by the service's refusal (Refused) may
// have gone through with its answer lost: register its undo before failing
// (Ctx.Compensate). Run a step whose undo is registered on
// Ctx.UndoableStep, so that a request to cancel the workflow waits for the
// attempt in flight before the undo runs, and one that cannot be undone
// (a shipment) on Ctx.IrrevocableStep; after a step, return nil when
// Ctx.CancelRequested, and the runtime compensates the saga as cancelled.
//
// # Records that come before their precondition
//
// Kafka orders records per partition only, so a PaymentMethodAdded can
// reach an entity before the SignupRequested it needs. Its handler holds it
// instead of rejecting it:
//
//	if c.State.Account == "" {
//		return c.Hold("waiting for SignupRequested")
//	}
//
// The runtime hands a held record to its handler again, in arrival order,
// after every record, update or timeout handled, until the handler applies
// it; held records are bounded (Entity.MaxHeld), listed in the state query
// (Snapshot.Held), carried across ContinueAsNew, and rejected when the saga
// ends. See docs/STATE.md.
//
// Everything here runs inside workflow code and is deterministic: it uses
// only workflow.Context APIs and never reads the clock or the network.
//
// # Changing a saga that has runs under way
//
// Temporal replays a workflow's history against the current code whenever a
// worker picks it up without a cached copy, so the code must make the same
// decisions, in the same order, for every history already recorded. Adding,
// removing or reordering an activity, a timer or a child workflow breaks
// runs that started before the change. Guard such a change with
// workflow.GetVersion, for example when a fraud check goes before the charge:
//
//	v := workflow.GetVersion(ctx, "fraud-check", workflow.DefaultVersion, 1)
//	if v >= 1 {
//		if err := workflow.ExecuteActivity(ctx, a.CheckFraud, in).Get(ctx, nil); err != nil {
//			...
//		}
//	}
//	// the charge, as before
//
// Runs that started before the change replay with DefaultVersion and skip the
// check; new runs record version 1. Remove the old branch only once no run
// that took it is still open (or retained for queries).
//
// The state's JSON size is part of what a run decides on: when it continues
// as new, the records that do not fit in Entity.MaxCarryBytes beside the
// state are applied first, each a decision. A change to the state type that
// makes its JSON larger or smaller (a field added or removed) can therefore
// make a run that was near that limit decide differently on replay. It
// takes a state within a record's size of MaxCarryBytes (1 MiB by
// default), so it is rare. Add fields with `json:",omitempty"`, so a
// recorded state that does not set them keeps its size, and set them first
// behind workflow.GetVersion like any other change.
//
// The examples keep histories recorded on a real server in their testdata/
// and replay them in a unit test (worker.WorkflowReplayer), so a change that
// breaks running sagas fails the build; see e2e/histories_test.go for how to
// record them.
//
// Workflow code must stay deterministic: this package must not import the
// bridge engine, the configuration, or anything that does I/O at import,
// nor the Kafka client (it uses activities/contract, not activities; a
// test checks that sarama is not among its dependencies).
package workflows
