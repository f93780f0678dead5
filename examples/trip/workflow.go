// Package trip is the second saga example: one BookTrip event books a
// flight, a hotel and a car; when a booking fails, the bookings made so far
// are cancelled in parallel. A booking whose service stays down past its
// retry policy also sends the BookTrip record to the DLQ (with the workflow
// ID, run ID and failed activity), so an operator can redrive it once the
// service is back: see README.md beside this file.
//
// Like every example, its non-test code uses only the public packages and
// must not import internal/ packages, so it can be copied into a module of
// your own.
package trip

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/workflows"
)

// Names the bridge configuration, the worker and clients share.
const (
	// WorkflowType is the registered name of TripSaga.
	WorkflowType = "TripSaga"
	// Signal carries event batches from the bridge.
	Signal = event.DefaultSignal
	// QueryState answers the State JSON.
	QueryState = "state"
	// TypeHeader is the record header holding the event type.
	TypeHeader = "event-type"
	// BookTrip is the one event type.
	BookTrip = "BookTrip"
	// StatusSearchAttribute is the Keyword search attribute that holds each
	// trip's status (the order saga's too), for listing trips by status.
	StatusSearchAttribute = "SagaStatus"
	// MaxAttempts is each booking's retry policy; a booking that fails this
	// often is dead-lettered.
	MaxAttempts = 3
	// CancelGrace is how long a trip cancelled while its record goes to the
	// DLQ lets the write go on before it cancels it: Kafka down for good
	// must not hold a cancelled trip's bookings.
	CancelGrace = time.Minute
	// WorkerFaultWait is how long a booking the worker could not run
	// (workflows.WorkerFault) waits before it is tried again.
	WorkerFaultWait = time.Minute
)

// Status is where a trip stands.
type Status = string

// Trip statuses; Booked, Compensated and Cancelled (the workflow was
// cancelled: everything booked is cancelled) are final.
const (
	StatusNew         Status = workflows.StatusNew
	StatusBooked      Status = "booked"
	StatusCompensated Status = "compensated"
	StatusCancelled   Status = workflows.StatusCancelled
)

// BookTripEvent is the value of a BookTrip record: the offers to book.
type BookTripEvent struct {
	Flight string `json:"flight"`
	Hotel  string `json:"hotel"`
	Car    string `json:"car"`
}

// Trip is the trip's own data in the state query (under "state").
type Trip struct {
	// Bookings maps each booked service to its reference.
	Bookings map[string]string `json:"bookings"`
	// DeadLettered is true when the failed booking's record went to the DLQ.
	DeadLettered bool `json:"dead_lettered"`
}

// State is the answer to the "state" query and the workflow's result: the
// runtime's versioned contract around the Trip.
type State = workflows.Snapshot[Trip]

// TripSaga is the trip workflow: the bridge starts it with no arguments and
// signals it events. It returns its final State.
func TripSaga(ctx workflow.Context, carried *State) (State, error) {
	retry := &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumAttempts: MaxAttempts}
	opts := workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: retry}
	// A cancellation is retried until it is done (only a non-retryable
	// answer ends it): giving up leaves a booking held on a trip that says
	// compensated.
	untilDone := &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumInterval: time.Minute}
	en := &workflows.Entity[Trip]{
		Init:            func(string) Trip { return Trip{Bookings: map[string]string{}} },
		Final:           []Status{StatusBooked, StatusCompensated, StatusCancelled},
		Signal:          Signal,
		Query:           QueryState,
		ActivityOptions: opts,
		// The bookings are independent: cancel them all at once.
		Compensation: workflows.CompensationOptions{Parallel: true,
			ActivityOptions: workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: untilDone}},
		StatusSearchAttribute: StatusSearchAttribute,
		KeepApplied:           100,
	}
	workflows.On(en, BookTrip, book)
	return en.Run(ctx, carried)
}

