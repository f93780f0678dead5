package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities/contract"
	"github.com/sagabridge/sagabridge/event"
)

// The test saga: "Reserve" holds an item (undo: release it), "Pay"
// completes or fails the saga, "Boom" always errs; the first reservation
// starts a one-hour payment timeout; the "cancel" update cancels.

type cart struct {
	Items []string `json:"items"`
}

type reserveEvent struct {
	Item string `json:"item"`
}

type payEvent struct {
	OK bool `json:"ok"`
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

const payDue = time.Hour

// world is the test's services: it records what the activities did.
type world struct {
	mu          sync.Mutex
	held        []string
	released    []string
	failRelease map[string]bool
	deadLetters []contract.DeadLetterInput
	// dlqDown fails that many DeadLetter attempts more, as a DLQ the
	// worker may not write to (a missing ACL) does.
	dlqDown int
	// unregistered fails that many DeadLetter attempts more as a worker
	// without the activity does (ActivityNotRegisteredError).
	unregistered int
}

func (w *world) hold(_ context.Context, item string) error {
	if item == "bad" {
		return temporal.NewNonRetryableApplicationError("no stock for "+item, "OutOfStock", nil)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held = append(w.held, item)
	return nil
}

func (w *world) release(_ context.Context, item string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failRelease[item] {
		return fmt.Errorf("cannot release %s", item)
	}
	w.released = append(w.released, item)
	return nil
}

func (w *world) deadLetter(_ context.Context, in contract.DeadLetterInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unregistered > 0 {
		w.unregistered--
		return temporal.NewApplicationError("unable to find activityType=DeadLetter. Supported types: [Hold]", "ActivityNotRegisteredError")
	}
	if w.dlqDown > 0 {
		w.dlqDown--
		return errors.New("dead-letter carts/0@3 to carts.dlq: kafka server: The client is not authorized to access this topic")
	}
	w.deadLetters = append(w.deadLetters, in)
	return nil
}

// cartEntity builds the test saga; tune adjusts its options.
func cartEntity(tune func(en *Entity[cart])) *Entity[cart] {
	fast := &temporal.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaximumAttempts: 2}
	en := &Entity[cart]{
		Init:            func(string) cart { return cart{Items: []string{}} },
		Final:           []string{"paid", "compensated", "expired", "cancelled"},
		ActivityOptions: workflow.ActivityOptions{StartToCloseTimeout: time.Second, RetryPolicy: fast},
		Compensation:    CompensationOptions{ActivityOptions: workflow.ActivityOptions{StartToCloseTimeout: time.Second, RetryPolicy: fast}},
		KeepApplied:     100,
	}
	On(en, "Reserve", func(c *Ctx[cart], e reserveEvent) error {
		if err := workflow.ExecuteActivity(c, "Hold", e.Item).Get(c, nil); err != nil {
			return c.Fail("compensated", err)
		}
		c.State.Items = append(c.State.Items, e.Item)
		undo := UndoActivity("Release:"+e.Item, "Release", e.Item)
		if e.Item == "precious" {
			undo = undo.WithDeadLetter()
		}
		c.Completed("Hold:"+e.Item, undo)
		if len(c.State.Items) == 1 {
			c.Begin("AwaitPayment")
			c.StartTimeout("pay-due", payDue)
		}
		return nil
	})
	On(en, "Pay", func(c *Ctx[cart], e payEvent) error {
		c.CancelTimeout("pay-due")
		if !e.OK {
			return c.Fail("compensated", errors.New("declined"))
		}
		c.Completed("AwaitPayment")
		c.SetStatus("paid")
		return nil
	})
	On(en, "Boom", func(c *Ctx[cart], _ struct{}) error { return errors.New("boom") })
	OnTimeout(en, "pay-due", func(c *Ctx[cart]) error {
		return c.Fail("expired", fmt.Errorf("not paid within %s", payDue))
	})
	OnUpdate(en, "cancel", func(st Snapshot[cart], in cancelRequest) error {
		if in.Reason == "" {
			return errors.New("reason is required")
		}
		return nil
	}, func(c *Ctx[cart], in cancelRequest) (string, error) {
		err := c.Fail("cancelled", errors.New("cancelled: "+in.Reason))
		return c.Status(), err
	})
	OnUpdate(en, "hold", nil, func(c *Ctx[cart], item string) (string, error) {
		if err := workflow.ExecuteActivity(c, "Hold", item).Get(c, nil); err != nil {
			return "", err
		}
		c.State.Items = append(c.State.Items, item)
		return "held " + item, nil
	})
	if tune != nil {
		tune(en)
	}
	return en
}

// cartTest is one run of the test saga in the SDK's test environment.
type cartTest struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	world *world
	step  time.Duration
}

func newCartTest(t *testing.T, en *Entity[cart]) *cartTest {
	var s testsuite.WorkflowTestSuite
	ct := &cartTest{t: t, env: s.NewTestWorkflowEnvironment(), world: &world{failRelease: map[string]bool{}}}
	wf := func(ctx workflow.Context, c *Snapshot[cart]) (Snapshot[cart], error) { return en.Run(ctx, c) }
	ct.env.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: "Cart"})
	ct.env.RegisterActivityWithOptions(ct.world.hold, activity.RegisterOptions{Name: "Hold"})
	ct.env.RegisterActivityWithOptions(ct.world.release, activity.RegisterOptions{Name: "Release"})
	ct.env.RegisterActivityWithOptions(ct.world.deadLetter, activity.RegisterOptions{Name: contract.DeadLetterActivity})
	return ct
}

