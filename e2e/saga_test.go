package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/workflows"
)

// positions turns a state's applied list into positions.
func positions(applied []workflows.AppliedEvent) []event.Position {
	out := make([]event.Position, len(applied))
	for i, a := range applied {
		out[i] = event.Position{Topic: a.Topic, Partition: a.Partition, Offset: a.Offset}
	}
	return out
}

// assertOutcome checks one finished order against what the scenario wants
// and against where its events landed in Kafka: every record applied, once,
// in offset order.
func assertOutcome(t *testing.T, o saga.Order, st saga.State, at []event.Position) {
	t.Helper()
	assert.Equal(t, o.Want.Status, st.Status, "order %s status (last error %q)", o.ID, st.LastError)
	assert.Equal(t, o.Want.CompletedSteps, st.CompletedSteps, "order %s steps", o.ID)
	compensations := make([]string, 0, len(st.Compensations))
	for _, c := range st.Compensations {
		assert.Empty(t, c.Error, "order %s compensation %s", o.ID, c.Name)
		compensations = append(compensations, c.Name)
	}
	assert.Equal(t, o.Want.Compensations, compensations, "order %s compensations, in the order they ran", o.ID)
	assert.Equal(t, at, positions(st.Applied), "order %s: applied records must be exactly the produced ones, in offset order", o.ID)
	assert.Zero(t, st.Stats.Deduped, "order %s: the bridge delivered a record twice", o.ID)
}

func TestSagasReachTheirExpectedState(t *testing.T) {
	e := newEnv(t, 4)
	orders := saga.Orders(e.id+"-", 40, 1)
	at := e.produce(orders)
	_, stop := e.runBridge(e.topic)
	defer stop()

	recorded := map[saga.Status]bool{}
	for _, o := range orders {
		st := e.result(o.ID, 90*time.Second)
		assertOutcome(t, o, st, at[o.ID])
		if !recorded[st.Status] { // one history per final status, for the replay tests
			recorded[st.Status] = true
			recordHistory(t, "saga", "order-"+string(st.Status), saga.WorkflowID(o.ID), "")
		}
	}
	// Each order published exactly one outcome, with a deterministic ID.
	mine := func(m *sarama.ConsumerMessage) bool { return strings.HasPrefix(string(m.Key), e.id+"-") }
	outcomes := readWhere(t, saga.OutcomeTopic, len(orders), 30*time.Second, mine)
	assert.Len(t, outcomes, len(orders))
	byOrder := map[string]*sarama.ConsumerMessage{}
	for _, m := range outcomes {
		byOrder[string(m.Key)] = m
	}
	wantType := map[saga.Status]string{saga.StatusCompleted: "OrderCompleted", saga.StatusCompensated: "OrderCompensated", saga.StatusCancelled: "OrderCancelled"}
	for _, o := range orders {
		m := byOrder[o.ID]
		if assert.NotNil(t, m, "order %s published no outcome", o.ID) {
			assert.Equal(t, wantType[o.Want.Status], headerOf(m, activities.HeaderEventType))
			assert.True(t, strings.HasPrefix(headerOf(m, activities.HeaderEventID), saga.WorkflowID(o.ID)+"/"), "event ID %q", headerOf(m, activities.HeaderEventID))
		}
	}
	// Every compensated order released exactly what it reserved.
	for _, o := range orders {
		if o.Want.Status != saga.StatusCompleted {
			for _, c := range o.Want.Compensations {
				if sku, ok := cutPrefix(c, "ReleaseInventory:"); ok {
					assert.Zero(t, e.acts.Ledger.Held(o.ID, sku), "order %s still holds %s", o.ID, sku)
				}
			}
		}
	}
}

