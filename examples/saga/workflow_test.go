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
	env := newEnv(acts)
	return runIn(t, env, batches...), env
}

// runIn is run in env, made by newEnv (and mocked further).
func runIn(t *testing.T, env *testsuite.TestWorkflowEnvironment, batches ...[]event.Envelope) State {
	t.Helper()
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
	return st
}

// newEnv is a test environment with OrderSaga and acts registered and the
// outcome publish mocked.
func newEnv(acts *Activities) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(OrderSaga, workflow.RegisterOptions{Name: WorkflowType})
	env.RegisterActivity(acts)
	publishSucceeds(env)
	return env
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
	env := newEnv(acts)
	env.OnActivity(acts.ReleaseInventory, mock.Anything, ReserveInput{OrderID: "42", Item: Item{SKU: "B", Qty: 1}}).
		Return(temporal.NewNonRetryableApplicationError("warehouse offline for good", "WarehouseClosed", nil))
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
	assert.Equal(t, "arrived after the final status cancelled", st.Rejected[0].Reason)
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

func TestEveryFailurePointCompensatesWhatWasDone(t *testing.T) {
	pay := `{"payment_id":"p","card":"visa"}`
	cases := []struct {
		name          string
		events        []event.Envelope
		status        Status
		lastError     string
		steps         []string
		compensations []string
	}{
		{"out of stock on an added line",
			[]event.Envelope{envelope(1, OrderPlaced, placed), envelope(2, ItemAdded, `{"sku":"OUT-OF-STOCK","qty":1}`)},
			StatusCompensated, ErrOutOfStock + ": ", []string{"ReserveInventory:A"}, []string{"ReleaseInventory:A"}},
		{"out of stock while placing",
			[]event.Envelope{envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":1},{"sku":"OUT-OF-STOCK","qty":1},{"sku":"C","qty":1}]}`)},
			StatusCompensated, ErrOutOfStock + ": ", []string{"ReserveInventory:A"}, []string{"ReleaseInventory:A"}},
		{"card declined",
			[]event.Envelope{envelope(1, OrderPlaced, placed), envelope(2, PaymentAuthorized, `{"payment_id":"p","card":"declined"}`)},
			StatusCompensated, ErrCardDeclined + ": ", []string{"ReserveInventory:A"}, []string{"RefundPayment", "ReleaseInventory:A"}},
		{"undeliverable",
			[]event.Envelope{envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":1}],"country":"XX"}`), envelope(2, PaymentAuthorized, pay)},
			StatusCompensated, ErrUndeliverable + ": ", []string{"ReserveInventory:A", "ChargePayment"}, []string{"RefundPayment", "ReleaseInventory:A"}},
		{"payment failed",
			[]event.Envelope{envelope(1, OrderPlaced, placed), envelope(2, PaymentFailed, `{"reason":"insufficient_funds"}`)},
			StatusCompensated, "payment failed: insufficient_funds", []string{"ReserveInventory:A"}, []string{"ReleaseInventory:A"}},
		{"cancelled by an event",
			[]event.Envelope{envelope(1, OrderPlaced, placed), envelope(2, OrderCancelled, `{"reason":"customer request"}`)},
			StatusCancelled, "cancelled: customer request", []string{"ReserveInventory:A"}, []string{"ReleaseInventory:A"}},
		{"never paid", // the payment deadline fires after 24 h of workflow time
			[]event.Envelope{envelope(1, OrderPlaced, placed)},
			StatusCompensated, "payment not received within 24h0m0s", []string{"ReserveInventory:A"}, []string{"ReleaseInventory:A"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acts := NewActivities()
			st, _ := run(t, acts, tc.events)
			assert.Equal(t, tc.status, st.Status)
			assert.Contains(t, st.LastError, tc.lastError)
			assert.Equal(t, tc.steps, st.CompletedSteps)
			var ran []string
			for _, c := range st.Compensations {
				assert.Empty(t, c.Error)
				ran = append(ran, c.Name)
			}
			assert.Equal(t, tc.compensations, ran)
			assert.Empty(t, st.PendingCompensations)
			assert.Empty(t, st.CurrentStep)
			assert.Zero(t, acts.Ledger.Held("42", "A"), "A was released")
		})
	}
}

func TestRecordsOutOfStatusAreRejectedWithTheReason(t *testing.T) {
	st, _ := run(t, NewActivities(),
		[]event.Envelope{
			envelope(2, OrderPlaced, placed),
			envelope(3, OrderPlaced, placed),                   // placed twice (a new offset: not a redelivery)
			envelope(4, PaymentAuthorized, `{"payment_id":7}`), // valid JSON of the wrong shape
			envelope(5, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
		})
	assert.Equal(t, StatusCompleted, st.Status)
	require.Len(t, st.Rejected, 2)
	assert.Equal(t, "OrderPlaced needs status new, order is open", st.Rejected[0].Reason)
	assert.Contains(t, st.Rejected[1].Reason, "decode PaymentAuthorized event at orders/0@4")
	assert.Equal(t, []string{"ReserveInventory:A", "ChargePayment", "ShipOrder"}, st.CompletedSteps)
}

// Records that come before their order's OrderPlaced (another producer's,
// on the same partition) wait for it: they were rejected, and the order
// shipped without the line added first, charged for the rest.
func TestRecordsBeforeTheOrderIsPlacedWaitForIt(t *testing.T) {
	acts := NewActivities()
	st, _ := run(t, acts,
		[]event.Envelope{
			envelope(1, ItemAdded, `{"sku":"B","qty":1,"amount_cents":50}`),
			envelope(2, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
		},
		[]event.Envelope{envelope(3, OrderPlaced, placed)})
	assert.Equal(t, StatusCompleted, st.Status)
	assert.Empty(t, st.Rejected)
	assert.Empty(t, st.Held)
	assert.Equal(t, int64(150), st.State.AmountCents)
	assert.Equal(t, []string{"ReserveInventory:A", "ReserveInventory:B", "ChargePayment", "ShipOrder"}, st.CompletedSteps)
}

// An order recorded before its records waited for OrderPlaced rejected
// them, and replays so.
func TestAnOrderRecordedBeforeRecordsWaitedRejectsThem(t *testing.T) {
	env := newEnv(NewActivities())
	env.OnGetVersion("saga.hold-before-placed", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	st := runIn(t, env, []event.Envelope{
		envelope(1, ItemAdded, `{"sku":"B","qty":1,"amount_cents":50}`), envelope(2, OrderPlaced, placed),
		envelope(3, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
	})
	require.Len(t, st.Rejected, 1)
	assert.Equal(t, "ItemAdded needs status open, order is new", st.Rejected[0].Reason)
}

// update sends the cancel update at the given workflow time and records
// how it ended.
type updateOutcome struct {
	rejected error
	result   CancelResult
	err      error
}

func sendCancel(env *testsuite.TestWorkflowEnvironment, at time.Duration, id string, in CancelRequest) *updateOutcome {
	out := &updateOutcome{}
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateCancel, id, &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { out.rejected = err },
			OnComplete: func(v any, err error) {
				out.err = err
				if r, ok := v.(CancelResult); ok {
					out.result = r
				}
			},
		}, in)
	}, at)
	return out
}

func TestCancelUpdateUndoesTheReservationsAndAnswers(t *testing.T) {
	acts := NewActivities()
	env := newEnv(acts)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{
			envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":1},{"sku":"B","qty":1}]}`),
		}})
	}, time.Second)
	noReason := sendCancel(env, 2*time.Second, "u1", CancelRequest{})
	cancel := sendCancel(env, 3*time.Second, "u2", CancelRequest{Reason: "customer called"})
	env.ExecuteWorkflow(WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))

	require.Error(t, noReason.rejected)
	assert.Contains(t, noReason.rejected.Error(), "reason is required")
	require.NoError(t, cancel.rejected)
	require.NoError(t, cancel.err)
	assert.Equal(t, StatusCancelled, cancel.result.Status)
	assert.Equal(t, "cancelled: customer called", cancel.result.LastError)
	assert.Len(t, cancel.result.Compensations, 2)
	assert.Equal(t, StatusCancelled, st.Status)
	assert.Equal(t, []string{"ReleaseInventory:B", "ReleaseInventory:A"}, []string{st.Compensations[0].Name, st.Compensations[1].Name})
	assert.Equal(t, 1, st.Stats.Updates)
}

