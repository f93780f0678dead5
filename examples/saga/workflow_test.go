package saga

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/event"
)

func envelope(offset int64, typ, value string) event.Envelope {
	return event.Envelope{Topic: Topic, Partition: 0, Offset: offset, Key: "42", Type: typ, Value: []byte(value)}
}

// run executes OrderSaga with the batches signalled one after another.
func run(t *testing.T, acts *Activities, batches ...[]event.Envelope) (State, *testsuite.TestWorkflowEnvironment) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(OrderSaga, workflow.RegisterOptions{Name: WorkflowType})
	env.RegisterActivity(acts)
	publishSucceeds(env)
	for i, b := range batches {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(Signal, event.Batch{Events: b})
		}, time.Duration(i+1)*time.Second)
	}
	env.ExecuteWorkflow(WorkflowType)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	return st, env
}

// publishSucceeds stands in for Kafka: outcome publishing is tested end to end.
func publishSucceeds(env *testsuite.TestWorkflowEnvironment) {
	p := &activities.Publisher{}
	env.RegisterActivity(p)
	env.OnActivity(p.Publish, mock.Anything, mock.Anything).Return(nil)
}

const placed = `{"items":[{"sku":"A","qty":1}],"amount_cents":100,"country":"DE"}`

func TestHappyPathWithDuplicatesAppliesEachRecordOnce(t *testing.T) {
	acts := NewActivities()
	st, _ := run(t, acts,
		[]event.Envelope{envelope(1, OrderPlaced, placed)},
		[]event.Envelope{envelope(1, OrderPlaced, placed), envelope(2, ItemAdded, `{"sku":"B","qty":2,"amount_cents":50}`)}, // 1 again
		[]event.Envelope{envelope(2, ItemAdded, `{"sku":"B","qty":2}`), envelope(0, OrderPlaced, placed)},                   // 2 again, 0 is older
		[]event.Envelope{envelope(3, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`)},
	)
	assert.Equal(t, StatusCompleted, st.Status)
	assert.Equal(t, []string{"ReserveInventory:A", "ReserveInventory:B", "ChargePayment", "ShipOrder"}, st.CompletedSteps)
	assert.Equal(t, 3, st.Stats.Deduped)
	assert.Len(t, st.Applied, 3)
	assert.Equal(t, int64(150), st.State.AmountCents)
	assert.Equal(t, 2, acts.Ledger.Held("42", "B"), "reserved once despite the duplicate")
}

func TestShippingFailureCompensatesInReverse(t *testing.T) {
	st, _ := run(t, NewActivities(),
		[]event.Envelope{
			envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":1},{"sku":"B","qty":1}],"country":"XX"}`),
			envelope(2, ItemAdded, `{"sku":"C","qty":1}`),
			envelope(3, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
		})
	assert.Equal(t, StatusCompensated, st.Status)
	var ran []string
	for _, c := range st.Compensations {
		ran = append(ran, c.Name)
	}
	assert.Equal(t, []string{"RefundPayment", "ReleaseInventory:C", "ReleaseInventory:B", "ReleaseInventory:A"}, ran)
	assert.Contains(t, st.LastError, ErrUndeliverable)
}

func TestFailedCompensationIsReportedAndTheRestStillRun(t *testing.T) {
	acts := NewActivities()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(OrderSaga, workflow.RegisterOptions{Name: WorkflowType})
	env.RegisterActivity(acts)
	publishSucceeds(env)
	env.OnActivity(acts.ReleaseInventory, mock.Anything, ReserveInput{OrderID: "42", Item: Item{SKU: "B", Qty: 1}}).
		Return(errors.New("warehouse offline"))
	env.OnActivity(acts.ReleaseInventory, mock.Anything, mock.Anything).Return(nil)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{
			envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":1},{"sku":"B","qty":1},{"sku":"C","qty":1}]}`),
			envelope(2, PaymentFailed, `{"reason":"insufficient_funds"}`),
		}})
	}, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	require.Len(t, st.Compensations, 3)
	assert.Equal(t, "ReleaseInventory:C", st.Compensations[0].Name)
	assert.Empty(t, st.Compensations[0].Error)
	assert.Equal(t, "ReleaseInventory:B", st.Compensations[1].Name)
	assert.Contains(t, st.Compensations[1].Error, "warehouse offline")
	assert.Equal(t, "ReleaseInventory:A", st.Compensations[2].Name, "runs after the failed one")
	assert.Equal(t, StatusCompensated, st.Status)
}

func TestEventsAfterTheFinalOneAreRejectedNotLost(t *testing.T) {
	st, _ := run(t, NewActivities(),
		[]event.Envelope{
			envelope(1, OrderPlaced, placed),
			envelope(2, OrderCancelled, `{"reason":"r"}`),
			envelope(3, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
			envelope(4, "Bogus", `{}`),
		})
	assert.Equal(t, StatusCancelled, st.Status)
	require.Len(t, st.Rejected, 2)
	assert.Equal(t, int64(3), st.Rejected[0].Offset)
	assert.Equal(t, "already cancelled", st.Rejected[0].Reason)
	assert.Len(t, st.Applied, 4)
}

func TestOrdersScenarioWantsAreConsistent(t *testing.T) {
	for _, o := range Orders("x", 20, 1) {
		require.NotEmpty(t, o.Events, o.ID)
		assert.Equal(t, OrderPlaced, o.Events[0].Type)
		if o.Want.Status == StatusCompleted {
			assert.Empty(t, o.Want.Compensations)
		} else {
			assert.NotEmpty(t, o.Want.Compensations, "order %s must undo something", o.ID)
		}
	}
	msgs := Interleave(Orders("x", 20, 1), 3)
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.OrderID]++
	}
	assert.Len(t, seen, 20)
}
