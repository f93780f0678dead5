package saga

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/workflows"
)

// Status is where an order stands (the saga's status in the state query).
type Status = string

// Order statuses. Completed, Compensated and Cancelled are final: the
// workflow closes after reaching one.
const (
	StatusNew         Status = workflows.StatusNew // no OrderPlaced yet
	StatusOpen        Status = "open"              // items reserved, awaiting payment
	StatusCompleted   Status = "completed"         // charged and shipped
	StatusCompensated Status = "compensated"       // a step or the payment failed, or payment was overdue; completed steps undone
	StatusCancelled   Status = "cancelled"         // cancelled by an event or the cancel update; completed steps undone
)

// OrderData is the order's own data in the state query (under "state").
type OrderData struct {
	// Items are the order lines whose stock was reserved; AmountCents is
	// the order's amount as placed and extended (including lines whose
	// reservation failed).
	Items       []Item `json:"items"`
	AmountCents int64  `json:"amount_cents"`
	Country     string `json:"country,omitempty"`
}

// State is the answer to the "state" query and the workflow's result: the
// runtime's versioned contract (status, current and completed steps,
// compensations, last error, rejected records, dedupe counters, applied
// offsets) around the OrderData.
type State = workflows.Snapshot[OrderData]

// OrderSaga is the order workflow. The bridge starts it with no arguments
// and signals it events; a continued run gets the carried State. It returns
// its final State.
func OrderSaga(ctx workflow.Context, carried *State) (State, error) {
	return orderEntity().Run(ctx, carried)
}

// untilDone retries an activity until it succeeds or fails with a
// non-retryable error, backing off to a minute between attempts.
var untilDone = &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute}

// orderEntity wires the order's handlers into the runtime.
func orderEntity() *workflows.Entity[OrderData] {
	retry := &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5}
	en := &workflows.Entity[OrderData]{
		Init:            func(string) OrderData { return OrderData{Items: []Item{}} },
		Final:           []Status{StatusCompleted, StatusCompensated, StatusCancelled},
		Finish:          publishOutcome,
		Signal:          Signal,
		Query:           QueryState,
		ActivityOptions: workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: retry},
		Compensation: workflows.CompensationOptions{
			// An undo is retried until it goes through or fails for good
			// (a non-retryable error): a saga that compensates must not
			// leave a customer charged because the payment service was down
			// for a minute.
			ActivityOptions: workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: untilDone},
		},
		StatusSearchAttribute: StatusSearchAttribute,
		KeepApplied:           1000,
	}
	workflows.On(en, OrderPlaced, placeOrder)
	workflows.On(en, ItemAdded, addItem)
	workflows.On(en, PaymentAuthorized, chargeAndShip)
	workflows.On(en, PaymentFailed, func(c *workflows.Ctx[OrderData], e ReasonEvent) error {
		if err := need(c, StatusOpen); err != nil {
			return err
		}
		return c.Fail(StatusCompensated, errors.New("payment failed: "+e.Reason))
	})
	workflows.On(en, OrderCancelled, func(c *workflows.Ctx[OrderData], e ReasonEvent) error {
		return c.Fail(StatusCancelled, errors.New("cancelled: "+e.Reason))
	})
	workflows.OnTimeout(en, TimeoutPayment, func(c *workflows.Ctx[OrderData]) error {
		if c.Status() != StatusOpen {
			return nil
		}
		return c.Fail(StatusCompensated, fmt.Errorf("payment not received within %s", PaymentDue))
	})
	workflows.OnUpdate(en, UpdateCancel, validateCancel, func(c *workflows.Ctx[OrderData], in CancelRequest) (CancelResult, error) {
		err := c.Fail(StatusCancelled, errors.New("cancelled: "+in.Reason))
		p := c.Progress()
		return CancelResult{Status: p.Status, LastError: p.LastError, Compensations: p.Compensations}, err
	})
	return en
}

// need rejects an event that needs the order in status want, and holds
// one that needs it open and came before its OrderPlaced (from another
// producer): the record waits, listed in the state's held, and is handed
// to its handler again once the order is placed. Orders recorded before
// rejected it; GetVersion (asked only for such a record) keeps their
// histories replaying.
func need(c *workflows.Ctx[OrderData], want Status) error {
	if want == StatusOpen && c.Status() == StatusNew &&
		workflow.GetVersion(c, "saga.hold-before-placed", workflow.DefaultVersion, 1) >= 1 {
		return c.Hold("waiting for " + OrderPlaced)
	}
	if c.Status() != want {
		return fmt.Errorf("%s needs status %s, order is %s", c.Event.Type, want, c.Status())
	}
	return nil
}