// at schedules fn a second after the previous scheduled step.
func (ct *cartTest) at(fn func()) {
	ct.step += time.Second
	ct.env.RegisterDelayedCallback(fn, ct.step)
}

// signal schedules a batch of records.
func (ct *cartTest) signal(batch ...event.Envelope) {
	ct.at(func() { ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: batch}) })
}

// run executes the workflow and returns its result, or the carry of a
// continue-as-new.
func (ct *cartTest) run(carried *Snapshot[cart]) (Snapshot[cart], error) {
	ct.t.Helper()
	ct.env.ExecuteWorkflow("Cart", carried)
	require.True(ct.t, ct.env.IsWorkflowCompleted())
	var out Snapshot[cart]
	err := ct.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if errors.As(err, &can) {
		require.NoError(ct.t, converterFor(ct.t).FromPayloads(can.Input, &out))
		return out, err
	}
	require.NoError(ct.t, err)
	require.NoError(ct.t, ct.env.GetWorkflowResult(&out))
	return out, nil
}

func rec(partition int32, offset int64, typ, value string) event.Envelope {
	return event.Envelope{Topic: "carts", Partition: partition, Offset: offset, Key: "c1", Type: typ, Value: json.RawMessage(value)}
}

func reserve(offset int64, item string) event.Envelope {
	return rec(0, offset, "Reserve", `{"item":"`+item+`"}`)
}

func pay(offset int64, ok bool) event.Envelope {
	return rec(0, offset, "Pay", fmt.Sprintf(`{"ok":%t}`, ok))
}

func stepNames(rs []CompensationResult) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

func TestRuntimeAppliesEachRecordOnceInOffsetOrder(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.signal(reserve(1, "a"), reserve(2, "b"))
	ct.signal(reserve(1, "a"), reserve(4, "c"), reserve(3, "late"), rec(1, 0, "Reserve", `{"item":"d"}`)) // 1 again; 3 after 4 is older
	ct.signal(pay(2, false), pay(5, true))                                                                // 2 again
	out, err := ct.run(nil)
	require.NoError(t, err)

	assert.Equal(t, "paid", out.Status)
	assert.Equal(t, "c1", out.Key)
	assert.Equal(t, []string{"a", "b", "c", "d"}, out.State.Items)
	assert.Equal(t, []string{"Hold:a", "Hold:b", "Hold:c", "Hold:d", "AwaitPayment"}, out.CompletedSteps)
	assert.Empty(t, out.CurrentStep)
	assert.Equal(t, 3, out.Stats.Deduped, "offset 1 twice, 3 after 4, 2 after 5")
	assert.Equal(t, 5, out.Stats.Applied)
	assert.Equal(t, event.Watermarks{"carts/0": 5, "carts/1": 0}, out.Watermarks)
	assert.Empty(t, out.Timeouts, "payment cancelled the timeout")
	assert.Empty(t, out.PendingCompensations, "a paid cart has nothing left to undo; none ran")
	assert.Empty(t, out.Compensations)
	assert.Equal(t, []string{"a", "b", "c", "d"}, ct.world.held)
	assert.Equal(t, ContractVersion, out.Version)
}

func TestRuntimeRejectsWhatItCannotApplyAndGoesOn(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.signal(
		reserve(1, "a"),
		rec(0, 2, "Reserve", `{"item":5}`), // does not decode
		rec(0, 3, "Refund", `{}`),          // no handler
		rec(0, 4, "Boom", `{}`),            // handler error
		pay(5, true),
		reserve(6, "z"), // after the saga ended
	)
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "paid", out.Status)
	require.Len(t, out.Rejected, 4)
	assert.Contains(t, out.Rejected[0].Reason, "decode Reserve event at carts/0@2")
	assert.Equal(t, `no handler for event type "Refund"`, out.Rejected[1].Reason)
	assert.Equal(t, "boom", out.Rejected[2].Reason)
	assert.Equal(t, "arrived after the final status paid", out.Rejected[3].Reason)
	assert.Equal(t, int64(6), out.Rejected[3].Offset)
	assert.Len(t, out.Applied, 6, "rejected records are applied (their offsets are consumed), not lost")
	assert.Equal(t, []string{"a"}, ct.world.held)
}

func TestFailCompensatesNewestFirstAndReportsAFailedCompensation(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.world.failRelease["b"] = true
	ct.signal(reserve(1, "a"), reserve(2, "b"), reserve(3, "c"), pay(4, false))
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "compensated", out.Status)
	assert.Equal(t, "declined", out.LastError)
	assert.Equal(t, []string{"Release:c", "Release:b", "Release:a"}, stepNames(out.Compensations))
	assert.Contains(t, out.Compensations[1].Error, "cannot release b")
	assert.Empty(t, out.Compensations[0].Error)
	assert.Empty(t, out.Compensations[2].Error)
	assert.Equal(t, []string{"c", "a"}, ct.world.released, "a still runs after b failed")
	assert.Empty(t, out.PendingCompensations)
}

