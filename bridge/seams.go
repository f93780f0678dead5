package bridge

import (
	"context"
	"time"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// The bridge talks to the outside world only through these interfaces, so
// its logic can be tested with fakes; production code uses TemporalClient,
// dlq.ProducerWriter and a sarama consumer group.

// Temporal is the bridge's view of Temporal. Implementations are safe for
// concurrent use; the bridge never closes them.
type Temporal interface {
	// SignalWithStart delivers batch to the workflow target names, starting
	// it first if no run is open. It returns nil only once Temporal has
	// durably accepted the signal. An error that Classify calls
	// ErrWorkflowClosed means the workflow ID is closed and may not be
	// reused.
	SignalWithStart(ctx context.Context, target Target, batch event.Batch) error
	// ClosedWatermarks returns the watermarks a closed workflow recorded in
	// its memo under event.MemoKey; nil when it recorded none.
	ClosedWatermarks(ctx context.Context, workflowID string) (event.Watermarks, error)
	// TaskQueueBacklog reports the workflow-task backlog of a task queue.
	TaskQueueBacklog(ctx context.Context, taskQueue string) (Backlog, error)
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
