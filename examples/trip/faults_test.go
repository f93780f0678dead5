package trip

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/event"
)

// runWith is run with setup applied to the environment before the trip is
// booked.
func runWith(t *testing.T, s *Services, setup func(*testsuite.TestWorkflowEnvironment), e event.Envelope) State {
	t.Helper()
	env, dl := tripEnv(s)
	env.OnActivity(dl.DeadLetter, mock.Anything, mock.Anything).Return(nil)
	setup(env)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{e}}) }, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	return st
}

// A booking whose answer was lost (the car booked, the activity timed out)
// and whose retries then fail is still cancelled: its cancellation is
// registered before the booking, and cancels whatever the trip booked with
// that offer. It was registered after the booking succeeded, so the
// compensated trip kept its car.
func TestABookingWhoseAnswerWasLostIsCancelled(t *testing.T) {
	s := NewServices()
	st := runWith(t, s, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(s.BookCar, mock.Anything, mock.Anything).Return(func(ctx context.Context, b Booking) (string, error) {
			if _, err := s.World.book("car", b); err != nil { // booked, then the answer is lost
				return "", err
			}
			return "", context.DeadlineExceeded
		})
	}, bookTrip(0, offers))
	assert.Equal(t, StatusCompensated, st.Status)
	assert.Empty(t, s.World.Booked(), "a booking the trip made is still held")
}

// A cancellation is retried until it is done: a hotel service down for a
// while (four failed cancellations) left the hotel booked after three
// attempts, though the trip said "compensated".
func TestACancellationIsRetriedUntilDone(t *testing.T) {
	s := NewServices()
	failures := 0
	st := runWith(t, s, func(env *testsuite.TestWorkflowEnvironment) {
		cancelHotel := func(ctx context.Context, b Booking) error {
			if failures < 4 {
				failures++
				return assert.AnError
			}
			return s.CancelHotelBooking(ctx, b)
		}
		env.OnActivity(s.CancelHotelBooking, mock.Anything, mock.Anything).Return(cancelHotel)
	}, bookTrip(0, `{"flight":"LH1","hotel":"H7","car":"SOLD-OUT"}`))
	assert.Equal(t, StatusCompensated, st.Status)
	assert.Equal(t, 4, failures)
	assert.Empty(t, s.World.Booked(), "the hotel is still held")
	for _, c := range st.Compensations {
		assert.Empty(t, c.Error, "compensation %s", c.Name)
	}
}

// A trip cancelled (temporal workflow cancel) while a booking runs ends
// cancelled: the workflow reports itself cancelled and what was booked is
// cancelled, the booking in flight included. (The booking's cancellation
// counted as its failure: the trip ended compensated and its workflow
// completed, and the hotel's cancellation did not wait for the booking to
// land.) That the cancellation waits is checked on a real server for the
// order saga, which uses the same Ctx.UndoableStep; the SDK's test
// environment gives up on a cancelled activity at once.
func TestATripCancelledWhileBookingEndsCancelled(t *testing.T) {
	s := NewServices()
	env, _ := tripEnv(s)
	env.OnActivity(s.BookHotel, mock.Anything, mock.Anything).Return(func(_ context.Context, b Booking) (string, error) {
		env.CancelWorkflow()
		return s.World.book("hotel", b)
	})
	st := bookCancelledTrip(t, env)
	assert.Equal(t, StatusCancelled, st.Status)
	assert.ElementsMatch(t, []string{"Cancelflight", "Cancelhotel"}, names(st.Compensations))
	assert.NotContains(t, st.State.Bookings, "car", "a cancelled trip booked on")
	assert.Empty(t, s.World.Booked(), "a booking is held on a cancelled trip")
}