func TestStopOnFailureSkipsTheOlderCompensations(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) { en.Compensation.StopOnFailure = true }))
	ct.world.failRelease["b"] = true
	ct.signal(reserve(1, "a"), reserve(2, "b"), reserve(3, "c"), pay(4, false))
	out, err := ct.run(nil)
	require.NoError(t, err)
	require.Len(t, out.Compensations, 3)
	assert.False(t, out.Compensations[1].Skipped)
	assert.NotEmpty(t, out.Compensations[1].Error)
	assert.True(t, out.Compensations[2].Skipped, "a is skipped after b failed")
	assert.Equal(t, "Release:a", out.Compensations[2].Name)
	// Kept, as for a failed one, so an operator can run it by hand (its
	// pending compensation is gone: it was lost).
	require.NotNil(t, out.Compensations[2].Undo, "the skipped compensation's undo")
	assert.Equal(t, "Release", out.Compensations[2].Undo.Activity)
	assert.NotNil(t, out.Compensations[1].Undo, "the failed compensation's undo")
	assert.Empty(t, out.PendingCompensations)
	assert.Equal(t, []string{"c"}, ct.world.released)
}

func TestParallelCompensationRunsAllAndListsNewestFirst(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) { en.Compensation.Parallel = true }))
	ct.world.failRelease["a"] = true
	ct.signal(reserve(1, "a"), reserve(2, "b"), reserve(3, "c"), reserve(4, "bad"))
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "compensated", out.Status)
	assert.Equal(t, "OutOfStock: no stock for bad", out.LastError)
	assert.Equal(t, []string{"Release:c", "Release:b", "Release:a"}, stepNames(out.Compensations))
	assert.NotEmpty(t, out.Compensations[2].Error)
	assert.ElementsMatch(t, []string{"b", "c"}, ct.world.released)
}

func TestACompensationThatFailsForGoodDeadLettersItsRecordWhenTheStepOptsIn(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.world.failRelease["precious"] = true
	ct.world.failRelease["plain"] = true
	ct.signal(reserve(1, "plain"), reserve(2, "precious"), pay(3, false))
	out, err := ct.run(nil)
	require.NoError(t, err)
	require.Len(t, out.Compensations, 2)
	assert.True(t, out.Compensations[0].DeadLettered, "precious opted in")
	assert.False(t, out.Compensations[1].DeadLettered, "plain did not")
	require.Len(t, ct.world.deadLetters, 1)
	dl := ct.world.deadLetters[0]
	assert.Equal(t, int64(2), dl.Event.Offset, "the record that completed the step")
	assert.Equal(t, "Release", dl.ActivityType)
	assert.Contains(t, dl.Error, "cannot release precious")
}

func TestStepTimeoutFiresAndCompensates(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.signal(reserve(1, "a"), reserve(2, "b")) // no payment ever comes
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "expired", out.Status)
	assert.Equal(t, "not paid within 1h0m0s", out.LastError)
	assert.Equal(t, []string{"Release:b", "Release:a"}, stepNames(out.Compensations))
	assert.Empty(t, out.CurrentStep)
}

func TestUpdateIsValidatedAppliedInTurnAndAnsweredOnce(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.signal(reserve(1, "a"))
	var rejected error
	var answers []string
	complete := func(v any, err error) {
		require.NoError(t, err)
		answers = append(answers, v.(string))
	}
	ct.at(func() {
		ct.env.UpdateWorkflow("cancel", "u0", &testsuite.TestUpdateCallback{
			OnAccept: func() { t.Error("an update without a reason must be rejected") }, OnReject: func(err error) { rejected = err },
			OnComplete: func(any, error) {},
		}, cancelRequest{})
	})
	ct.at(func() {
		ct.env.UpdateWorkflow("cancel", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) }, OnComplete: complete,
		}, cancelRequest{Reason: "changed my mind"})
	})
	out, err := ct.run(nil)
	require.NoError(t, err)
	require.Error(t, rejected)
	assert.Contains(t, rejected.Error(), "reason is required")
	assert.Equal(t, []string{"cancelled"}, answers)
	assert.Equal(t, "cancelled", out.Status)
	assert.Equal(t, "cancelled: changed my mind", out.LastError)
	assert.Equal(t, []string{"Release:a"}, stepNames(out.Compensations))
	assert.Equal(t, 1, out.Stats.Updates)
	require.Len(t, out.RecentUpdates, 1)
	assert.Equal(t, "u1", out.RecentUpdates[0].ID)
}

func TestUpdateRetriedAfterContinueAsNewGetsTheFirstAnswer(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	carried := &Snapshot[cart]{Progress: Progress{Status: "open"}, State: cart{Items: []string{}},
		RecentUpdates: []UpdateResult{{ID: "u1", Name: "cancel", Result: []byte(`"cancelled"`)}}}
	var answer any
	ct.at(func() {
		ct.env.UpdateWorkflow("cancel", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(v any, err error) { require.NoError(t, err); answer = v },
		}, cancelRequest{Reason: "again"})
	})
	ct.signal(pay(1, true))
	out, err := ct.run(carried)
	require.NoError(t, err)
	assert.Equal(t, "cancelled", answer)
	assert.Equal(t, "paid", out.Status, "the remembered update did not cancel again")
	assert.Equal(t, 1, out.Stats.DedupedUpdates)
	assert.Zero(t, out.Stats.Updates)
}