func TestCancelUpdateOfAShippedOrderIsRejected(t *testing.T) {
	env := newEnv(NewActivities())
	// The order is charging when the cancel arrives: the validator sees
	// status open but the update runs after the payment, when the order is
	// completed and the runtime refuses it; an update that arrives later is
	// rejected by the validator outright.
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{envelope(1, OrderPlaced, placed)}})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{envelope(2, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`)}})
	}, 2*time.Second)
	late := sendCancel(env, 2*time.Second, "u1", CancelRequest{Reason: "too late"})
	env.ExecuteWorkflow(WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, StatusCompleted, st.Status)
	refused := late.rejected
	if refused == nil {
		refused = late.err
	}
	require.Error(t, refused, "a cancel must not undo a shipped order")
	assert.Contains(t, refused.Error(), "completed")
	assert.Zero(t, st.Stats.Updates)
}

// A charge that went through and whose answer was lost (the activity timed
// out, every retry too) must still be refunded: the refund is registered
// before the charge, as samples-go's saga does.
func TestAChargeThatWentThroughAndTimedOutIsRefunded(t *testing.T) {
	acts := NewActivities()
	env := newEnv(acts)
	env.OnActivity(acts.ChargePayment, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ChargeInput) error {
		acts.Ledger.mu.Lock()
		acts.Ledger.charged[in.OrderID] = in.AmountCents // the gateway took the money...
		acts.Ledger.mu.Unlock()
		return errors.New("payment gateway timed out") // ...and the answer was lost
	})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(Signal, event.Batch{Events: []event.Envelope{
			envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":1}],"amount_cents":500}`),
			envelope(2, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
		}})
	}, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, StatusCompensated, st.Status)
	acts.Ledger.mu.Lock()
	defer acts.Ledger.mu.Unlock()
	assert.Empty(t, acts.Ledger.charged, "the lost charge was refunded")
}

