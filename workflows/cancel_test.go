package workflows

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// slowCart is the test saga with a "Slow" record, whose handler's activity
// is under way when the workflow is asked to cancel (the activity asks,
// then waits to be cancelled), and a Finish that publishes (counted).
// final says whether the Slow handler ends the saga when its activity
// fails (Fail "compensated") or only rejects the record.
func slowCart(t *testing.T, final bool) (*cartTest, *atomic.Int32) {
	en := cartEntity(nil)
	On(en, "Slow", func(c *Ctx[cart], _ struct{}) error {
		if err := workflow.ExecuteActivity(c, "Slow").Get(c, nil); err != nil {
			if final {
				return c.Fail("compensated", err)
			}
			return err
		}
		return nil
	})
	var published atomic.Int32
	en.Finish = func(c *Ctx[cart]) error { return workflow.ExecuteActivity(c, "Publish").Get(c, nil) }
	ct := newCartTest(t, en)
	ct.env.RegisterActivityWithOptions(func(ctx context.Context) error {
		ct.env.CancelWorkflow()
		<-ctx.Done()
		return ctx.Err()
	}, activity.RegisterOptions{Name: "Slow"})
	ct.env.RegisterActivityWithOptions(func(context.Context) error { published.Add(1); return nil },
		activity.RegisterOptions{Name: "Publish"})
	return ct, &published
}

// A cancellation that arrives while a handler waits on an activity is
// handled before the next record: the records behind it are not applied
// on the cancelled context (each activity failing at once), the saga
// compensates as cancelled, and Finish still publishes. (The next record
// was applied: its Hold failed with the cancellation, its handler failed
// the saga "compensated", and the run closed as if never cancelled, its
// Finish cancelled before it could publish.)
func TestACancellationDuringAHandlerIsHandledBeforeTheNextRecord(t *testing.T) {
	ct, published := slowCart(t, false)
	ct.signal(reserve(1, "a"), rec(0, 2, "Slow", `{}`), reserve(3, "b"))
	ct.env.ExecuteWorkflow("Cart", nil)
	require.True(t, ct.env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	require.ErrorAs(t, ct.env.GetWorkflowError(), &canceled, "the run closes cancelled")
	v, err := ct.env.QueryWorkflow("state")
	require.NoError(t, err)
	var st Snapshot[cart]
	require.NoError(t, v.Get(&st))
	assert.Equal(t, StatusCancelled, st.Status, "the saga's status")
	assert.Equal(t, []string{"a"}, ct.world.held, "a record applied after the cancellation")
	assert.Equal(t, []string{"a"}, ct.world.released, "the compensations ran")
	assert.Equal(t, int32(1), published.Load(), "Finish did not publish")
}

// A handler that ends the saga because the cancellation failed its
// activity ends it as it chose (here "compensated"), and Finish, which
// runs after, still publishes: the run no longer works on the cancelled
// context. (Finish's activity was cancelled at once, and the run failed.)
func TestASagaEndedByAHandlerDuringACancellationStillFinishes(t *testing.T) {
	ct, published := slowCart(t, true)
	ct.signal(reserve(1, "a"), rec(0, 2, "Slow", `{}`))
	ct.env.ExecuteWorkflow("Cart", nil)
	require.True(t, ct.env.IsWorkflowCompleted())
	assert.Equal(t, []string{"a"}, ct.world.released, "the compensations ran")
	assert.Equal(t, int32(1), published.Load(), "Finish did not publish")
}

// The bridge's closed-workflow policy comes with each batch; records
// carried to the next run keep it, so one that arrives after the final
// status there still follows it. (The carried records had no policy: a
// record after the final status was only listed as rejected, neither
// dead-lettered nor redelivered, its watermark saying it was handled.)
func TestCarriedRecordsKeepTheBridgesClosedWorkflowPolicy(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) { en.MaxAppliedPerRun = 1 }))
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{OnClosed: "dlq",
			Events: []event.Envelope{reserve(1, "a"), pay(2, true), reserve(3, "late")}})
	})
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	require.Len(t, next.Inbox, 2, "pay and the late record are carried")

	ct2 := newCartTest(t, cartEntity(nil))
	out, err := ct2.run(&next)
	require.NoError(t, err)
	assert.Equal(t, "paid", out.Status)
	require.Len(t, ct2.world.deadLetters, 1, "the record after the final status was not dead-lettered")
	assert.Equal(t, int64(3), ct2.world.deadLetters[0].Event.Offset)
}