func TestUpdateAfterTheSagaEndedIsRefused(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	var refused error
	ct.env.RegisterDelayedCallback(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(1, "a"), pay(2, true)}})
		ct.env.UpdateWorkflow("cancel", "late", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { refused = err }, OnComplete: func(_ any, err error) { refused = err },
		}, cancelRequest{Reason: "late"})
	}, time.Second)
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "paid", out.Status)
	// Rejected by the validator, or, when accepted before the records were
	// applied, answered with an error without running the handler.
	require.Error(t, refused)
	assert.Contains(t, refused.Error(), "already paid")
	assert.Zero(t, out.Stats.Updates)
}

func TestContinueAsNewCarriesProgressUndosTimeoutsAndUnappliedRecords(t *testing.T) {
	en := cartEntity(func(en *Entity[cart]) { en.MaxAppliedPerRun = 2 })
	ct := newCartTest(t, en)
	ct.signal(reserve(1, "a"))
	ct.signal(reserve(2, "b"), reserve(3, "c")) // the limit is hit after b; c goes to the next run unapplied
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	assert.Equal(t, StatusNew, next.Status)
	assert.Equal(t, []string{"a", "b"}, next.State.Items)
	assert.Equal(t, []string{"Hold:a", "Hold:b"}, next.CompletedSteps)
	assert.Equal(t, "AwaitPayment", next.CurrentStep)
	require.Len(t, next.PendingCompensations, 2)
	assert.Equal(t, "Release", next.PendingCompensations[0].Activity)
	require.Len(t, next.Timeouts, 1)
	assert.Equal(t, "pay-due", next.Timeouts[0].Name)
	require.Len(t, next.Inbox, 1)
	assert.Equal(t, int64(3), next.Inbox[0].Offset)
	assert.Equal(t, 1, next.Stats.Runs)

	// The next run applies the carried record, dedupes its redelivery,
	// keeps the payment deadline, and undoes every step when payment fails.
	ct2 := newCartTest(t, cartEntity(nil))
	ct2.signal(reserve(3, "c"), pay(4, false))
	out, err := ct2.run(&next)
	require.NoError(t, err)
	assert.Equal(t, "compensated", out.Status)
	assert.Equal(t, []string{"Release:c", "Release:b", "Release:a"}, stepNames(out.Compensations))
	assert.Equal(t, []string{"c", "b", "a"}, ct2.world.released)
	assert.Equal(t, 1, out.Stats.Deduped)
	assert.Equal(t, 2, out.Stats.Runs)
	assert.Equal(t, 4, out.Stats.Applied)

	// A carried timeout still fires in the next run.
	ct3 := newCartTest(t, cartEntity(nil))
	out, err = ct3.run(&next)
	require.NoError(t, err)
	assert.Equal(t, "expired", out.Status)
	assert.Equal(t, []string{"c", "b", "a"}, ct3.world.released)

	// A carried timeout whose handler is gone is rejected, not a panic.
	ct4 := newCartTest(t, cartEntity(func(en *Entity[cart]) { delete(en.timeouts, "pay-due") }))
	ct4.signal(pay(4, true))
	out, err = ct4.run(&next)
	require.NoError(t, err)
	assert.Equal(t, "paid", out.Status)
	require.NotEmpty(t, out.Rejected)
	assert.Equal(t, "pay-due", out.Rejected[0].Timeout)
	assert.Nil(t, out.Rejected[0].AppliedEvent, "a timeout has no record position")
}

func TestCancellingTheWorkflowCompensatesAndClosesCancelled(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.signal(reserve(1, "a"), reserve(2, "b"))
	ct.at(func() { ct.env.CancelWorkflow() })
	ct.env.ExecuteWorkflow("Cart", nil)
	require.True(t, ct.env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	require.ErrorAs(t, ct.env.GetWorkflowError(), &canceled)
	assert.Equal(t, []string{"b", "a"}, ct.world.released, "the compensations ran despite the cancellation")
}

func TestUndoActivityNamesTheRegisteredActivity(t *testing.T) {
	w := &world{}
	assert.Equal(t, "release", UndoActivity("r", w.release, "x").Activity, "a method value is registered under its method name")
	assert.Equal(t, "Release", UndoActivity("r", "Release", "x").Activity)
	u := UndoActivity("r", "Release", func() {})
	assert.Contains(t, u.Invalid, "encode input of r")
}

func TestRejectionsAreCountedAndTheListIsBounded(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	var batch []event.Envelope
	for i := range keepRejected + 5 {
		batch = append(batch, rec(0, int64(i), "Boom", `{}`))
	}
	ct.signal(batch...)
	ct.signal(pay(int64(len(batch)), true))
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, keepRejected+5, out.Stats.Rejected)
	require.Len(t, out.Rejected, keepRejected)
	assert.Equal(t, int64(5), out.Rejected[0].Offset, "the oldest are forgotten first")
}