func TestCompensationRunsInReverseOnPaymentFailure(t *testing.T) {
	e := newEnv(t, 1)
	order := saga.Order{ID: e.id + "-pay"}
	// Three reservations, then a failed payment: releases run newest first.
	all := saga.Orders(e.id+"-", 10, 3)
	order.Events = all[6].Events // kind 6: PaymentFailed after its reservations
	order.Want = all[6].Want
	require.GreaterOrEqual(t, len(order.Want.Compensations), 2, "the scenario must reserve at least two lines")
	at := e.produce([]saga.Order{order})
	_, stop := e.runBridge(e.topic)
	defer stop()

	st := e.result(order.ID, 60*time.Second)
	assertOutcome(t, order, st, at[order.ID])
	assert.Equal(t, "payment failed: insufficient_funds", st.LastError)
}

func TestPoisonRecordsGoToTheDLQAndThePartitionMovesOn(t *testing.T) {
	e := newEnv(t, 1)
	orders := saga.Orders(e.id+"-", 1, 5) // one order that completes
	o := orders[0]
	send := func(key, typ string, value []byte) (int32, int64) {
		msg := &sarama.ProducerMessage{Topic: e.topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)}
		if typ != "" {
			msg.Headers = []sarama.RecordHeader{{Key: []byte(saga.TypeHeader), Value: []byte(typ)}}
		}
		p, off, err := e.producer.SendMessage(msg)
		require.NoError(t, err)
		return p, off
	}
	var at []event.Position
	p, off := send(o.ID, o.Events[0].Type, o.Events[0].Value)
	at = append(at, event.Position{Topic: e.topic, Partition: p, Offset: off})
	_, badJSON := send(o.ID, saga.ItemAdded, []byte(`{"sku": "A1", `))
	_, noType := send(o.ID, "", []byte(`{"sku":"A1"}`))
	_, noKey := send("", saga.ItemAdded, []byte(`{"sku":"A1"}`))
	for _, ev := range o.Events[1:] {
		p, off := send(o.ID, ev.Type, ev.Value)
		at = append(at, event.Position{Topic: e.topic, Partition: p, Offset: off})
	}
	_, stop := e.runBridge(e.topic)
	defer stop()

	st := e.result(o.ID, 60*time.Second)
	assertOutcome(t, o, st, at)

	got := readAll(t, dlq.TopicFor(e.topic, dlq.DefaultSuffix), 3, 30*time.Second)
	require.Len(t, got, 3, "exactly the three poison records are dead-lettered")
	want := map[int64]dlq.Class{badJSON: dlq.ClassDecode, noType: dlq.ClassRoute, noKey: dlq.ClassRoute}
	for _, m := range got {
		f, err := dlq.Parse(m)
		require.NoError(t, err)
		assert.Equal(t, e.topic, f.Topic)
		assert.Equal(t, int32(0), f.Partition)
		assert.Equal(t, want[f.Offset], f.Class, "record at offset %d", f.Offset)
		assert.NotEmpty(t, f.Err)
		assert.WithinDuration(t, time.Now(), f.FailedAt, time.Minute)
		if f.Offset == badJSON {
			assert.Equal(t, `{"sku": "A1", `, string(f.Value), "original bytes kept")
			assert.Equal(t, o.ID, string(f.Key), "original key kept")
			assert.Equal(t, saga.ItemAdded, headerOf(m, saga.TypeHeader), "original headers kept")
			assert.Equal(t, strconv.FormatInt(badJSON, 10), headerOf(m, dlq.HeaderOffset))
		}
	}
}

func TestStateQueryThroughTheTemporalCLI(t *testing.T) {
	e := newEnv(t, 2)
	orders := saga.Orders(e.id+"-", 10, 9)
	at := e.produce(orders)
	_, stop := e.runBridge(e.topic)
	defer stop()
	o := orders[8] // ships to XX: refund then releases
	e.result(o.ID, 60*time.Second)

	st, err := queryState(t, o.ID)
	require.NoError(t, err)
	assertOutcome(t, o, st, at[o.ID])
	assert.Equal(t, workflows.ContractVersion, st.Version)
	assert.Contains(t, st.LastError, saga.ErrUndeliverable)
}