// The car service is down, its retries run out, and the trip is cancelled
// (temporal workflow cancel) while its record goes to the DLQ (Kafka
// slow). The DLQ write was cancelled with the handler and the trip failed
// compensated, its record in the DLQ or not; the write now finishes, and
// the trip ends cancelled.
func TestATripCancelledWhileItsRecordIsDeadLetteredEndsCancelled(t *testing.T) {
	s := NewServices()
	s.World.Break("car")
	env, dl := tripEnv(s)
	writes := 0
	env.OnActivity(dl.DeadLetter, mock.Anything, mock.Anything).Return(func(context.Context, activities.DeadLetterInput) error {
		if writes++; writes == 1 {
			env.CancelWorkflow()
			return errors.New("kafka: leader not available") // retried
		}
		return nil
	})
	st := bookCancelledTrip(t, env)
	assert.Equal(t, StatusCancelled, st.Status)
	assert.True(t, st.State.DeadLettered, "the record reached the DLQ: %s", st.LastError)
	assert.Equal(t, 2, writes)
	assert.Empty(t, s.World.Booked(), "a booking is held on a cancelled trip")
}

// The same cancel with Kafka down for good: the write goes on for
// CancelGrace, then it is cancelled and the trip ends cancelled, its
// bookings released (review: the write retried for ever, the trip's
// bookings held).
func TestATripCancelledWhileKafkaIsDownEndsCancelledAfterTheGrace(t *testing.T) {
	s := NewServices()
	s.World.Break("car")
	env, dl := tripEnv(s)
	writes := 0
	var cancelledAt, lastWrite time.Time
	env.OnActivity(dl.DeadLetter, mock.Anything, mock.Anything).Return(func(context.Context, activities.DeadLetterInput) error {
		lastWrite = env.Now()
		if writes++; writes == 1 {
			cancelledAt = env.Now()
			env.CancelWorkflow()
		}
		return errors.New("kafka: leader not available")
	})
	st := bookCancelledTrip(t, env)
	assert.Equal(t, StatusCancelled, st.Status)
	assert.False(t, st.State.DeadLettered)
	assert.Greater(t, writes, 1, "the write went on after the cancel")
	assert.LessOrEqual(t, lastWrite.Sub(cancelledAt), CancelGrace, "the write went on past the grace (%d tries)", writes)
	assert.Empty(t, s.World.Booked(), "a booking is held on a cancelled trip")
}

// bookCancelledTrip books a trip in env, whose mocks cancel it, and
// returns its state once it ended, checking that it reports itself
// cancelled.
func bookCancelledTrip(t *testing.T, env *testsuite.TestWorkflowEnvironment) State {
	t.Helper()
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{bookTrip(0, offers)}})
	}, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.True(t, env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	require.ErrorAs(t, env.GetWorkflowError(), &canceled, "the trip's workflow reports itself cancelled")
	v, err := env.QueryWorkflow(QueryState)
	require.NoError(t, err)
	var st State
	require.NoError(t, v.Get(&st))
	return st
}

// A worker that cannot run a booking (not registered on the worker that
// took it, in a rolling deploy; Kafka refusing the worker's access) is not
// the trip's failure: the trip waits and books again once a worker can,
// and nothing goes to the DLQ. It dead-lettered the record and cancelled
// the flight and the hotel.
func TestATripWaitsOutAWorkerThatCannotBook(t *testing.T) {
	s := NewServices()
	failures := 0
	var dead []activities.DeadLetterInput
	env, dl := tripEnv(s)
	env.OnActivity(dl.DeadLetter, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeadLetterInput) error {
		dead = append(dead, in)
		return nil
	})
	env.OnActivity(s.BookCar, mock.Anything, mock.Anything).Return(func(ctx context.Context, b Booking) (string, error) {
		if failures < 2*MaxAttempts { // two steps' worth of attempts
			failures++
			return "", temporal.NewApplicationError("unable to find activityType=BookCar", "ActivityNotRegisteredError")
		}
		return s.BookCar(ctx, b)
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{bookTrip(0, offers)}}) }, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, StatusBooked, st.Status, "last error: %s", st.LastError)
	assert.Empty(t, dead, "the record was dead-lettered")
	assert.Len(t, s.World.Booked(), 3)
}
