// Package workflows holds the workflow-side runtime that entity and saga
// workflows fed by the bridge share:
//
//   - Entity is the runtime: users register typed handlers per event type
//     (On), step timeouts (OnTimeout) and Temporal Updates with a validator
//     (OnUpdate); Entity.Run owns the signal loop, exact dedupe by
//     (topic, partition, offset) and idempotency key, ordered application,
//     compensations kept as data (Ctx.Completed, Ctx.Fail, UndoActivity),
//     ContinueAsNew with everything carried, the versioned state query
//     (Carry, ContractVersion) and an optional saga-status search attribute.
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
// The examples keep histories recorded on a real server in their testdata/
// and replay them in a unit test (worker.WorkflowReplayer), so a change that
// breaks running sagas fails the build; see e2e/histories_test.go for how to
// record them.
//
// Workflow code must stay deterministic: this package must not import the
// bridge engine, the configuration, or anything that does I/O at import.
package workflows