func TestRedeliveryToAClosedWorkflowStartsNothingAndDeadLettersNothing(t *testing.T) {
	e := newEnv(t, 2)
	orders := saga.Orders(e.id+"-", 10, 11)
	at := e.produce(orders)
	_, stop := e.runBridge(e.topic + "-first")
	runs := map[string]string{}
	total := 0
	for _, o := range orders {
		st := e.result(o.ID, 60*time.Second)
		assertOutcome(t, o, st, at[o.ID])
		desc, err := e.tc.DescribeWorkflowExecution(t.Context(), "order-"+o.ID, "")
		require.NoError(t, err)
		runs[o.ID] = desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
		total += len(o.Events)
	}
	stop()

	// A second group reads the whole topic again: every record is a
	// redelivery to a closed workflow.
	b, stop2 := e.runBridge(e.topic + "-second")
	require.Eventually(t, func() bool { return b.Stats().ClosedRedeliveries == uint64(total) }, 60*time.Second, 100*time.Millisecond,
		"redeliveries seen: %d of %d", b.Stats().ClosedRedeliveries, total)
	stop2()
	assert.Zero(t, b.Stats().DeadLettered)
	assert.Zero(t, b.Stats().Delivered)
	for _, o := range orders {
		desc, err := e.tc.DescribeWorkflowExecution(t.Context(), "order-"+o.ID, "")
		require.NoError(t, err)
		assert.Equal(t, runs[o.ID], desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), "order %s got a new run", o.ID)
	}
	// The bridge has stopped: the DLQ's end offset is final (a read of a
	// second found nothing also when the consumer had not fetched yet).
	assert.Zero(t, endOffsets(t, dlq.TopicFor(e.topic, dlq.DefaultSuffix)), "records were dead-lettered")
}

func headerOf(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return "", false
}

func TestNewRecordForAClosedWorkflowGoesToTheDLQ(t *testing.T) {
	e := newEnv(t, 1)
	orders := saga.Orders(e.id+"-", 1, 13)
	at := e.produce(orders)
	b, stop := e.runBridge(e.topic)
	defer stop()
	o := orders[0]
	assertOutcome(t, o, e.result(o.ID, 60*time.Second), at[o.ID])

	late := []saga.Message{{OrderID: o.ID, Event: saga.Event{Type: saga.OrderCancelled, Value: []byte(`{"reason":"too late"}`)}}}
	lateAt, err := saga.Produce(e.producer, e.topic, late)
	require.NoError(t, err)

	got := readAll(t, dlq.TopicFor(e.topic, dlq.DefaultSuffix), 1, 30*time.Second)
	require.Len(t, got, 1)
	f, err := dlq.Parse(got[0])
	require.NoError(t, err)
	assert.Equal(t, dlq.ClassWorkflowClosed, f.Class)
	assert.Equal(t, saga.WorkflowID(o.ID), f.WorkflowID)
	assert.Equal(t, lateAt[o.ID][0].Offset, f.Offset)
	assert.Equal(t, `{"reason":"too late"}`, string(f.Value))
	assert.Equal(t, uint64(1), b.Stats().DeadLettered)
}

// A terminated workflow recorded no watermarks, so the bridge cannot tell
// a redelivery from a new record: it says so in a counter and treats the
// records as new, under on_closed_workflow (here the DLQ), never silently.
func TestRecordsForATerminatedWorkflowAreCountedAndFollowThePolicy(t *testing.T) {
	e := newEnv(t, 1)
	o := saga.Orders(e.id+"-", 1, 17)[0]
	o.Events = o.Events[:1] // placed; the saga waits for the payment
	at := e.produce([]saga.Order{o})
	_, stop := e.runBridge(e.topic + "-first")
	require.Eventually(t, func() bool {
		st, err := queryState(t, o.ID)
		return err == nil && st.Stats.Applied == 1
	}, 60*time.Second, 200*time.Millisecond)
	stop()
	require.NoError(t, e.tc.TerminateWorkflow(t.Context(), saga.WorkflowID(o.ID), "", "operator"))

	// A second group reads the topic again: the record is a redelivery,
	// but nothing recorded says so.
	b, stop2 := e.runBridge(e.topic + "-second")
	defer stop2()
	got := readAll(t, dlq.TopicFor(e.topic, dlq.DefaultSuffix), 1, 30*time.Second)
	require.Len(t, got, 1)
	f, err := dlq.Parse(got[0])
	require.NoError(t, err)
	assert.Equal(t, dlq.ClassWorkflowClosed, f.Class)
	assert.Equal(t, at[o.ID][0].Offset, f.Offset)
	assert.Equal(t, uint64(1), b.Stats().ClosedWithoutMemo)
	assert.Zero(t, b.Stats().ClosedRedeliveries)
}

