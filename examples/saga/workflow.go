package saga

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/workflows"
)

// StateVersion is the version of the State JSON shape. It changes only when
// a field changes meaning or disappears; new fields may appear within a version.
const StateVersion = 1

// Status is where an order stands.
type Status string

// Order statuses. Completed, Compensated and Cancelled are final: the
// workflow closes after reaching one.
const (
	StatusNew         Status = "new"         // no OrderPlaced yet
	StatusOpen        Status = "open"        // items reserved, awaiting payment
	StatusCompleted   Status = "completed"   // charged and shipped
	StatusCompensated Status = "compensated" // a step or the payment failed; completed steps undone
	StatusCancelled   Status = "cancelled"   // cancelled; completed steps undone
)

// Final reports whether the saga is over.
func (s Status) Final() bool {
	return s == StatusCompleted || s == StatusCompensated || s == StatusCancelled
}

// State is the answer to the "state" query and the workflow's result.
type State struct {
	// Version is StateVersion.
	Version int `json:"version"`
	// OrderID is the record key of the order's events.
	OrderID string `json:"order_id"`
	Status  Status `json:"status"`
	// Items are the order lines whose stock was reserved; AmountCents is
	// the order's amount as placed and extended (including lines whose
	// reservation failed).
	Items       []Item `json:"items"`
	AmountCents int64  `json:"amount_cents"`
	Country     string `json:"country,omitempty"`
	// CompletedSteps lists the steps that succeeded, in order, such as
	// "ReserveInventory:A1", "ChargePayment", "ShipOrder".
	CompletedSteps []string `json:"completed_steps"`
	// Compensations lists the compensations that ran, in the order they ran
	// (the reverse of CompletedSteps), with an error where one failed.
	Compensations []workflows.CompensationResult `json:"compensations"`
	// LastError is the failure that made the saga compensate, if any.
	LastError string `json:"last_error,omitempty"`
	// Applied lists every record applied, in the order applied; per
	// partition the offsets are strictly increasing.
	Applied []workflows.AppliedEvent `json:"applied"`
	// Rejected lists records that were applied but made no sense in the
	// order's status (for example a payment for a finished order).
	Rejected []Rejected `json:"rejected,omitempty"`
	// Deduped counts records dropped as already applied.
	Deduped int `json:"deduped"`
}

// Rejected is a record the saga could not act on, and why.
type Rejected struct {
	workflows.AppliedEvent
	Reason string `json:"reason"`
}

// order is the saga's mutable state inside one workflow run.
type order struct {
	st   State
	saga workflows.Saga
}

// OrderSaga is the order workflow. The bridge starts it with no arguments
// and signals it events; it returns its final State.
func OrderSaga(ctx workflow.Context) (State, error) {
	o := &order{st: State{
		Version: StateVersion, Status: StatusNew,
		Items: []Item{}, CompletedSteps: []string{}, Compensations: []workflows.CompensationResult{}, Applied: []workflows.AppliedEvent{},
	}}
	in := workflows.NewInbox(ctx, Signal, nil)
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (State, error) {
		s := o.st
		s.Deduped = in.Deduped
		return s, nil
	}); err != nil {
		return o.st, fmt.Errorf("register %s query: %w", QueryState, err)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
	})
	for !o.st.Status.Final() {
		o.apply(ctx, in.Next(ctx))
	}
	// Records that arrived with or after the final one are applied as
	// rejected, so none is silently lost and the memo covers them.
	for e, ok := in.TryNext(); ok; e, ok = in.TryNext() {
		o.apply(ctx, e)
	}
	o.st.Deduped = in.Deduped
	if err := o.publishOutcome(ctx); err != nil {
		return o.st, err
	}
	if err := in.Close(ctx); err != nil {
		return o.st, fmt.Errorf("record watermarks: %w", err)
	}
	return o.st, nil
}

// apply handles one new record.
func (o *order) apply(ctx workflow.Context, e event.Envelope) {
	applied := workflows.AppliedEvent{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset, Type: e.Type}
	o.st.Applied = append(o.st.Applied, applied)
	if o.st.OrderID == "" {
		o.st.OrderID = e.Key
	}
	if reason := o.handle(ctx, e); reason != "" {
		o.st.Rejected = append(o.st.Rejected, Rejected{AppliedEvent: applied, Reason: reason})
		workflow.GetLogger(ctx).Warn("event rejected", "type", e.Type, "position", e.Position().String(), "reason", reason)
	}
}