// An event with a negative amount, a quantity below 1 or no SKU is
// rejected, naming the field, and changes nothing. (A negative amount
// lowered what was charged, and a negative quantity held negative stock.)
func TestEventsWithImpossibleAmountsAreRejected(t *testing.T) {
	acts := NewActivities()
	st, _ := run(t, acts, []event.Envelope{
		envelope(1, OrderPlaced, `{"items":[{"sku":"A","qty":1},{"sku":"B","qty":0}],"amount_cents":100,"country":"DE"}`),
		envelope(2, OrderPlaced, placed),
		envelope(3, ItemAdded, `{"sku":"B","qty":-5,"amount_cents":10}`),
		envelope(4, ItemAdded, `{"sku":"C","qty":1,"amount_cents":-1000}`),
		envelope(5, ItemAdded, `{"qty":1,"amount_cents":10}`),
		envelope(6, ItemAdded, `{"sku":"D","qty":1,"amount_cents":9223372036854775807}`),
		envelope(7, PaymentAuthorized, `{"payment_id":"p","card":"visa"}`),
	})
	assert.Equal(t, StatusCompleted, st.Status)
	var reasons []string
	for _, r := range st.Rejected {
		reasons = append(reasons, r.Reason)
	}
	assert.Equal(t, []string{
		"OrderPlaced: items[1].qty is 0: it must be at least 1",
		"ItemAdded: qty is -5: it must be at least 1",
		"ItemAdded: amount_cents is -1000: it must not be negative",
		"ItemAdded: sku is empty",
		"ItemAdded: amount_cents 9223372036854775807 would take the order's total past 9223372036854775807",
	}, reasons)
	assert.Equal(t, int64(100), st.State.AmountCents)
	cents, _ := acts.Ledger.Charged("42")
	assert.Equal(t, int64(100), cents)
	assert.Zero(t, acts.Ledger.Held("42", "B"))
}
