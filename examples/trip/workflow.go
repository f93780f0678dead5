// Package trip is the second saga example: one BookTrip event books a
// flight, a hotel and a car; when a booking fails, the bookings made so far
// are cancelled in parallel. A booking whose service stays down past its
// retry policy also sends the BookTrip record to the DLQ (with the workflow
// ID, run ID and failed activity), so an operator can redrive it once the
// service is back: see README.md beside this file.
package trip

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
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
	// MaxAttempts is each booking's retry policy; a booking that fails this
	// often is dead-lettered.
	MaxAttempts = 3
)

// StateVersion is the version of the State JSON shape.
const StateVersion = 1

// Status is where a trip stands.
type Status string

// Trip statuses; Booked and Compensated are final.
const (
	StatusNew         Status = "new"
	StatusBooked      Status = "booked"
	StatusCompensated Status = "compensated"
)

// BookTripEvent is the value of a BookTrip record: the offers to book.
type BookTripEvent struct {
	Flight string `json:"flight"`
	Hotel  string `json:"hotel"`
	Car    string `json:"car"`
}

// State is the answer to the "state" query and the workflow's result.
type State struct {
	Version int    `json:"version"`
	TripID  string `json:"trip_id"`
	Status  Status `json:"status"`
	// Bookings maps each booked service to its reference.
	Bookings map[string]string `json:"bookings"`
	// CompletedSteps are the bookings that succeeded, in order.
	CompletedSteps []string `json:"completed_steps"`
	// Compensations are the cancellations that ran, newest step first.
	Compensations []workflows.CompensationResult `json:"compensations"`
	LastError     string                         `json:"last_error,omitempty"`
	// DeadLettered is true when the failed booking's record went to the DLQ.
	DeadLettered bool                     `json:"dead_lettered"`
	Applied      []workflows.AppliedEvent `json:"applied"`
	Deduped      int                      `json:"deduped"`
}

// TripSaga is the trip workflow: the bridge starts it with no arguments and
// signals it events. It returns its final State.
func TripSaga(ctx workflow.Context) (State, error) {
	st := State{
		Version: StateVersion, TripID: "", Status: StatusNew, Bookings: map[string]string{},
		CompletedSteps: []string{}, Compensations: []workflows.CompensationResult{}, Applied: []workflows.AppliedEvent{},
	}
	in := workflows.NewInbox(ctx, Signal, nil)
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (State, error) {
		s := st
		s.Deduped = in.Deduped
		return s, nil
	}); err != nil {
		return st, fmt.Errorf("register %s query: %w", QueryState, err)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumAttempts: MaxAttempts},
	})
	for st.Status == StatusNew {
		e := in.Next(ctx)
		st.Applied = append(st.Applied, workflows.AppliedEvent{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset, Type: e.Type})
		st.TripID = e.Key
		if e.Type != BookTrip {
			workflow.GetLogger(ctx).Warn("event ignored", "type", e.Type, "position", e.Position().String())
			continue
		}
		var b BookTripEvent
		if err := e.Decode(&b); err != nil {
			st.LastError, st.Status = err.Error(), StatusCompensated
			break
		}
		book(ctx, &st, e, b)
	}
	for e, ok := in.TryNext(); ok; e, ok = in.TryNext() { // later records: recorded, not acted on
		st.Applied = append(st.Applied, workflows.AppliedEvent{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset, Type: e.Type})
	}
	st.Deduped = in.Deduped
	if err := in.Close(ctx); err != nil {
		return st, fmt.Errorf("record watermarks: %w", err)
	}
	return st, nil
}

// book runs the three bookings, each registering its cancellation right
// after it succeeds; on a failure it dead-letters e when the step ran out of
// retries, then cancels what was booked, in parallel.
func book(ctx workflow.Context, st *State, e event.Envelope, b BookTripEvent) {
	var s *Services
	saga := workflows.Saga{Parallel: true}
	steps := []struct {
		service, offer string
		book, cancel   any
	}{
		{"flight", b.Flight, s.BookFlight, s.CancelFlight},
		{"hotel", b.Hotel, s.BookHotel, s.CancelHotel},
		{"car", b.Car, s.BookCar, s.CancelCar},
	}
	for _, step := range steps {
		var ref string
		err := workflow.ExecuteActivity(ctx, step.book, Booking{TripID: e.Key, Offer: step.offer}).Get(ctx, &ref)
		if err != nil {
			st.LastError = fmt.Sprintf("book %s: %v", step.service, err)
			if workflows.RetriesExhausted(err) {
				if dlErr := workflows.DeadLetter(ctx, e, err, MaxAttempts); dlErr != nil {
					st.LastError += "; " + dlErr.Error()
				} else {
					st.DeadLettered = true
				}
			}
			st.Compensations = saga.Compensate(ctx)
			st.Status = StatusCompensated
			return
		}
		st.Bookings[step.service] = ref
		st.CompletedSteps = append(st.CompletedSteps, "Book"+step.service)
		cancel := step.cancel
		saga.Add("Cancel"+step.service, func(ctx workflow.Context) error {
			return workflow.ExecuteActivity(ctx, cancel, ref).Get(ctx, nil)
		})
	}
	st.Status = StatusBooked
}

// Register is what a worker needs to run the saga.
type Register interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
	RegisterActivity(a any)
}

// RegisterWith registers TripSaga, the services' activities and the
// dead-letter activity with w.
func RegisterWith(w Register, s *Services, dl *activities.DeadLetterer) {
	w.RegisterWorkflowWithOptions(TripSaga, workflow.RegisterOptions{Name: WorkflowType})
	w.RegisterActivity(s)
	w.RegisterActivity(dl)
}