// placeOrder opens the order, reserves its lines and starts the payment clock.
func placeOrder(c *workflows.Ctx[OrderData], p OrderPlacedEvent) error {
	if err := need(c, StatusNew); err != nil {
		return err
	}
	if err := checkAmount(c, OrderPlaced, p.AmountCents, 0, p.Items...); err != nil {
		return err
	}
	c.State.AmountCents, c.State.Country = p.AmountCents, p.Country
	c.SetStatus(StatusOpen)
	for _, it := range p.Items {
		if err := reserve(c, it); err != nil || c.CancelRequested() {
			return err
		}
	}
	// Orders placed before the payment deadline existed have no timer;
	// workflow.GetVersion keeps their histories replaying.
	if workflow.GetVersion(c, "payment-deadline", workflow.DefaultVersion, 1) >= 1 {
		c.Begin(StepAwaitPayment)
		c.StartTimeout(TimeoutPayment, PaymentDue)
	}
	return nil
}

// addItem reserves one more line of an open order.
func addItem(c *workflows.Ctx[OrderData], p ItemAddedEvent) error {
	if err := need(c, StatusOpen); err != nil {
		return err
	}
	if err := checkAmount(c, ItemAdded, p.AmountCents, c.State.AmountCents, Item{SKU: p.SKU, Qty: p.Qty}); err != nil {
		return err
	}
	c.State.AmountCents += p.AmountCents
	return reserve(c, Item{SKU: p.SKU, Qty: p.Qty})
}

// checkAmount refuses an event of type typ whose amount is negative or
// would overflow the order's total, or whose lines have no SKU or a
// quantity below 1: a negative amount would lower what is charged, and a
// negative quantity would hold negative stock. The handler returns the
// error, so the record is rejected (listed with the reason) and changes
// nothing. Orders that took such an event before this check reserved it;
// GetVersion keeps their histories replaying (asked only for a bad event).
func checkAmount(c *workflows.Ctx[OrderData], typ string, amount, total int64, items ...Item) error {
	var problem string
	switch {
	case amount < 0:
		problem = fmt.Sprintf("amount_cents is %d: it must not be negative", amount)
	case amount > math.MaxInt64-total:
		problem = fmt.Sprintf("amount_cents %d would take the order's total past %d", amount, int64(math.MaxInt64))
	}
	for i, it := range items {
		if problem != "" {
			break
		}
		field := "sku"
		if typ == OrderPlaced {
			field = fmt.Sprintf("items[%d].sku", i)
		}
		switch {
		case it.SKU == "":
			problem = field + " is empty"
		case it.Qty < 1:
			problem = fmt.Sprintf("%s is %d: it must be at least 1", strings.TrimSuffix(field, "sku")+"qty", it.Qty)
		}
	}
	if problem == "" || workflow.GetVersion(c, "check-amounts", workflow.DefaultVersion, 1) < 1 {
		return nil
	}
	return fmt.Errorf("%s: %s", typ, problem)
}

// reserve holds stock for it and registers its release; on failure it
// compensates the order and returns Fail's error, which the handler
// returns at once. A reservation that failed other than by the service's
// refusal may have reserved (an attempt whose answer was lost), so its
// release is registered too; releasing what is not held is harmless. When
// the workflow was asked to cancel it returns nil: the handler returns,
// and the runtime compensates the order as cancelled (Ctx.CancelRequested).
func reserve(c *workflows.Ctx[OrderData], it Item) error {
	var a *Activities
	in := ReserveInput{OrderID: c.Key(), Item: it}
	release := workflows.UndoActivity("ReleaseInventory:"+it.SKU, a.ReleaseInventory, in)
	if err := workflow.ExecuteActivity(c.UndoableStep(), a.ReserveInventory, in).Get(c, nil); err != nil {
		// Orders whose reservation failed before this change released
		// only what was reserved; GetVersion keeps their histories
		// replaying (asked only when one fails).
		if !workflows.Refused(err) && workflow.GetVersion(c, "release-unknown-reservation", workflow.DefaultVersion, 1) >= 1 {
			c.Compensate(release)
		}
		if c.CancelRequested() {
			return nil
		}
		return c.Fail(StatusCompensated, err)
	}
	c.State.Items = append(c.State.Items, it)
	c.Completed("ReserveInventory:"+it.SKU, release)
	return nil
}

