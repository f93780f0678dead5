package saga

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
)

// Order is one order's events, in the order they must be produced, and the
// outcome the saga must reach.
type Order struct {
	ID     string
	Events []Event
	Want   Outcome
}

// Event is one record to produce for an order.
type Event struct {
	Type  string
	Value []byte
}

// Outcome is what the saga's final State must show.
type Outcome struct {
	Status         Status
	CompletedSteps []string
	Compensations  []string
}

// Orders generates n orders from seed: most complete, and a share of each
// failure kind (payment failed, card declined, undeliverable, out of stock,
// cancelled) that must compensate in reverse order.
func Orders(prefix string, n int, seed uint64) []Order {
	rng := rand.New(rand.NewPCG(seed, seed^0x5a5a))
	orders := make([]Order, 0, n)
	for i := range n {
		orders = append(orders, newOrder(fmt.Sprintf("%s%d", prefix, i), i%10, rng))
	}
	return orders
}

// newOrder builds one order of the given kind. A saga closes when it
// reaches a final status, so every order's last event is the one that ends
// it; an event after that would find the workflow closed and go to the DLQ.
func newOrder(id string, kind int, rng *rand.Rand) Order {
	o := Order{ID: id}
	country := "DE"
	if kind == 8 {
		country = "XX"
	}
	first := Item{SKU: fmt.Sprintf("SKU-%d", rng.IntN(50)), Qty: 1 + rng.IntN(3)}
	o.add(OrderPlaced, OrderPlacedEvent{Items: []Item{first}, AmountCents: 1000 + rng.Int64N(9000), Country: country})
	skus := []string{first.SKU}
	extra := 1 + rng.IntN(4)
	for j := range extra {
		sku := fmt.Sprintf("SKU-%d-%d", rng.IntN(50), j)
		if kind == 5 && j == extra-1 {
			sku = "OUT-OF-STOCK"
		}
		o.add(ItemAdded, ItemAddedEvent{SKU: sku, Qty: 1 + rng.IntN(2), AmountCents: 100 + rng.Int64N(900)})
		skus = append(skus, sku)
	}
	reserved := skus
	if kind == 5 { // the last reservation fails
		reserved = skus[:len(skus)-1]
	}
	steps := make([]string, 0, len(reserved)+2)
	releases := make([]string, 0, len(reserved))
	for _, s := range reserved {
		steps = append(steps, "ReserveInventory:"+s)
		releases = append(releases, "ReleaseInventory:"+s)
	}
	slices.Reverse(releases)
	payment := PaymentAuthorizedEvent{PaymentID: "pay-" + id, Card: "visa"}
	switch kind {
	case 5: // the last reservation is out of stock: the saga ends there
		o.Want = Outcome{StatusCompensated, steps, releases}
	case 6:
		o.add(PaymentFailed, ReasonEvent{Reason: "insufficient_funds"})
		o.Want = Outcome{StatusCompensated, steps, releases}
	case 7:
		payment.Card = "declined"
		o.add(PaymentAuthorized, payment)
		// The refund is registered before the charge (a charge may go
		// through and time out), so a declined card is "refunded" too.
		o.Want = Outcome{StatusCompensated, steps, append([]string{"RefundPayment"}, releases...)}
	case 8:
		o.add(PaymentAuthorized, payment)
		o.Want = Outcome{StatusCompensated, append(steps, "ChargePayment"), append([]string{"RefundPayment"}, releases...)}
	case 9:
		o.add(OrderCancelled, ReasonEvent{Reason: "customer request"})
		o.Want = Outcome{StatusCancelled, steps, releases}
	default:
		o.add(PaymentAuthorized, payment)
		o.Want = Outcome{StatusCompleted, append(steps, "ChargePayment", "ShipOrder"), []string{}}
	}
	return o
}

func (o *Order) add(typ string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %s: %v", typ, err)) // only fixed, known types reach here
	}
	o.Events = append(o.Events, Event{Type: typ, Value: b})
}

// Message is one event of one order, ready to produce.
type Message struct {
	OrderID string
	Event
}

// Interleave merges the orders' events into one stream in a random order
// that keeps each order's own events in sequence, as independent producers
// would.
func Interleave(orders []Order, seed uint64) []Message {
	rng := rand.New(rand.NewPCG(seed, seed^0xa5a5))
	next := make([]int, len(orders))
	live := make([]int, len(orders))
	for i := range orders {
		live[i] = i
	}
	var out []Message
	for len(live) > 0 {
		k := rng.IntN(len(live))
		i := live[k]
		out = append(out, Message{OrderID: orders[i].ID, Event: orders[i].Events[next[i]]})
		next[i]++
		if next[i] == len(orders[i].Events) {
			live = slices.Delete(live, k, k+1)
		}
	}
	return out
}
