package workflows

import (
	"errors"
	"fmt"
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
// which is an answer.
func RetriesExhausted(err error) bool {
	var ae *temporal.ActivityError
	if !errors.As(err, &ae) {
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
