package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities/contract"
	"github.com/sagabridge/sagabridge/event"
)

// RetriesExhausted reports whether err is an activity failure that ran out
// of its retry policy (attempts or time): a technical failure worth a DLQ
// record, unlike a non-retryable business error such as a declined card,
// which is an answer. A failure of the worker itself (WorkerFault) is not
// the record's, and is never a reason to dead-letter it.
func RetriesExhausted(err error) bool {
	var ae *temporal.ActivityError
	if !errors.As(err, &ae) || WorkerFault(err) {
		return false
	}
	switch ae.RetryState() {
	case enumspb.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED, enumspb.RETRY_STATE_TIMEOUT:
		return true
	case enumspb.RETRY_STATE_NON_RETRYABLE_FAILURE, enumspb.RETRY_STATE_CANCEL_REQUESTED:
		return false
	}
	// The server always sets the retry state; the SDK's test environment
	// leaves it unspecified, so judge by the cause there.
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.NonRetryable() {
		return false
	}
	var canceled *temporal.CanceledError
	return !errors.As(err, &canceled)
}

// workerFaults are the application error types of an activity's failure
// that say the worker cannot run it, whatever the record: the activity is
// not registered on the worker that took its task (the SDK's type; a
// rolling deploy), the worker has no Kafka producer (activities'
// NoProducer), or Kafka refuses the worker's own access (activities'
// KafkaAccessDenied: authentication or authorization).
var workerFaults = []string{"ActivityNotRegisteredError", "NoProducer", "KafkaAccessDenied"}

// WorkerFault reports whether err is an activity failure of the worker
// itself (workerFaults) rather than of the record: it goes away when the
// worker is fixed, so a saga step should wait and try again rather than
// give the record up.
func WorkerFault(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && slices.Contains(workerFaults, app.Type())
}

// DeadLetter writes e, the record whose handling failed, to its DLQ topic
// with the workflow ID, run ID, the failed activity's type, attempts and
// error, through the activities.DeadLetterer registered on the worker. A
// saga step opts in by calling it when its activity fails for good, before
// compensating:
//
//	if err := workflow.ExecuteActivity(ctx, a.BookCar, in).Get(ctx, nil); err != nil {
//		if workflows.RetriesExhausted(err) {
//			_ = workflows.DeadLetter(ctx, e, err, maxAttempts)
//		}
//		... compensate
//	}
//
// The DeadLetter activity retries until Kafka takes the record (every
// attempt writes the same sagabridge.event.id header).
func DeadLetter(ctx workflow.Context, e event.Envelope, failed error, attempts int) error {
	in := contract.DeadLetterInput{Event: e, Attempts: attempts, Error: failed.Error()}
	var ae *temporal.ActivityError
	if errors.As(failed, &ae) {
		in.ActivityType = ae.ActivityType().GetName()
		if cause := errors.Unwrap(ae); cause != nil {
			in.Error = cause.Error()
		}
	}
	if err := deadLetter(ctx, in); err != nil {
		return fmt.Errorf("dead-letter %s after %s failed: %w", e.Position(), in.ActivityType, err)
	}
	return nil
}

// deadLetter runs the DeadLetter activity for in until Kafka takes the
// record, or until it fails with one of the failure types finalTypes.
func deadLetter(ctx workflow.Context, in contract.DeadLetterInput, finalTypes ...string) error {
	if unencodable(&in.Event) && workflow.GetVersion(ctx, encodableTimestampsChange, workflow.DefaultVersion, 1) >= 1 {
		encodable(&in.Event) // or the activity's input could not be encoded
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute, NonRetryableErrorTypes: finalTypes},
	})
	return workflow.ExecuteActivity(ctx, contract.DeadLetterActivity, in).Get(ctx, nil)
}