// A hot key's next input never exceeds MaxCarryBytes, whatever arrives:
// records that do not fit are applied before continuing as new (Temporal
// terminates a run whose ContinueAsNew input is over its payload limit:
// three 1 MB signals once made a 3 MB input).
func TestContinueAsNewCarriesAtMostMaxCarryBytes(t *testing.T) {
	const limit = 4 << 10
	en := cartEntity(func(en *Entity[cart]) { en.MaxAppliedPerRun, en.MaxCarryBytes = 1, limit })
	ct := newCartTest(t, en)
	big := func(offset int64) event.Envelope { // 1 KB records whose state is small
		return rec(0, offset, "Reserve", fmt.Sprintf(`{"item":"i%d","pad":"%s"}`, offset, strings.Repeat("x", 1000)))
	}
	ct.signal(big(1), big(2), big(3), big(4), big(5), big(6))
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	size := len(can.Input.GetPayloads()[0].GetData())
	t.Logf("next input %d bytes: %d records applied, %d carried", size, len(next.State.Items), len(next.Inbox))
	assert.LessOrEqual(t, size, limit, "the next run's input is bounded")
	assert.NotEmpty(t, next.Inbox, "what fits is still carried")
	assert.Greater(t, len(next.State.Items), 1, "what did not fit was applied first")
	var seen []int64
	for _, item := range next.State.Items {
		n, err := strconv.ParseInt(strings.TrimPrefix(item, "i"), 10, 64)
		require.NoError(t, err)
		seen = append(seen, n)
	}
	for _, e := range next.Inbox {
		seen = append(seen, e.Offset)
	}
	assert.Equal(t, []int64{1, 2, 3, 4, 5, 6}, seen, "every record applied or carried, once, in order")
}

// When Temporal suggests continuing as new, the accepted updates are
// answered first (their handler may take a while: here an activity), and
// records buffered meanwhile go to the next run, not lost.
func TestSuggestedContinueAsNewCarriesRecordsBufferedWhileSettling(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.signal(reserve(1, "a"))
	var answer string
	var updateErr error
	ct.at(func() {
		ct.env.SetContinueAsNewSuggested(true)
		ct.env.UpdateWorkflow("hold", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { updateErr = err },
			OnComplete: func(out any, err error) {
				updateErr = err
				if s, ok := out.(string); ok {
					answer = s
				}
			},
		}, "z")
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(2, "b"), reserve(3, "c")}})
	})
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can, "the suggestion is followed")
	require.NoError(t, updateErr)
	assert.Equal(t, "held z", answer, "the accepted update was answered before continuing")
	var carried []int64
	for _, e := range next.Inbox {
		carried = append(carried, e.Offset)
	}
	t.Logf("items %v, carried %v", next.State.Items, carried)
	assert.Equal(t, []string{"a", "z"}, next.State.Items)
	assert.Equal(t, []int64{2, 3}, carried, "the records buffered while settling go to the next run")
}

