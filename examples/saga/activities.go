package saga

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Business failures the simulated services return. They are not retryable:
// retrying a declined card does not help.
const (
	ErrOutOfStock    = "OutOfStock"
	ErrCardDeclined  = "CardDeclined"
	ErrUndeliverable = "Undeliverable"
)

// ReserveInput asks to reserve one order line.
type ReserveInput struct {
	OrderID string `json:"order_id"`
	Item    Item   `json:"item"`
}

// ChargeInput asks to capture an authorized payment.
type ChargeInput struct {
	OrderID     string `json:"order_id"`
	PaymentID   string `json:"payment_id"`
	Card        string `json:"card"`
	AmountCents int64  `json:"amount_cents"`
}

// ShipInput asks to ship an order.
type ShipInput struct {
	OrderID string `json:"order_id"`
	Country string `json:"country"`
	Items   []Item `json:"items"`
}

// Activities simulates the inventory, payment and shipping services. Every
// exported method is an activity. Safe for concurrent use.
type Activities struct {
	// Ledger keeps the services' effects in memory so tests can see them.
	Ledger *Ledger
}

// Ledger is what the simulated services did. Safe for concurrent use.
type Ledger struct {
	mu       sync.Mutex
	reserved map[string]int   // order/sku → units held
	charged  map[string]int64 // order → cents captured
	shipped  map[string]bool
	// captures and reservations count the captures and reservations that
	// landed per order (an undo does not undo the count); capturing marks
	// an order whose slow capture or reservation runs.
	captures, reservations map[string]int
	capturing              map[string]bool
	// done holds the reservations and releases made, by the activity
	// that made them: a retry of one (its answer lost) changes nothing.
	done map[string]bool
}

// NewActivities returns services with nothing reserved, charged or shipped.
func NewActivities() *Activities {
	return &Activities{Ledger: &Ledger{reserved: map[string]int{}, charged: map[string]int64{}, shipped: map[string]bool{},
		captures: map[string]int{}, reservations: map[string]int{}, capturing: map[string]bool{}, done: map[string]bool{}}}
}

// once reports whether the calling activity has not yet changed the
// ledger, and records that it has. The key is the activity's, the same on
// every attempt, as a real service's idempotency key would be. The
// caller holds l.mu.
func (l *Ledger) once(ctx context.Context) bool {
	info := activity.GetInfo(ctx)
	key := info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID + "/" + info.ActivityID
	if l.done[key] {
		return false
	}
	l.done[key] = true
	return true
}

// SKUSlow is a SKU whose reservation takes SlowCapture, and lands even
// when the workflow gives up on it meanwhile, as CardSlow's capture does.
const SKUSlow = "SLOW"

// ReserveInventory holds stock for one line. A retry of it holds nothing
// more.
func (a *Activities) ReserveInventory(ctx context.Context, in ReserveInput) error {
	if in.Item.SKU == "OUT-OF-STOCK" {
		return temporal.NewNonRetryableApplicationError("sku OUT-OF-STOCK has no stock", ErrOutOfStock, nil)
	}
	l := a.Ledger
	if in.Item.SKU == SKUSlow {
		l.mu.Lock()
		l.capturing[in.OrderID] = true
		l.mu.Unlock()
		time.Sleep(SlowCapture) // the inventory service does not stop when asked to
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.capturing, in.OrderID)
	l.reservations[in.OrderID]++
	if l.once(ctx) {
		l.reserved[in.OrderID+"/"+in.Item.SKU] += in.Item.Qty
	}
	activity.GetLogger(ctx).Info("reserved", "order", in.OrderID, "sku", in.Item.SKU, "qty", in.Item.Qty)
	return nil
}

// ReleaseInventory returns stock held for one line. Releasing what is not
// held is a no-op, and a retry of it releases nothing more, so the
// compensation is safe to retry.
func (a *Activities) ReleaseInventory(ctx context.Context, in ReserveInput) error {
	l := a.Ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	if key := in.OrderID + "/" + in.Item.SKU; l.once(ctx) {
		l.reserved[key] = max(0, l.reserved[key]-in.Item.Qty)
	}
	activity.GetLogger(ctx).Info("released", "order", in.OrderID, "sku", in.Item.SKU)
	return nil
}

// CardSlow is a card whose capture takes SlowCapture, and lands even when
// the workflow gives up on it meanwhile, as a real provider's would.
const CardSlow = "slow"

// SlowCapture is how long the capture of CardSlow takes.
const SlowCapture = 2 * time.Second

// ChargePayment captures the order's amount.
func (a *Activities) ChargePayment(ctx context.Context, in ChargeInput) error {
	if in.Card == "declined" {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("card declined for payment %s", in.PaymentID), ErrCardDeclined, nil)
	}
	l := a.Ledger
	if in.Card == CardSlow {
		l.mu.Lock()
		l.capturing[in.OrderID] = true
		l.mu.Unlock()
		time.Sleep(SlowCapture) // the provider does not stop when asked to
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.charged[in.OrderID] = in.AmountCents
	l.captures[in.OrderID]++
	delete(l.capturing, in.OrderID)
	return nil
}

// RefundPayment returns a captured amount; refunding twice is a no-op.
func (a *Activities) RefundPayment(ctx context.Context, in ChargeInput) error {
	l := a.Ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.charged, in.OrderID)
	return nil
}

// ShipOrder hands the order to the carrier.
func (a *Activities) ShipOrder(ctx context.Context, in ShipInput) error {
	if in.Country == "XX" {
		return temporal.NewNonRetryableApplicationError("no carrier ships to country XX", ErrUndeliverable, nil)
	}
	l := a.Ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shipped[in.OrderID] = true
	return nil
}

// Held returns the units held for an order line.
func (l *Ledger) Held(orderID, sku string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reserved[orderID+"/"+sku]
}

// Charged returns the cents captured and not refunded for an order, and
// how many captures landed for it.
func (l *Ledger) Charged(orderID string) (cents int64, captures int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.charged[orderID], l.captures[orderID]
}

// Reserved returns how many reservations landed for an order.
func (l *Ledger) Reserved(orderID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reservations[orderID]
}

// Capturing reports whether a slow capture (CardSlow) or reservation
// (SKUSlow) runs for an order.
func (l *Ledger) Capturing(orderID string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.capturing[orderID]
}