// handle acts on e and returns why it was rejected, or "".
func (o *order) handle(ctx workflow.Context, e event.Envelope) string {
	if o.st.Status.Final() {
		return fmt.Sprintf("order is already %s", o.st.Status)
	}
	want := StatusOpen
	if e.Type == OrderPlaced {
		want = StatusNew
	}
	if o.st.Status != want && e.Type != OrderCancelled {
		return fmt.Sprintf("%s needs status %s, order is %s", e.Type, want, o.st.Status)
	}
	var err error
	switch e.Type {
	case OrderPlaced:
		var p OrderPlacedEvent
		if err = e.Decode(&p); err == nil {
			o.st.AmountCents, o.st.Country, o.st.Status = p.AmountCents, p.Country, StatusOpen
			for _, it := range p.Items {
				if !o.reserve(ctx, it) {
					break
				}
			}
		}
	case ItemAdded:
		var p ItemAddedEvent
		if err = e.Decode(&p); err == nil {
			o.st.AmountCents += p.AmountCents
			o.reserve(ctx, Item{SKU: p.SKU, Qty: p.Qty})
		}
	case PaymentAuthorized:
		var p PaymentAuthorizedEvent
		if err = e.Decode(&p); err == nil {
			o.chargeAndShip(ctx, p)
		}
	case PaymentFailed:
		var p ReasonEvent
		if err = e.Decode(&p); err == nil {
			o.fail(ctx, StatusCompensated, "payment failed: "+p.Reason)
		}
	case OrderCancelled:
		var p ReasonEvent
		if err = e.Decode(&p); err == nil {
			o.fail(ctx, StatusCancelled, "cancelled: "+p.Reason)
		}
	default:
		return fmt.Sprintf("unknown event type %q", e.Type)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// reserve holds stock for it and registers its release; on failure it
// compensates the order and reports false.
func (o *order) reserve(ctx workflow.Context, it Item) bool {
	var a *Activities
	in := ReserveInput{OrderID: o.st.OrderID, Item: it}
	if err := workflow.ExecuteActivity(ctx, a.ReserveInventory, in).Get(ctx, nil); err != nil {
		o.fail(ctx, StatusCompensated, describe(err))
		return false
	}
	o.st.Items = append(o.st.Items, it)
	o.step("ReserveInventory:"+it.SKU, "ReleaseInventory:"+it.SKU, func(ctx workflow.Context) error {
		return workflow.ExecuteActivity(ctx, a.ReleaseInventory, in).Get(ctx, nil)
	})
	return true
}

// chargeAndShip captures the payment, registers its refund, then ships.
func (o *order) chargeAndShip(ctx workflow.Context, p PaymentAuthorizedEvent) {
	var a *Activities
	charge := ChargeInput{OrderID: o.st.OrderID, PaymentID: p.PaymentID, Card: p.Card, AmountCents: o.st.AmountCents}
	if err := workflow.ExecuteActivity(ctx, a.ChargePayment, charge).Get(ctx, nil); err != nil {
		o.fail(ctx, StatusCompensated, describe(err))
		return
	}
	o.step("ChargePayment", "RefundPayment", func(ctx workflow.Context) error {
		return workflow.ExecuteActivity(ctx, a.RefundPayment, charge).Get(ctx, nil)
	})
	ship := ShipInput{OrderID: o.st.OrderID, Country: o.st.Country, Items: o.st.Items}
	if err := workflow.ExecuteActivity(ctx, a.ShipOrder, ship).Get(ctx, nil); err != nil {
		o.fail(ctx, StatusCompensated, describe(err))
		return
	}
	o.st.CompletedSteps = append(o.st.CompletedSteps, "ShipOrder")
	o.st.Status = StatusCompleted
}

// step records a completed step and the compensation that undoes it.
func (o *order) step(name, undoName string, undo workflows.Compensation) {
	o.st.CompletedSteps = append(o.st.CompletedSteps, name)
	o.saga.Add(undoName, undo)
}

// fail undoes every completed step, newest first, and ends the saga.
func (o *order) fail(ctx workflow.Context, final Status, reason string) {
	o.st.LastError = reason
	o.st.Compensations = append(o.st.Compensations, o.saga.Compensate(ctx)...)
	o.st.Status = final
}

// outcomeTypes names the outcome event of each final status.
var outcomeTypes = map[Status]string{
	StatusCompleted: "OrderCompleted", StatusCompensated: "OrderCompensated", StatusCancelled: "OrderCancelled",
}

// publishOutcome tells the rest of the company how the order ended. It is
// retried until it succeeds: the saga is over either way, and the outcome
// must not be lost.
func (o *order) publishOutcome(ctx workflow.Context) error {
	value, err := json.Marshal(map[string]any{
		"order_id": o.st.OrderID, "status": o.st.Status, "last_error": o.st.LastError, "amount_cents": o.st.AmountCents,
	})
	if err != nil {
		return fmt.Errorf("encode outcome: %w", err)
	}
	var p *activities.Publisher
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	out := activities.Outcome{Topic: OutcomeTopic, Key: o.st.OrderID, Type: outcomeTypes[o.st.Status], Value: value}
	if err := workflow.ExecuteActivity(ctx, p.Publish, out).Get(ctx, nil); err != nil {
		return fmt.Errorf("publish outcome of order %s: %w", o.st.OrderID, err)
	}
	return nil
}

// describe renders an activity failure as "Type: message".
func describe(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type() + ": " + app.Message()
	}
	return err.Error()
}

// Register is what a worker needs to run the saga.
type Register interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
	RegisterActivity(a any)
}

// RegisterWith registers OrderSaga, the services' activities and the
// outcome publisher with w.
func RegisterWith(w Register, acts *Activities, pub *activities.Publisher) {
	w.RegisterWorkflowWithOptions(OrderSaga, workflow.RegisterOptions{Name: WorkflowType})
	w.RegisterActivity(acts)
	w.RegisterActivity(pub)
}