// Records that reach an entity after its final status, while it still
// runs Finish, follow the bridge's on_closed_workflow policy like records
// that reach it a moment later, after it closed.
func TestRecordsAfterTheFinalStatusFollowTheClosedWorkflowPolicy(t *testing.T) {
	slowFinish := func(en *Entity[cart]) {
		en.Finish = func(c *Ctx[cart]) error { return workflow.Sleep(c, 10*time.Second) }
	}
	lateBatch := func(ct *cartTest, policy string) {
		ct.at(func() {
			ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(3, "x"), reserve(4, "y")}, OnClosed: policy})
		})
	}
	t.Run("new_run", func(t *testing.T) {
		ct := newCartTest(t, cartEntity(slowFinish))
		ct.at(func() {
			ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(1, "a"), pay(2, true)}, OnClosed: "new_run"})
		})
		lateBatch(ct, "new_run")
		next, err := ct.run(nil)
		var can *workflow.ContinueAsNewError
		require.ErrorAs(t, err, &can, "a new run applies the late records")
		assert.True(t, next.fresh(), "the new run starts a new entity")
		assert.Equal(t, event.Watermarks{"carts/0": 2}, next.Watermarks, "rewound to just before the late records, as older workers read it")
		assert.Equal(t, event.Watermarks{"carts/0": 4}, next.LateWatermarks, "this run's, covering the late records")
		assert.Equal(t, []event.Envelope{reserve(3, "x"), reserve(4, "y")}, next.Inbox)
		assert.Equal(t, 2, next.InboxAdmitted, "the late records are admitted already")

		again := newCartTest(t, cartEntity(nil))
		out, err := again.run(&next)
		require.NoError(t, err)
		assert.Equal(t, []string{"x", "y"}, again.world.held, "the new run applied them, and nothing before")
		assert.Equal(t, 1, out.Stats.Runs, "a new entity, not a continuation")
	})
	t.Run("dlq", func(t *testing.T) {
		ct := newCartTest(t, cartEntity(slowFinish))
		ct.signal(reserve(1, "a"), pay(2, true))
		lateBatch(ct, "dlq")
		out, err := ct.run(nil)
		require.NoError(t, err)
		require.Len(t, ct.world.deadLetters, 2)
		assert.Equal(t, "workflow_closed", string(ct.world.deadLetters[0].Class))
		assert.Equal(t, int64(3), ct.world.deadLetters[0].Event.Offset)
		require.Len(t, out.Rejected, 2)
		assert.Contains(t, out.Rejected[0].Reason, "dead-lettered (on_closed_workflow: dlq)")
		assert.Equal(t, event.Watermarks{"carts/0": 4}, out.Watermarks, "handled, so a redelivery is skipped")
	})
	// A DLQ the worker cannot write to for a while (its ACL missing, the
	// brokers down) is the worker's fault, never the record's: the record
	// waits until Kafka takes it. (After 8 attempts, about two minutes,
	// it was only listed as rejected, and the bridge had committed it.)
	t.Run("dlq down for a while", func(t *testing.T) {
		ct := newCartTest(t, cartEntity(slowFinish))
		ct.world.dlqDown = 9 // one past the 8 attempts it had (the test environment ends retries after a few minutes of its own)
		ct.signal(reserve(1, "a"), pay(2, true))
		lateBatch(ct, "dlq")
		out, err := ct.run(nil)
		require.NoError(t, err)
		require.Len(t, ct.world.deadLetters, 2, "both late records reached the DLQ once it took them")
		require.Len(t, out.Rejected, 2)
		assert.Contains(t, out.Rejected[0].Reason, "dead-lettered (on_closed_workflow: dlq)")
	})
	// During a rolling deploy the activity's task may reach a worker that
	// does not register it yet: the record waits for one that does.
	// (The first such answer was final: the record was only rejected.)
	t.Run("a worker without the activity answers first", func(t *testing.T) {
		ct := newCartTest(t, cartEntity(slowFinish))
		ct.world.unregistered = 3
		ct.signal(reserve(1, "a"), pay(2, true))
		lateBatch(ct, "dlq")
		out, err := ct.run(nil)
		require.NoError(t, err)
		require.Len(t, ct.world.deadLetters, 2)
		require.Len(t, out.Rejected, 2)
		assert.Contains(t, out.Rejected[0].Reason, "dead-lettered (on_closed_workflow: dlq)")
	})
	// A worker without the DeadLetter activity (one that never set up
	// Kafka) cannot write the record ever: it is listed as a rejection
	// naming why at once, rather than keeping the run open for good.
	t.Run("no DeadLetter activity", func(t *testing.T) {
		var s testsuite.WorkflowTestSuite
		ct := &cartTest{t: t, env: s.NewTestWorkflowEnvironment(), world: &world{failRelease: map[string]bool{}}}
		en := cartEntity(slowFinish)
		ct.env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[cart]) (Snapshot[cart], error) { return en.Run(ctx, c) },
			workflow.RegisterOptions{Name: "Cart"})
		ct.env.RegisterActivityWithOptions(ct.world.hold, activity.RegisterOptions{Name: "Hold"})
		ct.signal(reserve(1, "a"), pay(2, true))
		lateBatch(ct, "dlq")
		out, err := ct.run(nil)
		require.NoError(t, err)
		require.Len(t, out.Rejected, 2)
		assert.Contains(t, out.Rejected[0].Reason, "could not be dead-lettered")
		assert.Contains(t, out.Rejected[0].Reason, contract.DeadLetterActivity)
	})
	t.Run("drop", func(t *testing.T) {
		ct := newCartTest(t, cartEntity(slowFinish))
		ct.signal(reserve(1, "a"), pay(2, true))
		lateBatch(ct, "drop")
		out, err := ct.run(nil)
		require.NoError(t, err)
		assert.Empty(t, ct.world.deadLetters)
		require.Len(t, out.Rejected, 2)
		assert.Contains(t, out.Rejected[1].Reason, "dropped (on_closed_workflow: drop)")
	})
}

// Starting a timeout that has no OnTimeout handler is an error the handler
// can return (its record is rejected, naming the timeout), not a panic that
// fails every workflow task of the run.
func TestStartingATimeoutWithoutAHandlerRejectsTheRecord(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		On(en, "Later", func(c *Ctx[cart], _ struct{}) error { return c.StartTimeout("remind", time.Hour) })
	}))
	ct.signal(rec(0, 1, "Later", `{}`), reserve(2, "a"), pay(3, true))
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "paid", out.Status, "the entity went on")
	require.Len(t, out.Rejected, 1)
	assert.Contains(t, out.Rejected[0].Reason, `start timeout "remind"`)
	assert.Contains(t, out.Rejected[0].Reason, ErrNoTimeoutHandler.Error())
}

// An update retried after ContinueAsNew gets its first answer though the
// state has moved on since, so that its validator, which checks the state,
// would now refuse it: the first attempt succeeded. (The validator ran
// before the remembered answer was looked up, and the retry was refused.)
func TestAnUpdateRetriedAfterTheStateMovedOnGetsTheFirstAnswer(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		OnUpdate(en, "approve", func(st Snapshot[cart], _ string) error {
			if st.Status != "open" {
				return fmt.Errorf("cannot approve: status %s", st.Status)
			}
			return nil
		}, func(c *Ctx[cart], _ string) (string, error) {
			c.SetStatus("approved")
			return "ok", nil
		})
	}))
	carried := &Snapshot[cart]{Progress: Progress{Status: "approved"}, State: cart{Items: []string{}},
		RecentUpdates: []UpdateResult{{ID: "u1", Name: "approve", Result: []byte(`"ok"`)}}}
	var answer any
	ct.at(func() {
		ct.env.UpdateWorkflow("approve", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("the retry was refused: %v", err) },
			OnComplete: func(v any, err error) { require.NoError(t, err); answer = v },
		}, "x")
	})
	ct.signal(pay(1, true))
	out, err := ct.run(carried)
	require.NoError(t, err)
	assert.Equal(t, "ok", answer)
	assert.Equal(t, 1, out.Stats.DedupedUpdates)
}

