package trip

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/workflows"
)

func bookTrip(offset int64, value string) event.Envelope {
	return event.Envelope{Topic: "trips", Offset: offset, Key: "t1", Type: BookTrip, Value: []byte(value)}
}

// tripEnv is a test environment with TripSaga, s's activities and a
// DeadLetterer registered.
func tripEnv(s *Services) (*testsuite.TestWorkflowEnvironment, *activities.DeadLetterer) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(TripSaga, workflow.RegisterOptions{Name: WorkflowType})
	env.RegisterActivity(s)
	dl := &activities.DeadLetterer{}
	env.RegisterActivity(dl)
	return env, dl
}

// run executes TripSaga with the batches signalled one after another and
// returns its state and the dead letters it asked for.
func run(t *testing.T, s *Services, batches ...[]event.Envelope) (State, []activities.DeadLetterInput) {
	t.Helper()
	env, dl := tripEnv(s)
	var dead []activities.DeadLetterInput
	env.OnActivity(dl.DeadLetter, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeadLetterInput) error {
		dead = append(dead, in)
		return nil
	})
	for i, b := range batches {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(Signal, event.Batch{Events: b}) }, time.Duration(i+1)*time.Second)
	}
	env.ExecuteWorkflow(WorkflowType)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	return st, dead
}

const offers = `{"flight":"LH1","hotel":"H7","car":"C3"}`

func TestTripBooksAllThreeOnce(t *testing.T) {
	s := NewServices()
	st, dead := run(t, s, []event.Envelope{bookTrip(0, offers), bookTrip(0, offers)})
	assert.Equal(t, StatusBooked, st.Status)
	assert.Equal(t, []string{"Bookflight", "Bookhotel", "Bookcar"}, st.CompletedSteps)
	assert.Len(t, s.World.Booked(), 3)
	assert.Empty(t, dead)
	assert.Equal(t, 1, st.Stats.Deduped, "the redelivered record is applied once")
}

func TestSoldOutCompensatesWithoutDeadLetter(t *testing.T) {
	s := NewServices()
	st, dead := run(t, s, []event.Envelope{bookTrip(0, `{"flight":"LH1","hotel":"H7","car":"SOLD-OUT"}`)})
	assert.Equal(t, StatusCompensated, st.Status)
	assert.Contains(t, st.LastError, "sold out")
	assert.False(t, st.State.DeadLettered)
	assert.Empty(t, dead, "a business answer is not a DLQ record")
	// Each cancellation is registered before its booking: the car's runs
	// too, a no-op for a booking never made.
	assert.Equal(t, []string{"Cancelcar", "Cancelhotel", "Cancelflight"}, names(st.Compensations), "newest first, even when run in parallel")
	assert.Empty(t, s.World.Booked(), "every booking was cancelled")
}

func TestServiceDownExhaustsRetriesDeadLettersAndCompensates(t *testing.T) {
	s := NewServices()
	s.World.Break("car")
	st, dead := run(t, s, []event.Envelope{bookTrip(7, offers)})
	assert.Equal(t, StatusCompensated, st.Status)
	assert.True(t, st.State.DeadLettered)
	require.Len(t, dead, 1)
	assert.Equal(t, "BookCar", dead[0].ActivityType)
	assert.Equal(t, MaxAttempts, dead[0].Attempts)
	assert.Equal(t, int64(7), dead[0].Event.Offset)
	assert.Contains(t, dead[0].Error, "car service unavailable")
	assert.Equal(t, []string{"Cancelcar", "Cancelhotel", "Cancelflight"}, names(st.Compensations))
	assert.Empty(t, s.World.Booked())
}

// A cancellation refused for good (a non-retryable answer; a retryable one
// is retried until done) is reported in the state, and the others still
// run.
func TestFailedCompensationIsReportedAndTheOthersStillRun(t *testing.T) {
	s := NewServices()
	env, _ := tripEnv(s)
	env.OnActivity(s.CancelHotelBooking, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("hotel cancellations need a phone call", "ManualCancel", nil))
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{bookTrip(0, `{"flight":"LH1","hotel":"H7","car":"SOLD-OUT"}`)}})
	}, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, StatusCompensated, st.Status)
	require.Len(t, st.Compensations, 3)
	assert.Equal(t, "Cancelhotel", st.Compensations[1].Name)
	assert.Contains(t, st.Compensations[1].Error, "hotel cancellations need a phone call")
	assert.Empty(t, st.Compensations[0].Error, "Cancelcar")
	assert.Empty(t, st.Compensations[2].Error, "Cancelflight")
	booked := s.World.Booked()
	assert.Len(t, booked, 1, "only the hotel, whose cancellation failed, is still held")
}

func names(rs []workflows.CompensationResult) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}
