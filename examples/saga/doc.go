// Package saga is an order saga driven by Kafka events through sagabridge.
//
// Events (record key = order ID, event type in the "event-type" header,
// value = JSON) on topic "orders":
//
//	OrderPlaced       {"items":[{"sku":"A1","qty":2}],"amount_cents":1299,"country":"DE"}
//	ItemAdded         {"sku":"B2","qty":1,"amount_cents":500}
//	PaymentAuthorized {"payment_id":"p-1","card":"visa"}
//	PaymentFailed     {"reason":"insufficient_funds"}
//	OrderCancelled    {"reason":"customer request"}
//
// The workflow (type OrderSaga, ID "order-<key>") reserves stock for each
// item as it arrives, then on PaymentAuthorized charges the payment and
// ships. If any step fails, or payment fails, or the order is cancelled, it
// compensates in reverse order: refund, then release each reservation,
// newest first. It answers the "state" query with State as JSON, and
// publishes its outcome to OutcomeTopic before it closes.
//
// The activities simulate the services, failing on purpose for demo data:
// sku "OUT-OF-STOCK" cannot be reserved, card "declined" cannot be charged,
// country "XX" cannot be shipped to.
//
// Like every example, its non-test code uses only the public packages
// (workflows, activities, event, dlq) and must not import internal/
// packages, so it can be copied into a module of your own.
package saga

import (
	"time"

	"github.com/sagabridge/sagabridge/workflows"
)

// Names the bridge config, worker and producers share.
const (
	// WorkflowType is the registered workflow name.
	WorkflowType = "OrderSaga"
	// TaskQueue is the task queue the worker polls.
	TaskQueue = "orders"
	// Topic is the topic the order events arrive on.
	Topic = "orders"
	// TypeHeader is the record header holding the event type.
	TypeHeader = "event-type"
	// Signal is the signal the bridge delivers events with.
	Signal = "events"
	// QueryState is the query that returns State.
	QueryState = "state"
	// StatusSearchAttribute is the Keyword search attribute that holds each
	// order's status, for listing orders by status. Register it on the
	// namespace before the worker runs (see README.md).
	StatusSearchAttribute = "SagaStatus"
	// UpdateCancel is the Temporal Update that cancels an order and answers
	// with a CancelResult.
	UpdateCancel = "cancel"
	// StepAwaitPayment is the current step while an order waits for payment.
	StepAwaitPayment = "AwaitPayment"
	// TimeoutPayment is the timeout that compensates an order not paid
	// within PaymentDue of being placed.
	TimeoutPayment = "payment-due"
	// PaymentDue is how long an open order waits for payment.
	PaymentDue = 24 * time.Hour
	// OutcomeTopic receives one outcome event per finished order
	// (OrderCompleted, OrderCompensated or OrderCancelled), keyed by order ID.
	OutcomeTopic = "order-outcomes"
)

// Event types.
const (
	OrderPlaced       = "OrderPlaced"
	ItemAdded         = "ItemAdded"
	PaymentAuthorized = "PaymentAuthorized"
	PaymentFailed     = "PaymentFailed"
	OrderCancelled    = "OrderCancelled"
)

// Item is one order line.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// OrderPlacedEvent opens an order.
type OrderPlacedEvent struct {
	Items       []Item `json:"items"`
	AmountCents int64  `json:"amount_cents"`
	Country     string `json:"country"`
}

// ItemAddedEvent adds a line to an open order.
type ItemAddedEvent struct {
	SKU         string `json:"sku"`
	Qty         int    `json:"qty"`
	AmountCents int64  `json:"amount_cents"`
}

// PaymentAuthorizedEvent says the payment provider authorized the order's amount.
type PaymentAuthorizedEvent struct {
	PaymentID string `json:"payment_id"`
	Card      string `json:"card"`
}

// ReasonEvent carries why an order failed or was cancelled.
type ReasonEvent struct {
	Reason string `json:"reason"`
}

// CancelRequest is the input of the cancel update.
type CancelRequest struct {
	Reason string `json:"reason"`
}

// CancelResult is the answer to the cancel update.
type CancelResult struct {
	Status        Status                         `json:"status"`
	LastError     string                         `json:"last_error"`
	Compensations []workflows.CompensationResult `json:"compensations"`
}