// Records that arrive while a Finish that then fails runs follow the
// closed-workflow policy, as when Finish succeeds: here they are
// dead-lettered and rejected, and the memo covers them. (The run closed
// with them still in the signal channel: the bridge had them accepted, and
// they were in no DLQ, no rejection and no watermark.)
func TestRecordsThatArriveWhileAFailingFinishRunsAreNotLost(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.Finish = func(c *Ctx[cart]) error {
			if err := workflow.Sleep(c, 10*time.Second); err != nil {
				return err
			}
			return errors.New("outcome service down")
		}
	}))
	ct.signal(reserve(1, "a"), pay(2, true))
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(3, "x"), reserve(4, "y")}, OnClosed: "dlq"})
	})
	ct.env.ExecuteWorkflow("Cart", (*Snapshot[cart])(nil))
	require.True(t, ct.env.IsWorkflowCompleted())
	require.Error(t, ct.env.GetWorkflowError(), "Finish failed")
	require.Len(t, ct.world.deadLetters, 2, "the records that came while Finish ran")
	assert.Equal(t, int64(3), ct.world.deadLetters[0].Event.Offset)
	assert.Equal(t, int64(4), ct.world.deadLetters[1].Event.Offset)
}

// An update retried with the same ID gets the first answer's error again,
// its type and retryability included: a client's retry helper reads them.
// (Only the message was remembered, and the retry was answered with a
// retryable "UpdateFailed", so a caller retrying on retryable errors
// looped on the remembered answer of a non-retryable refusal.)
func TestAnUpdateRetriedGetsTheFirstErrorsTypeAndRetryability(t *testing.T) {
	refuse := func(en *Entity[cart]) {
		OnUpdate(en, "reserve", nil, func(c *Ctx[cart], _ string) (string, error) {
			return "", temporal.NewNonRetryableApplicationError("no stock", "OutOfStock", nil)
		})
	}
	answer := func(ct *cartTest, id string) *error {
		var got error
		ct.at(func() {
			ct.env.UpdateWorkflow("reserve", id, &testsuite.TestUpdateCallback{
				OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
				OnComplete: func(_ any, err error) { got = err },
			}, "x")
		})
		return &got
	}
	first := newCartTest(t, cartEntity(refuse))
	firstErr := answer(first, "u1")
	first.signal(pay(1, true))
	out, err := first.run(nil)
	require.NoError(t, err)
	require.Len(t, out.RecentUpdates, 1)

	carried := &Snapshot[cart]{Progress: Progress{Status: "open"}, State: cart{Items: []string{}}, RecentUpdates: out.RecentUpdates}
	retry := newCartTest(t, cartEntity(refuse))
	retryErr := answer(retry, "u1")
	retry.signal(pay(1, true))
	out, err = retry.run(carried)
	require.NoError(t, err)
	assert.Equal(t, 1, out.Stats.DedupedUpdates)
	for name, e := range map[string]error{"first": *firstErr, "retry": *retryErr} {
		var app *temporal.ApplicationError
		require.ErrorAs(t, e, &app, "%s answer", name)
		assert.Equal(t, "OutOfStock", app.Type(), "%s answer's type", name)
		assert.True(t, app.NonRetryable(), "%s answer is retryable", name)
		assert.Contains(t, app.Error(), "no stock", "%s answer's message", name)
	}
}

// Records that arrive after the final status under the new_run policy go
// to the new run only while its input stays within MaxCarryBytes; the rest
// are dead-lettered (class workflow_closed) and rejected, as under dlq, so
// nothing is lost. (Every late record went into the new run's input: a
// hot key whose Finish took a while made an input over Temporal's payload
// limit, the continue-as-new was refused, and the run was terminated with
// the records it held.)
func TestLateRecordsForANewRunStayWithinMaxCarryBytes(t *testing.T) {
	const limit = 4000
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.MaxCarryBytes = limit
		en.Finish = func(c *Ctx[cart]) error { return workflow.Sleep(c, 10*time.Second) }
	}))
	late := signalLateOverflow(ct)
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can, "a new run applies the late records that fit")
	assert.LessOrEqual(t, jsonSize(next), limit, "the new run's input")
	require.NotEmpty(t, next.Inbox)
	require.NotEmpty(t, ct.world.deadLetters, "the records that did not fit")
	var offsets []int64
	for _, e := range next.Inbox {
		offsets = append(offsets, e.Offset)
	}
	for _, d := range ct.world.deadLetters {
		assert.Equal(t, "workflow_closed", string(d.Class))
		assert.Contains(t, d.Error, "the new run's input is full (Entity.MaxCarryBytes)")
		offsets = append(offsets, d.Event.Offset)
	}
	var want []int64
	for _, e := range late {
		want = append(want, e.Offset)
	}
	assert.Equal(t, want, offsets, "each late record once, in the new run or the DLQ, in order")
	assert.Equal(t, event.Watermarks{"carts/0": 2}, next.Watermarks, "rewound to just before the first late record, as older workers read it")
	assert.Equal(t, event.Watermarks{"carts/0": 22}, next.LateWatermarks, "this run's, covering every late record")
	assert.Equal(t, len(next.Inbox), next.InboxAdmitted)

	// Kafka delivers a dead-lettered record again (the bridge restarted
	// before committing it): the new run does not apply it. With the
	// watermarks rewound to before the first late record, it did, and the
	// record was both in the DLQ and applied.
	again := newCartTest(t, cartEntity(nil))
	again.signal(ct.world.deadLetters[len(ct.world.deadLetters)-1].Event)
	again.signal(pay(100, true))
	_, err = again.run(&next)
	require.NoError(t, err)
	assert.Len(t, again.world.held, len(next.Inbox), "the carried records applied, the dead-lettered one not")
}

