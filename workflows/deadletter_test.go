package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// exhaustedAfter runs the activity name under a retry policy of three
// attempts and says what RetriesExhausted makes of its failure.
func exhaustedAfter(ctx workflow.Context, name string) (bool, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaximumAttempts: 3}})
	err := workflow.ExecuteActivity(ctx, name).Get(ctx, nil)
	return RetriesExhausted(err), nil
}

// A step that ran out of attempts because the worker cannot run it (the
// activity not registered on the worker that took it, in a rolling deploy;
// no producer; Kafka refusing the worker's own access) is the worker's
// fault, not the record's: it is not retries exhausted, which dead-letters
// the record. (All three were: a worker without BookCar dead-lettered
// trips and cancelled their bookings.) A plain failure still is.
func TestTheWorkersOwnFaultsAreNotRetriesExhausted(t *testing.T) {
	failing := map[string]func(context.Context) error{
		"NoProducerHere": func(context.Context) error { return temporal.NewApplicationError("producer is nil", "NoProducer") },
		"DeniedHere": func(context.Context) error {
			return temporal.NewApplicationError("not authorized to write to topic", "KafkaAccessDenied")
		},
		"FlakyHere": func(context.Context) error {
			return temporal.NewApplicationError("car service unavailable", "Unavailable")
		},
	}
	for name, want := range map[string]bool{"NotRegisteredAnywhere": false, "NoProducerHere": false, "DeniedHere": false, "FlakyHere": true} {
		t.Run(name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.RegisterWorkflow(exhaustedAfter)
			for n, fn := range failing {
				env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: n})
			}
			env.ExecuteWorkflow(exhaustedAfter, name)
			require.NoError(t, env.GetWorkflowError())
			var exhausted bool
			require.NoError(t, env.GetWorkflowResult(&exhausted))
			assert.Equal(t, want, exhausted)
		})
	}
}