// chargeAndShip captures the payment, registers its refund, then ships.
func chargeAndShip(c *workflows.Ctx[OrderData], p PaymentAuthorizedEvent) error {
	if err := need(c, StatusOpen); err != nil {
		return err
	}
	var a *Activities
	c.Begin("ChargePayment")
	charge := ChargeInput{OrderID: c.Key(), PaymentID: p.PaymentID, Card: p.Card, AmountCents: c.State.AmountCents}
	refund := workflows.UndoActivity("RefundPayment", a.RefundPayment, charge)
	// A charge that went through and then timed out (or whose answer was
	// lost) must still be refunded, so the refund is registered before the
	// charge; RefundPayment is harmless when nothing was charged. Orders
	// charged before this change registered it after; GetVersion keeps
	// their histories replaying.
	before := workflow.GetVersion(c, "refund-before-charge", workflow.DefaultVersion, 1) >= 1
	if before {
		c.Compensate(refund)
	}
	err := workflow.ExecuteActivity(c.UndoableStep(), a.ChargePayment, charge).Get(c, nil)
	if c.CancelRequested() {
		return nil // the refund is registered: the runtime refunds whatever landed
	}
	if err != nil {
		return c.Fail(StatusCompensated, err)
	}
	if before {
		c.Completed("ChargePayment")
	} else {
		c.Completed("ChargePayment", refund)
	}
	c.Begin("ShipOrder")
	ship := ShipInput{OrderID: c.Key(), Country: c.State.Country, Items: c.State.Items}
	// Shipping cannot be undone, and an attempt whose answer was lost may
	// have shipped: it is retried until the carrier answers, and only its
	// "undeliverable" (non-retryable) compensates the order. A request to
	// cancel cannot stop it either: it runs on a context the request does
	// not reach, the order completes, and the request comes too late.
	shipCtx := workflow.WithActivityOptions(c.IrrevocableStep(), workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: untilDone})
	if err := workflow.ExecuteActivity(shipCtx, a.ShipOrder, ship).Get(shipCtx, nil); err != nil {
		return c.Fail(StatusCompensated, err)
	}
	c.Completed("ShipOrder")
	c.SetStatus(StatusCompleted)
	return nil
}

// validateCancel accepts a cancel update for an order that is new or open.
// An open order may be charging or shipping (its status stays open until
// it completes): the update is then accepted, waits for the saga's handler
// to finish, and is answered AlreadyDone if the order completed meanwhile.
func validateCancel(st State, in CancelRequest) error {
	if in.Reason == "" {
		return errors.New("cancel: reason is required")
	}
	if st.Status != StatusNew && st.Status != StatusOpen {
		return fmt.Errorf("cancel: order %s is %s; only a new or open order can be cancelled", st.Key, st.Status)
	}
	return nil
}

// outcomeTypes names the outcome event of each final status.
var outcomeTypes = map[Status]string{
	StatusCompleted: "OrderCompleted", StatusCompensated: "OrderCompensated", StatusCancelled: "OrderCancelled",
}

// publishOutcome tells the rest of the company how the order ended. It is
// retried until it succeeds: the saga is over either way, and the outcome
// must not be lost.
func publishOutcome(c *workflows.Ctx[OrderData]) error {
	o := c.State
	value, err := json.Marshal(map[string]any{
		"order_id": c.Key(), "status": c.Status(), "last_error": c.Progress().LastError, "amount_cents": o.AmountCents,
	})
	if err != nil {
		return fmt.Errorf("encode outcome: %w", err)
	}
	var p *activities.Publisher
	ctx := workflow.WithActivityOptions(c, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	out := activities.Outcome{Topic: OutcomeTopic, Key: c.Key(), Type: outcomeTypes[c.Status()], Value: value}
	if err := workflow.ExecuteActivity(ctx, p.Publish, out).Get(ctx, nil); err != nil {
		return fmt.Errorf("publish outcome of order %s: %w", c.Key(), err)
	}
	return nil
}

// RegisterWith registers OrderSaga, the services' activities and the
// outcome publisher with w.
func RegisterWith(w worker.Registry, acts *Activities, pub *activities.Publisher) {
	w.RegisterWorkflowWithOptions(OrderSaga, workflow.RegisterOptions{Name: WorkflowType})
	w.RegisterActivity(acts)
	w.RegisterActivity(pub)
}
