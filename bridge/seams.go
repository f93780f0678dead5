package bridge

import (
	"context"
	"time"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// The bridge talks to the outside world only through these seams, so its
// logic can be tested with fakes:
//
//   - Temporal: production code uses temporalsdk.Client;
//   - DeadLetters: production code uses dlq.ProducerWriter;
//   - Kafka: a sarama.ConsumerGroup (an interface) that Run builds from the
//     configuration, or that tests hand to runGroup; only its Consume,
//     Pause, Resume, Errors and Close are used.
//
// Whoever creates a seam's implementation closes it; the bridge never does.

// Temporal is the bridge's view of Temporal. Implementations are safe for
// concurrent use.
type Temporal interface {
	// SignalWithStart delivers batch to the workflow target names, starting
	// it first if no run is open. It returns nil only once Temporal has
	// durably accepted the signal. An error wrapping ErrWorkflowClosed
	// means the workflow ID is closed and may not be reused; every other
	// error is classified by the bridge (deliver.go).
	SignalWithStart(ctx context.Context, target Target, batch event.Batch) error
	// ClosedWatermarks returns the watermarks a closed workflow recorded in
	// its memo under event.MemoKey; nil when it recorded none (it was
	// terminated, or is not an entity workflow), non-nil (perhaps empty)
	// when it did.
	ClosedWatermarks(ctx context.Context, workflowID string) (event.Watermarks, error)
	// TaskQueueBacklog reports the workflow-task backlog of a task queue.
	TaskQueueBacklog(ctx context.Context, taskQueue string) (Backlog, error)
	// AppliedWatermarks asks an open workflow which records it has applied
	// (query event.AppliedQuery). A workflow that does not answer it
	// fails with a *serviceerror.QueryFailed whose own message names the
	// query (the SDK's "unknown queryType"), and one whose handler fails,
	// with one that does not; one that
	// does not exist, with *serviceerror.NotFound; one that has closed,
	// with an error wrapping ErrWorkflowClosed.
	AppliedWatermarks(ctx context.Context, workflowID string) (event.Watermarks, error)
	// CheckAccess reports whether the bridge may use its namespace: nil,
	// or the error Temporal answers (NamespaceNotFound, PermissionDenied,
	// Unauthenticated, Unavailable, ...).
	CheckAccess(ctx context.Context) error
}

// Backlog is a task queue's approximate workflow-task backlog.
type Backlog struct {
	// Tasks is how many workflow tasks wait for a worker.
	Tasks int64
	// Age is how long the oldest of them has waited.
	Age time.Duration
}

// DeadLetters is where records that cannot be delivered go; see dlq.Writer.
type DeadLetters = dlq.Writer

// Target is the workflow a record is delivered to.
type Target struct {
	WorkflowType string
	WorkflowID   string
	TaskQueue    string
	Signal       string
	// NewRun allows a new run when the workflow ID has closed (the
	// on_closed_workflow "new_run" policy); otherwise a closed ID is rejected.
	NewRun bool
	// StartWatermarks, with NewRun, are the closed run's watermarks: the
	// new run is started with them as its input (event.StartInput) so it
	// skips what the closed run applied.
	StartWatermarks event.Watermarks
	// Start are the route's options for a workflow the call starts.
	Start StartOptions
}

// StartOptions are a route's settings for the workflows its calls start
// (routes[].run_timeout, execution_timeout, memo and search_attributes).
// They apply only when a call starts the workflow, never to one already
// running. The maps are shared by every call of the route: read them,
// never change them.
type StartOptions struct {
	// RunTimeout and ExecutionTimeout are the workflow's timeouts; zero
	// sets none.
	RunTimeout       time.Duration
	ExecutionTimeout time.Duration
	// Memo is set as the workflow's memo; nil sets none.
	Memo map[string]any
	// SearchAttributes are set on the workflow, by name; nil sets none.
	SearchAttributes map[string]SearchAttribute
}

// SearchAttribute is a typed search attribute value.
type SearchAttribute struct {
	// Type is one of the config.SearchAttribute* types ("keyword", "int", ...).
	Type string
	// Value is a string (keyword, text), int64, float64, bool, time.Time
	// (datetime) or []string (keyword_list).
	Value any
}