// A Saga compensated because its workflow was cancelled still runs its
// compensations: Compensate works on a context the cancellation does not
// reach. (On the cancelled context each compensation's activity failed at
// once and nothing was undone.)
func TestASagaCompensatesAfterItsWorkflowIsCancelled(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var undone []string
	env.RegisterActivityWithOptions(func(_ context.Context, item string) error { undone = append(undone, item); return nil },
		activity.RegisterOptions{Name: "Release"})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) ([]CompensationResult, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Second})
		var saga Saga
		for _, item := range []string{"a", "b"} {
			saga.Add("release "+item, func(ctx workflow.Context) error {
				return workflow.ExecuteActivity(ctx, "Release", item).Get(ctx, nil)
			})
		}
		_ = workflow.Sleep(ctx, time.Hour) // cancelled meanwhile
		return saga.Compensate(ctx), nil
	}, workflow.RegisterOptions{Name: "Trip"})
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow("Trip")
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var results []CompensationResult
	require.NoError(t, env.GetWorkflowResult(&results))
	assert.Equal(t, []string{"b", "a"}, undone, "compensations run")
	for _, r := range results {
		assert.Empty(t, r.Error, r.Name)
	}
}

// A cancellation that comes while a handler runs is handled before the
// records held for that handler's record are retried. They were retried on
// the cancelled context: here the held card's Attach failed at once, its
// handler failed the saga as "compensated", and the run completed instead
// of closing cancelled; OnCancel never ran.
func TestACancellationDuringAHandlerIsHandledBeforeHeldRecords(t *testing.T) {
	en := &Entity[signup]{Final: []string{"active", StatusCancelled, "compensated"},
		ActivityOptions: workflow.ActivityOptions{StartToCloseTimeout: time.Hour}}
	On(en, "SignupRequested", func(c *Ctx[signup], e signupEvent) error {
		c.State.Account = e.Email
		c.SetStatus("trial")
		_ = workflow.ExecuteActivity(c, "Welcome").Get(c, nil) // cancelled meanwhile
		return nil
	})
	On(en, "PaymentMethodAdded", func(c *Ctx[signup], e cardEvent) error {
		if c.State.Account == "" {
			return c.Hold(waitingForSignup)
		}
		if err := workflow.ExecuteActivity(c, "Attach", e.Card).Get(c, nil); err != nil {
			return c.Fail("compensated", err)
		}
		c.State.Cards = append(c.State.Cards, e.Card)
		return nil
	})
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[signup]) (Snapshot[signup], error) { return en.Run(ctx, c) },
		workflow.RegisterOptions{Name: "Signup"})
	env.RegisterActivityWithOptions(func(ctx context.Context) error {
		env.CancelWorkflow()
		<-ctx.Done()
		return ctx.Err()
	}, activity.RegisterOptions{Name: "Welcome"})
	env.RegisterActivityWithOptions(func(context.Context, string) error { return nil }, activity.RegisterOptions{Name: "Attach"})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{cardAdded}}) }, time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{signupRequested}})
	}, 2*time.Second)
	env.ExecuteWorkflow("Signup", nil)
	require.True(t, env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	assert.ErrorAs(t, env.GetWorkflowError(), &canceled, "the run closes cancelled")
	v, err := env.QueryWorkflow("state") // a cancelled run has no result
	require.NoError(t, err)
	var out Snapshot[signup]
	require.NoError(t, v.Get(&out))
	assert.Equal(t, StatusCancelled, out.Status, "OnCancel decided")
}

// A cancellation that arrives while a Saga compensates (after a failed
// step, its context live when Compensate began) does not cut the undoing
// short. The running undo was cancelled and every one after it failed at
// once: nothing was undone, and the workflow completed without an error.
func TestACancellationDuringCompensationLetsEveryUndoRun(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var undone []string
	env.RegisterActivityWithOptions(func(_ context.Context, item string) error { undone = append(undone, item); return nil },
		activity.RegisterOptions{Name: "Release"})
	env.OnActivity("Release", mock.Anything, "b").After(time.Minute).Return(nil)
	env.OnActivity("Release", mock.Anything, "a").Return(nil)
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) ([]CompensationResult, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Hour})
		var saga Saga
		for _, item := range []string{"a", "b"} {
			saga.Add("release "+item, func(ctx workflow.Context) error {
				if err := workflow.ExecuteActivity(ctx, "Release", item).Get(ctx, nil); err != nil {
					return err
				}
				undone = append(undone, item)
				return nil
			})
		}
		return saga.Compensate(ctx), nil // a later step failed
	}, workflow.RegisterOptions{Name: "Trip"})
	env.RegisterDelayedCallback(env.CancelWorkflow, 30*time.Second) // while "release b" runs
	env.ExecuteWorkflow("Trip")
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var results []CompensationResult
	require.NoError(t, env.GetWorkflowResult(&results))
	for _, r := range results {
		assert.Empty(t, r.Error, r.Name)
	}
	assert.Equal(t, []string{"b", "a"}, undone, "every compensation ran")
}

