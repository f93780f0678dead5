// Package workflows holds the workflow-side runtime that entity and saga
// workflows fed by the bridge share:
//
//   - Inbox receives event batches from the bridge's signal, applies each
//     Kafka record exactly once (by per-partition offset watermarks) and in
//     offset order, and drains pending signals before the workflow closes.
//   - Saga keeps the compensations of completed steps and runs them in
//     reverse order when a later step fails.
//   - Close records the watermarks in the workflow memo (event.MemoKey) so
//     the bridge can recognise a redelivery to a closed workflow.
//
// Everything here runs inside workflow code and is deterministic: it uses
// only workflow.Context APIs and never reads the clock or the network.
package workflows
