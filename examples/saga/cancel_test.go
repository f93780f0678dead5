package saga

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

	"github.com/sagabridge/sagabridge/event"
)

// cancelDuring runs an order of one line (sku A) to its authorized
// payment; mocks may cancel the workflow (temporal workflow cancel) while
// one of its activities runs. It returns the final state and the
// workflow's error.
func cancelDuring(t *testing.T, acts *Activities, mocks func(env *testsuite.TestWorkflowEnvironment)) (State, error) {
	t.Helper()
	env := newEnv(acts)
	mocks(env)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{
			envelope(1, OrderPlaced, placed),
			envelope(2, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
		}})
	}, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.True(t, env.IsWorkflowCompleted())
	v, err := env.QueryWorkflow(QueryState) // a cancelled workflow has no result
	require.NoError(t, err)
	var st State
	require.NoError(t, v.Get(&st))
	return st, env.GetWorkflowError()
}

// A request to cancel that comes while the order ships cannot stop the
// carrier: the shipment finishes and the order completes, charged and
// shipped. (The shipment's cancellation counted as its failure: the saga
// refunded an order that shipped.)
func TestACancelWhileShippingLetsTheShipmentFinish(t *testing.T) {
	acts := NewActivities()
	st, err := cancelDuring(t, acts, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(acts.ShipOrder, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ShipInput) error {
			env.CancelWorkflow()
			time.Sleep(100 * time.Millisecond) // the carrier takes the parcel
			return acts.ShipOrder(ctx, in)
		})
	})
	require.NoError(t, err, "the order shipped: the request to cancel came too late")
	assert.Equal(t, StatusCompleted, st.Status)
	assert.Empty(t, st.Compensations)
	acts.Ledger.mu.Lock()
	defer acts.Ledger.mu.Unlock()
	assert.True(t, acts.Ledger.shipped["42"])
	assert.Equal(t, int64(100), acts.Ledger.charged["42"], "a shipped order was refunded")
}

// A request to cancel that comes while the payment is captured ends the
// order cancelled: the refund and the releases run, and it does not ship.
// (The capture's cancellation counted as its failure: the order ended
// compensated.) That the refund waits for the capture to land is checked
// on a real server (e2e TestACancelWhileChargingRefundsTheChargeAfterItLands):
// the SDK's test environment does not wait for a cancelled activity.
func TestACancelWhileChargingEndsTheOrderCancelled(t *testing.T) {
	acts := NewActivities()
	st, err := cancelDuring(t, acts, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(acts.ChargePayment, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ChargeInput) error {
			env.CancelWorkflow()
			return nil
		})
	})
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "the workflow reports itself cancelled: %v", err)
	assert.Equal(t, StatusCancelled, st.Status)
	assert.Equal(t, []string{"RefundPayment", "ReleaseInventory:A"}, compensationNames(st))
	acts.Ledger.mu.Lock()
	defer acts.Ledger.mu.Unlock()
	assert.False(t, acts.Ledger.shipped["42"], "a cancelled order shipped")
}

// A request to cancel that comes while stock is reserved ends the order
// cancelled, and the reservation in flight, which may land, is released.
func TestACancelWhileReservingReleasesTheReservationInFlight(t *testing.T) {
	acts := NewActivities()
	st, err := cancelDuring(t, acts, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(acts.ReserveInventory, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ReserveInput) error {
			env.CancelWorkflow()
			return nil
		})
	})
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "the workflow reports itself cancelled: %v", err)
	assert.Equal(t, StatusCancelled, st.Status)
	assert.Equal(t, []string{"ReleaseInventory:A"}, compensationNames(st))
}

// A reservation whose every attempt failed after the service had reserved
// (each answer lost) may hold stock: the saga releases it with the others.
// (Its release was registered only after a success: the stock stayed held
// on a compensated order.)
func TestAReservationWhoseOutcomeIsUnknownIsReleased(t *testing.T) {
	acts := NewActivities()
	env := newEnv(acts)
	env.OnActivity(acts.ReserveInventory, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ReserveInput) error {
		_ = acts.ReserveInventory(ctx, in)
		if in.Item.SKU == "B" {
			return errors.New("inventory service timed out") // reserved, and the answer lost, every attempt
		}
		return nil
	})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{
			envelope(1, OrderPlaced, placed),
			envelope(2, ItemAdded, `{"sku":"B","qty":3,"amount_cents":50}`),
		}})
	}, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, StatusCompensated, st.Status)
	assert.Equal(t, []string{"ReleaseInventory:B", "ReleaseInventory:A"}, compensationNames(st))
	assert.Zero(t, acts.Ledger.Held("42", "A"))
	assert.Zero(t, acts.Ledger.Held("42", "B"), "stock of B stays held on a compensated order")
}

// A reservation the service refused (out of stock: nothing reserved) has
// nothing to release.
func TestARefusedReservationIsNotReleased(t *testing.T) {
	st, _ := run(t, NewActivities(), []event.Envelope{
		envelope(1, OrderPlaced, placed),
		envelope(2, ItemAdded, `{"sku":"OUT-OF-STOCK","qty":1}`),
	})
	assert.Equal(t, StatusCompensated, st.Status)
	assert.Equal(t, []string{"ReleaseInventory:A"}, compensationNames(st))
}

func compensationNames(st State) []string {
	var names []string
	for _, c := range st.Compensations {
		names = append(names, c.Name)
	}
	return names
}