// A cancellation that arrives while a run hands its records to the next
// one (applying those that do not fit in MaxCarryBytes) is not carried
// away by ContinueAsNew: the run stops applying, and the saga is cancelled
// and compensates as it would between two records. (The run went on
// applying the records on the cancelled context, each rejected, and then
// continued as new, which the SDK does despite the request: the next run
// never saw it.)
func TestACancellationWhileTheRunHandsOverIsNotLost(t *testing.T) {
	pad := strings.Repeat("p", 1000)
	en := cartEntity(func(en *Entity[cart]) {
		en.MaxAppliedPerRun, en.MaxCarryBytes = 1, 4<<10
	})
	On(en, "Slow", func(c *Ctx[cart], _ struct{ Pad string }) error { return workflow.Sleep(c, time.Minute) })
	ct := newCartTest(t, en)
	var batch []event.Envelope
	batch = append(batch, reserve(1, "a"))
	for i := range 6 {
		batch = append(batch, rec(0, int64(2+i), "Slow", `{"pad":"`+pad+`"}`))
	}
	ct.signal(batch...)
	ct.env.RegisterDelayedCallback(ct.env.CancelWorkflow, 91*time.Second) // while the records that do not fit are applied
	ct.env.ExecuteWorkflow("Cart", nil)
	require.True(t, ct.env.IsWorkflowCompleted())
	err := ct.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.False(t, errors.As(err, &can), "the run continued as new, the cancellation with it")
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, err, &cancelled)
	assert.Equal(t, []string{"a"}, ct.world.released, "the saga compensated")
}

// An update whose handler is under way when the workflow is asked to
// cancel gets the handler's answer, which the run also remembers for a
// retry: the caller must not be told "canceled" for an update that took
// effect. (The caller's wait was on the cancelled context: it got
// "canceled", and a retry then got the remembered success.)
func TestAnUpdateUnderWayWhenTheWorkflowIsCancelledGetsItsAnswer(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		OnUpdate(en, "note", nil, func(c *Ctx[cart], in string) (string, error) {
			ctx, _ := workflow.NewDisconnectedContext(c) // the handler's work goes on through a cancellation
			_ = workflow.Sleep(ctx, time.Minute)
			c.State.Items = append(c.State.Items, in)
			return "noted " + in, nil
		})
	}))
	ct.signal(reserve(1, "a"))
	var answer any
	var answerErr error
	ct.at(func() {
		ct.env.UpdateWorkflow("note", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(v any, err error) { answer, answerErr = v, err },
		}, "x")
	})
	ct.env.RegisterDelayedCallback(ct.env.CancelWorkflow, ct.step+30*time.Second) // while the handler sleeps
	ct.env.ExecuteWorkflow("Cart", nil)
	require.True(t, ct.env.IsWorkflowCompleted())
	require.NoError(t, answerErr, "the update took effect")
	assert.Equal(t, "noted x", answer)
}

// A cancellation that comes after the saga reached its final status, while
// the run closes, changes nothing: Finish still publishes the outcome and
// the run completes. (The request cancelled Finish's activity on the run's
// context: the outcome of a completed saga was never published, and the
// workflow ended cancelled.)
func TestACancellationWhileTheRunClosesDoesNotCutFinishShort(t *testing.T) {
	var published atomic.Bool
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.Finish = func(c *Ctx[cart]) error {
			if err := workflow.ExecuteActivity(c, "Publish", "outcome").Get(c, nil); err != nil {
				return err
			}
			published.Store(true)
			return nil
		}
	}))
	ct.env.RegisterActivityWithOptions(func(context.Context, string) error { return nil }, activity.RegisterOptions{Name: "Publish"})
	ct.env.OnActivity("Publish", mock.Anything, "outcome").After(time.Minute).Return(nil) // under way when the request comes
	ct.signal(reserve(1, "a"), pay(2, true))
	ct.env.RegisterDelayedCallback(ct.env.CancelWorkflow, 30*time.Second)
	out, err := ct.run(nil)
	require.NoError(t, err, "a saga that completed before the request ended %v", err)
	assert.True(t, published.Load(), "the outcome was not published")
	assert.Equal(t, "paid", out.Status)
}