// temporalCLI runs the real Temporal CLI against the stack's server,
// killed after a minute: the CLI sets no deadline of its own, and one
// blocked on a wedged server held the whole suite until go test's timeout.
func temporalCLI(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	args = append(args, "--address", stack.Temporal.Address)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, stack.Temporal.Bin, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("temporal %s: no answer within a minute: %w", strings.Join(args, " "), err)
	}
	return out, err
}

// listByStatus lists, through the CLI, the order workflows of this test
// (IDs starting with prefix) whose SagaStatus search attribute is status.
func listByStatus(t *testing.T, prefix string, status saga.Status) []string {
	t.Helper()
	return listWorkflows(t, fmt.Sprintf(`WorkflowType=%q AND %s=%q AND WorkflowId STARTS_WITH %q`,
		saga.WorkflowType, saga.StatusSearchAttribute, status, prefix))
}

// listWorkflows runs `temporal workflow list --query query` and returns the
// workflow IDs it lists (one per run), sorted.
func listWorkflows(t *testing.T, query string) []string {
	t.Helper()
	out, err := temporalCLI(t, "workflow", "list", "--query", query, "--output", "json")
	require.NoError(t, err, "temporal workflow list: %s", out)
	var rows []struct {
		Execution struct {
			WorkflowID string `json:"workflowId"`
		} `json:"execution"`
	}
	require.NoError(t, json.Unmarshal(out, &rows), "CLI output: %s", out)
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		ids = append(ids, r.Execution.WorkflowID)
	}
	slices.Sort(ids)
	return ids
}

// queryState asks the order's workflow for its state through the CLI.
func queryState(t *testing.T, orderID string) (saga.State, error) {
	t.Helper()
	return queryWorkflowState[saga.State](t, saga.WorkflowID(orderID))
}