// book runs the three bookings, each registering its cancellation before
// it runs; on a failure it dead-letters the record when the step ran out of
// retries, then cancels what was booked, in parallel.
//
// A booking whose answer was lost (booked, then timed out) may have
// booked, so its cancellation, which cancels by trip and offer and is a
// no-op for a booking never made, is registered first. Trips booked before
// this change registered a cancellation by reference after each booking;
// GetVersion keeps their histories replaying.
func book(c *workflows.Ctx[Trip], b BookTripEvent) error {
	var s *Services
	steps := []struct {
		service, offer              string
		book, cancel, cancelBooking any
	}{
		{"flight", b.Flight, s.BookFlight, s.CancelFlight, s.CancelFlightBooking},
		{"hotel", b.Hotel, s.BookHotel, s.CancelHotel, s.CancelHotelBooking},
		{"car", b.Car, s.BookCar, s.CancelCar, s.CancelCarBooking},
	}
	before := workflow.GetVersion(c, "trip.cancel-before-book", workflow.DefaultVersion, 1) >= 1
	for _, step := range steps {
		booking := Booking{TripID: c.Key(), Offer: step.offer}
		if before {
			c.Compensate(workflows.UndoActivity("Cancel"+step.service, step.cancelBooking, booking))
		}
		var ref string
		// A request to cancel the trip that comes while a booking runs
		// waits for it to land, then the runtime cancels what was booked
		// and the trip ends cancelled (Ctx.UndoableStep). Trips recorded
		// before cancel by reference after the booking: their request is
		// handled as the booking's failure, as it was (the step does not
		// wait, or a last booking landed would end the trip booked).
		stepCtx := workflow.Context(c)
		if before {
			stepCtx = c.UndoableStep()
		}
		err := workflow.ExecuteActivity(stepCtx, step.book, booking).Get(c, &ref)
		// A worker that cannot run the booking (workflows.WorkerFault: not
		// registered where it ran, Kafka refusing the worker's access) is
		// no answer about the trip: wait, and book again. Trips recorded
		// before compensated.
		for err != nil && workflows.WorkerFault(err) && !c.CancelRequested() &&
			workflow.GetVersion(c, "trip.wait-out-worker-faults", workflow.DefaultVersion, 1) >= 1 {
			workflow.GetLogger(c).Warn("the worker cannot book; booking again after a wait", "service", step.service, "wait", WorkerFaultWait, "err", err)
			if workflow.Sleep(c, WorkerFaultWait) != nil {
				break // the trip is cancelled
			}
			err = workflow.ExecuteActivity(stepCtx, step.book, booking).Get(c, &ref)
		}
		if before && c.CancelRequested() {
			return nil
		}
		if err != nil {
			failure := fmt.Errorf("book %s: %w", step.service, err)
			if workflows.RetriesExhausted(err) {
				// A cancel that comes while the record goes to the DLQ
				// lets the write finish (the operator may redrive it),
				// then ends the trip cancelled. Trips recorded before
				// cancelled the write with the handler.
				throughCancel := before && workflow.GetVersion(c, "trip.dead-letter-through-cancel", workflow.DefaultVersion, 1) >= 1
				deadLetter := workflows.DeadLetter
				if throughCancel {
					deadLetter = deadLetterThroughCancel
				}
				if dlErr := deadLetter(c, c.Event, err, MaxAttempts); dlErr != nil {
					failure = fmt.Errorf("%w; %w", failure, dlErr)
				} else {
					c.State.DeadLettered = true
				}
				if throughCancel && c.CancelRequested() {
					return nil
				}
			}
			return c.Fail(StatusCompensated, errors.New(failure.Error())) // the whole text, not only the activity's cause
		}
		c.State.Bookings[step.service] = ref
		if before {
			c.Completed("Book" + step.service)
		} else {
			c.Completed("Book"+step.service, workflows.UndoActivity("Cancel"+step.service, step.cancel, ref))
		}
	}
	c.SetStatus(StatusBooked)
	return nil
}

// deadLetterThroughCancel is workflows.DeadLetter on a context a cancel of
// the trip does not reach; a cancel that comes meanwhile lets the write go
// on for CancelGrace more, then cancels it.
func deadLetterThroughCancel(ctx workflow.Context, e event.Envelope, failed error, attempts int) error {
	dlCtx, cancelWrite := workflow.NewDisconnectedContext(ctx)
	var dlErr error
	done := false
	workflow.Go(dlCtx, func(ctx workflow.Context) {
		dlErr = workflows.DeadLetter(ctx, e, failed, attempts)
		done = true
	})
	isDone := func() bool { return done }
	if workflow.Await(ctx, isDone) != nil { // the trip was cancelled
		if ok, _ := workflow.AwaitWithTimeout(dlCtx, CancelGrace, isDone); !ok {
			cancelWrite()
			waitCtx, _ := workflow.NewDisconnectedContext(ctx)
			_ = workflow.Await(waitCtx, isDone)
		}
	}
	return dlErr
}

// RegisterWith registers TripSaga, the services' activities and the
// dead-letter activity with w.
func RegisterWith(w worker.Registry, s *Services, dl *activities.DeadLetterer) {
	w.RegisterWorkflowWithOptions(TripSaga, workflow.RegisterOptions{Name: WorkflowType})
	w.RegisterActivity(s)
	w.RegisterActivity(dl)
}
