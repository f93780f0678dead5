// Package ledger is a minimal entity workflow for the end-to-end tests and
// the benchmark: it records every record it applied and closes after the
// last one its producer announced. Its values are JSON {"seq":i,"total":n}.
//
// It is test and benchmark support: no library package may import it.
package ledger

import (
	"context"
	"encoding/json"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/workflows"
)

// WorkflowType is the registered name.
const WorkflowType = "Ledger"

// Value is a ledger record's payload.
type Value struct {
	Seq   int `json:"seq"`
	Total int `json:"total"`
	// Pad makes records larger for memory benchmarks; ledgers ignore it.
	Pad string `json:"pad,omitempty"`
}

// State is what a ledger has applied.
type State struct {
	// Count is how many records were applied.
	Count int `json:"count"`
	// Total is how many records the producer announced for this key.
	Total int `json:"total"`
	// Offsets lists applied offsets in order (a key lives on one partition).
	Offsets []int64 `json:"offsets"`
	// LatencyMillis lists, per record, workflow time at apply minus the
	// record's Kafka timestamp.
	LatencyMillis []int64 `json:"latency_ms"`
	// Runs is how many runs the ledger took (ContinueAsNew).
	Runs int `json:"runs"`
}

// Options tune the runtime; zero values keep its defaults.
type Options struct {
	MaxHistoryEvents int
	MaxAppliedPerRun int
	// ApplyDelay makes applying each record take this long, as a handler
	// that calls a slow service would (a local activity that sleeps).
	ApplyDelay time.Duration
}

// Workflow returns the ledger workflow function for opts.
func Workflow(opts Options) func(ctx workflow.Context, c *workflows.Snapshot[State]) (State, error) {
	en := &workflows.Entity[State]{
		Apply: func(ctx workflow.Context, s *State, e event.Envelope) {
			if opts.ApplyDelay > 0 {
				lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: time.Minute})
				_ = workflow.ExecuteLocalActivity(lctx, slowService, opts.ApplyDelay).Get(lctx, nil)
			}
			var v Value
			_ = json.Unmarshal(e.Value, &v) // the tests produce only valid values
			s.Count++
			s.Total = max(s.Total, v.Total)
			s.Offsets = append(s.Offsets, e.Offset)
			if !e.Timestamp.IsZero() {
				s.LatencyMillis = append(s.LatencyMillis, workflow.Now(ctx).Sub(e.Timestamp).Milliseconds())
			}
		},
		Done:             func(s *State) bool { return s.Total > 0 && s.Count >= s.Total },
		MaxHistoryEvents: opts.MaxHistoryEvents,
		MaxAppliedPerRun: opts.MaxAppliedPerRun,
	}
	return func(ctx workflow.Context, c *workflows.Snapshot[State]) (State, error) {
		runs := 1
		if c != nil {
			runs = c.Stats.Runs + 1
		}
		out, err := en.Run(ctx, c)
		st := out.State
		st.Runs = runs
		return st, err
	}
}

// Register registers the ledger workflow as WorkflowType.
func Register(w interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}, opts Options) {
	w.RegisterWorkflowWithOptions(Workflow(opts), workflow.RegisterOptions{Name: WorkflowType})
}

// slowService stands for a call that takes d.
func slowService(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