// queryWorkflowState runs `temporal workflow query --type state` on the
// workflow's latest run and decodes the answer.
func queryWorkflowState[S any](t *testing.T, workflowID string) (S, error) {
	t.Helper()
	var none S
	out, err := temporalCLI(t, "workflow", "query", "--workflow-id", workflowID, "--type", "state", "--output", "json")
	if err != nil {
		return none, fmt.Errorf("temporal workflow query: %w: %s", err, out)
	}
	var resp struct {
		QueryResult []S `json:"queryResult"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.QueryResult) != 1 {
		return none, fmt.Errorf("CLI output %s: %v", out, err)
	}
	return resp.QueryResult[0], nil
}

func TestListSagasByStatusThroughTheTemporalCLI(t *testing.T) {
	e := newEnv(t, 2)
	orders := saga.Orders(e.id+"-", 20, 17)
	at := e.produce(orders)
	_, stop := e.runBridge(e.topic)
	defer stop()
	want := map[saga.Status][]string{}
	for _, o := range orders {
		assertOutcome(t, o, e.result(o.ID, 60*time.Second), at[o.ID])
		want[o.Want.Status] = append(want[o.Want.Status], saga.WorkflowID(o.ID))
	}
	require.Len(t, want, 3, "the scenario has completed, compensated and cancelled orders")
	for status, ids := range want {
		slices.Sort(ids)
		var got []string
		require.Eventually(t, func() bool { // visibility is eventually consistent
			got = listByStatus(t, saga.WorkflowID(e.id+"-"), status)
			return slices.Equal(ids, got)
		}, 30*time.Second, 250*time.Millisecond, "status %s: want %v, listed %v", status, ids, got)
	}
	assert.Empty(t, listByStatus(t, saga.WorkflowID(e.id+"-"), saga.StatusOpen))
}

func TestCancelAnOpenOrderWithAnUpdateThroughTheTemporalCLI(t *testing.T) {
	e := newEnv(t, 1)
	o := saga.Orders(e.id+"-", 1, 19)[0] // kind 0: pays last
	require.Equal(t, saga.PaymentAuthorized, o.Events[len(o.Events)-1].Type)
	unpaid := saga.Order{ID: o.ID, Events: o.Events[:len(o.Events)-1]}
	e.produce([]saga.Order{unpaid})
	_, stop := e.runBridge(e.topic)
	defer stop()

	// The order waits for payment, with its deadline running.
	reserved := len(o.Want.CompletedSteps) - 2 // all but ChargePayment and ShipOrder
	var st saga.State
	require.Eventually(t, func() bool {
		var err error
		st, err = queryState(t, o.ID)
		return err == nil && len(st.CompletedSteps) == reserved
	}, 60*time.Second, 250*time.Millisecond, "state: %+v", st)
	assert.Equal(t, saga.StatusOpen, st.Status)
	assert.Equal(t, saga.StepAwaitPayment, st.CurrentStep)
	require.Len(t, st.Timeouts, 1)
	assert.Equal(t, saga.TimeoutPayment, st.Timeouts[0].Name)
	assert.Len(t, st.PendingCompensations, reserved)
	require.Eventually(t, func() bool {
		return slices.Equal([]string{saga.WorkflowID(o.ID)}, listByStatus(t, saga.WorkflowID(e.id+"-"), saga.StatusOpen))
	}, 30*time.Second, 250*time.Millisecond)

	update := func(updateID, input string) ([]byte, error) {
		return temporalCLI(t, "workflow", "update", "execute", "--workflow-id", saga.WorkflowID(o.ID),
			"--name", saga.UpdateCancel, "--update-id", updateID, "--input", input, "--output", "json")
	}
	out, err := update("no-reason", `{}`)
	require.Error(t, err, "the validator must reject a cancel without a reason: %s", out)
	assert.Contains(t, string(out), "reason is required")

	out, err = update("cancel-1", `{"reason":"customer called"}`)
	require.NoError(t, err, "temporal workflow update execute: %s", out)
	var resp struct {
		Result saga.CancelResult `json:"result"`
	}
	require.NoError(t, json.Unmarshal(out, &resp), "CLI output: %s", out)
	assert.Equal(t, saga.StatusCancelled, resp.Result.Status)
	assert.Equal(t, "cancelled: customer called", resp.Result.LastError)
	compensations := make([]string, 0, len(resp.Result.Compensations))
	for _, c := range resp.Result.Compensations {
		assert.Empty(t, c.Error, c.Name)
		compensations = append(compensations, c.Name)
	}
	var releases []string // each reservation's release, newest first
	for i := reserved - 1; i >= 0; i-- {
		releases = append(releases, "ReleaseInventory:"+strings.TrimPrefix(o.Want.CompletedSteps[i], "ReserveInventory:"))
	}
	assert.Equal(t, releases, compensations)

	final := e.result(o.ID, 30*time.Second)
	recordHistory(t, "saga", "order-cancelled-by-update", saga.WorkflowID(o.ID), "")
	assert.Equal(t, saga.StatusCancelled, final.Status)
	assert.Equal(t, 1, final.Stats.Updates)
	for _, step := range final.CompletedSteps {
		sku := strings.TrimPrefix(step, "ReserveInventory:")
		assert.Zero(t, e.acts.Ledger.Held(o.ID, sku), "order %s still holds %s", o.ID, sku)
	}
	require.Eventually(t, func() bool {
		return slices.Equal([]string{saga.WorkflowID(o.ID)}, listByStatus(t, saga.WorkflowID(e.id+"-"), saga.StatusCancelled))
	}, 30*time.Second, 250*time.Millisecond)
}

// A request to cancel an order (temporal workflow cancel) that comes while
// its payment is captured waits for the capture to land, then refunds it
// and releases the stock: the order ends cancelled with nothing charged.
// (The SDK gave up on the capture at once: the refund ran before it landed,
// and the customer stayed charged on an order that ended compensated.)
func TestACancelWhileChargingRefundsTheChargeAfterItLands(t *testing.T) {
	e := newEnv(t, 1)
	id := e.id + "-slow"
	st := cancelWhileSlow(t, e, id, saga.OrderPlacedEvent{Items: []saga.Item{{SKU: "A", Qty: 1}}, AmountCents: 100, Country: "DE"}, saga.CardSlow,
		func() bool { _, n := e.acts.Ledger.Charged(id); return n == 1 })
	cents, _ := e.acts.Ledger.Charged(id)
	assert.Zero(t, cents, "the customer stays charged on a cancelled order")
	assert.Zero(t, e.acts.Ledger.Held(id, "A"))
	assert.Equal(t, []string{"RefundPayment", "ReleaseInventory:A"}, compensationNames(st.Compensations))
}

// A request to cancel that comes while stock is reserved waits for the
// reservation to land, then releases it. (The releases ran at once, and the
// reservation landed after them: the stock stayed held.)
func TestACancelWhileReservingReleasesTheReservationAfterItLands(t *testing.T) {
	e := newEnv(t, 1)
	id := e.id + "-slow"
	st := cancelWhileSlow(t, e, id, saga.OrderPlacedEvent{Items: []saga.Item{{SKU: "A", Qty: 1}, {SKU: saga.SKUSlow, Qty: 2}}, AmountCents: 100, Country: "DE"}, "visa",
		func() bool { return e.acts.Ledger.Reserved(id) == 2 })
	assert.Zero(t, e.acts.Ledger.Held(id, saga.SKUSlow), "stock stays held on a cancelled order")
	assert.Zero(t, e.acts.Ledger.Held(id, "A"))
	cents, _ := e.acts.Ledger.Charged(id)
	assert.Zero(t, cents, "a cancelled order was charged")
	assert.Equal(t, []string{"ReleaseInventory:" + saga.SKUSlow, "ReleaseInventory:A"}, compensationNames(st.Compensations))
}

// cancelWhileSlow places order id (placed, then its payment with card),
// cancels its workflow through the CLI while a slow step of the simulated
// services runs (Ledger.Capturing), waits for the workflow to close
// cancelled and for landed to hold (the slow step's effect has landed),
// and returns the final state.
func cancelWhileSlow(t *testing.T, e *env, id string, placed saga.OrderPlacedEvent, card string, landed func() bool) saga.State {
	t.Helper()
	placedJSON, err := json.Marshal(placed)
	require.NoError(t, err)
	paid, err := json.Marshal(saga.PaymentAuthorizedEvent{PaymentID: "pay-" + id, Card: card})
	require.NoError(t, err)
	e.produce([]saga.Order{{ID: id, Events: []saga.Event{{Type: saga.OrderPlaced, Value: placedJSON}, {Type: saga.PaymentAuthorized, Value: paid}}}})
	_, stop := e.runBridge(e.topic)
	defer stop()

	require.Eventually(t, func() bool { return e.acts.Ledger.Capturing(id) }, 60*time.Second, 10*time.Millisecond, "the slow step never started")
	out, err := temporalCLI(t, "workflow", "cancel", "--workflow-id", saga.WorkflowID(id))
	require.NoError(t, err, "temporal workflow cancel: %s", out)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = e.tc.GetWorkflow(ctx, saga.WorkflowID(id), "").Get(ctx, nil)
	var canceled *temporal.CanceledError
	require.ErrorAs(t, err, &canceled, "the order's workflow reports itself cancelled")
	require.Eventually(t, landed, 30*time.Second, 10*time.Millisecond, "the slow step never landed")
	st, err := queryState(t, id)
	require.NoError(t, err)
	assert.Equal(t, saga.StatusCancelled, st.Status)
	return st
}
