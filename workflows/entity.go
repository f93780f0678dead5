package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// Entity is the runtime of a long-lived workflow fed by the bridge: one
// workflow per key that applies every record once, in order, for as long
// as records come. It continues-as-new when Temporal suggests it (at 4,096
// history events or 4 MiB by default) or at MaxHistoryEvents, draining
// pending signals first and carrying the state, the watermarks and the
// recent idempotency keys, so no event is lost or applied twice across runs.
//
// Use it as the body of a workflow function:
//
//	var counter = workflows.Entity[Count]{Apply: func(ctx workflow.Context, s *Count, e event.Envelope) { s.N++ }}
//
//	func CounterWorkflow(ctx workflow.Context, c *workflows.Carry[Count]) (Count, error) {
//		return counter.Run(ctx, c)
//	}
type Entity[S any] struct {
	// Apply applies one new record to the state. Required. It runs in
	// workflow code: it must be deterministic and may run activities.
	Apply func(ctx workflow.Context, s *S, e event.Envelope)
	// Done reports that the entity has finished; the workflow then applies
	// the records already signalled and closes. Optional; default never.
	Done func(s *S) bool
	// Signal is the signal the bridge sends. Optional, default "events".
	Signal string
	// Query is the query that returns the Carry. Optional, default "state".
	Query string
	// IdempotencyHeader names a record header with a producer-side
	// idempotency key; records whose key was seen among the last
	// IdempotencyWindow keys are dropped. Optional.
	IdempotencyHeader string
	// IdempotencyWindow is how many keys are remembered. Optional, default 1000.
	IdempotencyWindow int
	// MaxHistoryEvents continues-as-new at this history length even before
	// Temporal suggests it. Optional; default only when suggested.
	MaxHistoryEvents int
	// MaxAppliedPerRun continues-as-new after this many records in one run,
	// bounding work replayed on a worker restart. Optional; default no limit.
	MaxAppliedPerRun int
}

// Carry is an entity's state with what the runtime needs across runs. It
// is the workflow's input (nil on the first run) and its query answer.
type Carry[S any] struct {
	State      S                `json:"state"`
	Watermarks event.Watermarks `json:"watermarks"`
	RecentKeys []string         `json:"recent_keys,omitempty"`
	Stats      EntityStats      `json:"stats"`
}

// EntityStats counts what an entity has done over all its runs.
type EntityStats struct {
	// Applied counts records applied.
	Applied int `json:"applied"`
	// Deduped counts redelivered records dropped by offset.
	Deduped int `json:"deduped"`
	// DedupedByKey counts records dropped by idempotency key.
	DedupedByKey int `json:"deduped_by_key"`
	// Runs counts this run and the ones it continued from.
	Runs int `json:"runs"`
}

// Run applies records until Done, continuing as new whenever history
// grows large. It returns the final state.
func (en Entity[S]) Run(ctx workflow.Context, carried *Carry[S]) (S, error) {
	c := Carry[S]{}
	if carried != nil {
		c = *carried
	}
	c.Stats.Runs++
	signal, query, window := en.Signal, en.Query, en.IdempotencyWindow
	if signal == "" {
		signal = event.DefaultSignal
	}
	if query == "" {
		query = "state"
	}
	if window == 0 {
		window = 1000
	}
	in := NewInbox(ctx, signal, c.Watermarks)
	if en.IdempotencyHeader != "" {
		in.WithIdempotencyKeys(en.IdempotencyHeader, window, c.RecentKeys)
	}
	base := c.Stats
	snapshot := func() Carry[S] {
		c.Watermarks, c.RecentKeys = in.Watermarks, in.RecentKeys()
		c.Stats.Deduped = base.Deduped + in.Deduped
		c.Stats.DedupedByKey = base.DedupedByKey + in.DedupedByKey
		return c
	}
	if err := workflow.SetQueryHandler(ctx, query, func() (Carry[S], error) { return snapshot(), nil }); err != nil {
		return c.State, fmt.Errorf("register %s query: %w", query, err)
	}
	apply := func(e event.Envelope) {
		en.Apply(ctx, &c.State, e)
		c.Stats.Applied++
	}
	done := func() bool { return en.Done != nil && en.Done(&c.State) }
	appliedHere := 0
	for !done() {
		apply(in.Next(ctx))
		appliedHere++
		if !done() && en.continueAsNew(ctx, appliedHere) {
			for e, ok := in.TryNext(); ok; e, ok = in.TryNext() {
				apply(e)
			}
			next := snapshot()
			return c.State, workflow.NewContinueAsNewError(ctx, workflow.GetInfo(ctx).WorkflowType.Name, &next)
		}
	}
	for e, ok := in.TryNext(); ok; e, ok = in.TryNext() {
		apply(e)
	}
	snapshot()
	if err := in.Close(ctx); err != nil {
		return c.State, fmt.Errorf("record watermarks: %w", err)
	}
	return c.State, nil
}

// continueAsNew reports whether this run is large enough to start afresh.
func (en Entity[S]) continueAsNew(ctx workflow.Context, appliedHere int) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() ||
		(en.MaxHistoryEvents > 0 && info.GetCurrentHistoryLength() >= en.MaxHistoryEvents) ||
		(en.MaxAppliedPerRun > 0 && appliedHere >= en.MaxAppliedPerRun)
}