// A Finish that fails in a run whose late records go to a new run
// (new_run) shows in the new run's state. The run continued as new and the
// error was only logged: no result, state or input held it.
func TestAFailedFinishShowsInTheNewRunOfTheLateRecords(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.Finish = func(c *Ctx[cart]) error {
			_ = workflow.Sleep(c, 10*time.Second) // the late record arrives meanwhile
			return errors.New("outcome service down: " + strings.Repeat("é", 600))
		}
	}))
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(1, "a"), pay(2, true)}, OnClosed: "new_run"})
	})
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(3, "x")}, OnClosed: "new_run"})
	})
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	assert.True(t, strings.HasPrefix(next.PreviousRunError, "outcome service down: é"), next.PreviousRunError)
	assert.LessOrEqual(t, len(next.PreviousRunError), 1000)
	assert.True(t, utf8.ValidString(next.PreviousRunError), "cut at a rune boundary")

	again := newCartTest(t, cartEntity(nil))
	var state Snapshot[cart]
	again.at(func() {
		v, err := again.env.QueryWorkflow("state")
		require.NoError(t, err)
		require.NoError(t, v.Get(&state))
	})
	again.signal(pay(100, true))
	_, err = again.run(&next)
	require.NoError(t, err)
	assert.Equal(t, next.PreviousRunError, state.PreviousRunError, "the new run's state shows it")
}

// A Finish error long enough to take the new run's input over
// MaxCarryBytes is cut to fit (it was added after the input was sized).
func TestAPreviousRunErrorFitsMaxCarryBytes(t *testing.T) {
	const limit = 4000
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.MaxCarryBytes = limit
		en.Finish = func(c *Ctx[cart]) error {
			_ = workflow.Sleep(c, 10*time.Second)
			return errors.New(strings.Repeat("\x01", 1000)) // 6 bytes each in JSON
		}
	}))
	signalLateOverflow(ct)
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	assert.LessOrEqual(t, jsonSize(next), limit, "the new run's input, its previous run's error included")
}

// A signal the worker cannot decode (corrupted, or a batch format it does
// not read yet) is dropped, and the saga goes on: its timeout still fires.
// The run waited for the next signal inside the selector, so the one-hour
// payment timeout never expired the saga ("deadline exceeded").
func TestAnUndecodableSignalDoesNotStopTheSaga(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.signal(reserve(1, "a")) // starts the one-hour pay-due timeout
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, json.RawMessage(`{"events":{"format":3,"groups":[]}}`))
	})
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "expired", out.Status)
}

// A workflow whose watermark was recorded without a topic ID hands it to
// the topic's ID at the first record with one, even a redelivery: the
// topic, deleted and created again later, is then new to it. (The
// redelivery left the watermark untagged, the recreated topic's ID took it
// over, and its records up to the old offset were skipped.)
func TestARedeliveryTakesOverTheUntaggedWatermarkInAWorkflow(t *testing.T) {
	carried := &Snapshot[cart]{Watermarks: event.Watermarks{"carts/0": 2}}
	ct := newCartTest(t, cartEntity(nil))
	again := reserve(2, "a")
	again.TopicID = "A" // redelivered after the upgrade
	ct.signal(again)
	fresh := reserve(0, "b")
	fresh.TopicID = "B" // the topic deleted and created again
	ct.signal(fresh)
	ct.signal(pay(1, true))
	var applied event.Watermarks
	ct.at(func() {
		v, err := ct.env.QueryWorkflow(event.AppliedQuery)
		require.NoError(t, err)
		require.NoError(t, v.Get(&applied))
	})
	_, err := ct.run(carried)
	require.NoError(t, err)
	assert.Equal(t, int64(2), applied["carts/0@A"], "the redelivery took the watermark over")
	assert.Equal(t, int64(0), applied["carts/0@B"], "the recreated topic's record 0 was applied")
}

// signalLateOverflow pays ct's cart (final status) under the new_run
// policy, then signals 20 records of about 1 KB that arrive after it: more
// than a new run's input of 4,000 bytes holds. It returns them.
func signalLateOverflow(ct *cartTest) []event.Envelope {
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(1, "a"), pay(2, true)}, OnClosed: "new_run"})
	})
	big := strings.Repeat("x", 1000)
	var late []event.Envelope
	for i := int64(3); i < 23; i++ {
		late = append(late, reserve(i, big))
	}
	ct.at(func() { ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: late, OnClosed: "new_run"}) })
	return late
}
