package saga

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/sagabridge/sagabridge/event"
)

// runOrder runs an order of one line (sku A) to its authorized payment,
// with acts' mocks set by mocks, and returns its final state.
func runOrder(t *testing.T, acts *Activities, placed string, mocks func(env *testsuite.TestWorkflowEnvironment)) State {
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
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	return st
}

// A refund that fails for a while (the payment service down longer than a
// few retries) is retried until it goes through: a saga that compensates
// must not leave the customer charged. (The compensations gave up after 5
// attempts, about 15 s; the saga still ended "compensated", with the
// customer charged.)
func TestARefundIsRetriedUntilItGoesThrough(t *testing.T) {
	acts := NewActivities()
	failures := 0
	st := runOrder(t, acts, `{"items":[{"sku":"A","qty":1}],"amount_cents":100,"country":"XX"}`, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(acts.RefundPayment, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ChargeInput) error {
			if failures++; failures <= 8 {
				return errors.New("payment service unavailable")
			}
			return acts.RefundPayment(ctx, in)
		})
	})
	assert.Equal(t, StatusCompensated, st.Status)
	for _, c := range st.Compensations {
		assert.Empty(t, c.Error, "%s gave up", c.Name)
	}
	acts.Ledger.mu.Lock()
	defer acts.Ledger.mu.Unlock()
	assert.Empty(t, acts.Ledger.charged, "the customer was refunded")
}

// A shipment whose answer was lost, and whose retries then meet a carrier
// outage, is retried until the carrier answers: the goods may have gone,
// so the order must not be refunded and its stock released. Only the
// carrier's "undeliverable" compensates. (After 5 attempts the saga
// refunded and released an order that had shipped.)
func TestAShipmentThatMayHaveGoneIsNotCompensated(t *testing.T) {
	acts := NewActivities()
	calls := 0
	st := runOrder(t, acts, `{"items":[{"sku":"A","qty":1}],"amount_cents":100,"country":"DE"}`, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(acts.ShipOrder, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ShipInput) error {
			calls++
			switch {
			case calls == 1:
				_ = acts.ShipOrder(ctx, in)              // it shipped...
				return errors.New("carrier API timeout") // ...and the answer was lost
			case calls <= 8:
				return errors.New("carrier API down")
			}
			return acts.ShipOrder(ctx, in)
		})
	})
	assert.Equal(t, StatusCompleted, st.Status)
	acts.Ledger.mu.Lock()
	defer acts.Ledger.mu.Unlock()
	assert.True(t, acts.Ledger.shipped["42"])
	assert.Equal(t, int64(100), acts.Ledger.charged["42"], "a shipped order is not refunded")
}

// A reservation retried after its answer was lost reserves once: the
// release that undoes it then leaves nothing held. (Each attempt added the
// quantity again, and a compensated order kept stock held.)
func TestAReservationRetriedAfterALostAnswerReservesOnce(t *testing.T) {
	acts := NewActivities()
	calls := 0
	env := newEnv(acts)
	env.OnActivity(acts.ReserveInventory, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ReserveInput) error {
		calls++
		err := acts.ReserveInventory(ctx, in)
		if calls == 1 {
			return errors.New("inventory service timed out") // it reserved, the answer was lost
		}
		return err
	})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{
			envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":2}],"amount_cents":100}`),
			envelope(2, PaymentFailed, `{"reason":"insufficient_funds"}`),
		}})
	}, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, StatusCompensated, st.Status)
	assert.Equal(t, 2, calls, "the reservation was retried")
	assert.Zero(t, acts.Ledger.Held("42", "A"), "stock held after the order was compensated")
}

// While the undos run (here a refund retried while the payment service is
// down), the state query shows the status Fail set and the undos still to
// finish. (It showed the order "open", awaiting payment, with nothing
// pending and nothing compensated, for as long as the refund failed.)
func TestTheStateQueryShowsCompensationsWhileTheyRun(t *testing.T) {
	acts := NewActivities()
	env := newEnv(acts)
	failures := 0
	env.OnActivity(acts.RefundPayment, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ChargeInput) error {
		if failures++; failures <= 8 {
			return errors.New("payment service unavailable")
		}
		return acts.RefundPayment(ctx, in)
	})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{
			envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":1}],"amount_cents":100,"country":"XX"}`),
			envelope(2, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
		}})
	}, time.Second)
	var mid State
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryState)
		require.NoError(t, err)
		require.NoError(t, v.Get(&mid))
	}, 20*time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	require.Less(t, 0, failures)
	assert.Equal(t, StatusCompensated, mid.Status, "the order is being refunded")
	assert.Contains(t, mid.LastError, "Undeliverable")
	var pending []string
	for _, u := range mid.PendingCompensations {
		pending = append(pending, u.Name)
	}
	assert.Equal(t, []string{"ReleaseInventory:A", "RefundPayment"}, pending, "the undos still to finish")
	var final State
	require.NoError(t, env.GetWorkflowResult(&final))
	assert.Empty(t, final.PendingCompensations)
	assert.Equal(t, []string{"RefundPayment", "ReleaseInventory:A"}, compensationNames(final))
}
