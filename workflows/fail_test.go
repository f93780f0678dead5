package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// rejectionReasons lists the reasons of the rejections in st.
func rejectionReasons(st Snapshot[cart]) []string {
	out := make([]string, len(st.Rejected))
	for i, r := range st.Rejected {
		out[i] = r.Reason
	}
	return out
}

// The probe from issue #15: a handler that calls Fail and does not return
// at once ran another step and set status "paid" after the compensations
// had run, leaving a pending undo. Fail is final: the later bookkeeping is
// refused, the saga ends failed and compensated, and the misuse is shown.
func TestFailIsFinalForTheHandlerThatCalledIt(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		On(en, "Probe", func(c *Ctx[cart], _ struct{}) error {
			c.Fail("compensated", errors.New("card declined")) // not returned: the misuse
			if err := workflow.ExecuteActivity(c, "Hold", "after").Get(c, nil); err != nil {
				return err
			}
			c.Begin("Ship")
			c.Completed("Hold:after", UndoActivity("Release:after", "Release", "after"))
			c.Compensate(UndoActivity("Release:again", "Release", "again"))
			_ = c.StartTimeout("pay-due", payDue)
			c.SetStatus("paid")
			return nil
		})
	}))
	ct.signal(reserve(1, "a"), rec(0, 2, "Probe", `{}`))
	out, err := ct.run(nil)
	require.NoError(t, err)

	assert.Equal(t, "compensated", out.Status, "the status set by Fail stays")
	assert.Equal(t, "card declined", out.LastError)
	assert.Equal(t, []string{"Release:a"}, stepNames(out.Compensations))
	assert.Equal(t, []string{"a"}, ct.world.released)
	assert.Empty(t, out.PendingCompensations, "no undo is left pending after Fail")
	assert.Equal(t, []string{"Hold:a"}, out.CompletedSteps, "no step after Fail")
	assert.Empty(t, out.CurrentStep)
	assert.Empty(t, out.Timeouts)
	require.Len(t, out.Rejected, 1, "the misuse is reported, once for the handler call")
	reason := out.Rejected[0].Reason
	require.NotNil(t, out.Rejected[0].AppliedEvent)
	assert.Equal(t, int64(2), out.Rejected[0].Offset)
	for _, want := range []string{
		`Begin("Ship") after Fail`,
		`Completed("Hold:after") after Fail: a failed saga takes no more steps`,
		`Compensate("Release:again") after Fail`,
		`StartTimeout("pay-due") after Fail`,
		`SetStatus("paid") after Fail`,
	} {
		assert.Contains(t, reason, want)
	}
}

// A handler that returns Fail's error has failed the saga as it meant to:
// its record is not rejected.
func TestReturningFailIsNotARejection(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		On(en, "Decline", func(c *Ctx[cart], _ struct{}) error {
			return c.Fail("compensated", errors.New("declined"))
		})
	}))
	ct.signal(reserve(1, "a"), rec(0, 2, "Decline", `{}`))
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "compensated", out.Status)
	assert.Equal(t, []string{"Release:a"}, stepNames(out.Compensations))
	assert.Empty(t, out.Rejected)
	assert.Zero(t, out.Stats.Rejected)
}

// An update handler that returns Fail's error is answered with its value;
// one that steps on after Fail is answered with an error naming the call,
// and the misuse is listed in Rejected under the update's name.
func TestFailInAnUpdateHandler(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		OnUpdate(en, "abort", nil, func(c *Ctx[cart], _ string) (string, error) {
			err := c.Fail("compensated", errors.New("aborted"))
			_ = c.Fail("cancelled", errors.New("twice")) // the misuse
			return "aborted", err
		})
	}))
	ct.signal(reserve(1, "a"))
	var answer any
	var answerErr error
	ct.at(func() {
		ct.env.UpdateWorkflow("abort", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(v any, err error) { answer, answerErr = v, err },
		}, "now")
	})
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "compensated", out.Status, "the second Fail changed nothing")
	assert.Equal(t, "aborted", out.LastError)
	assert.Equal(t, []string{"Release:a"}, stepNames(out.Compensations), "compensated once")
	require.Error(t, answerErr)
	assert.Empty(t, answer)
	assert.Contains(t, answerErr.Error(), `Fail("cancelled") after Fail: a failed saga takes no more steps`)
	var app *temporal.ApplicationError
	require.ErrorAs(t, answerErr, &app)
	assert.True(t, app.NonRetryable())
	require.Len(t, out.Rejected, 1)
	assert.Equal(t, "abort", out.Rejected[0].Update)
	assert.Nil(t, out.Rejected[0].AppliedEvent)

	ct = newCartTest(t, cartEntity(nil))
	ct.signal(reserve(1, "a"))
	ct.at(func() {
		ct.env.UpdateWorkflow("cancel", "u2", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(v any, err error) { answer, answerErr = v, err },
		}, cancelRequest{Reason: "bye"})
	})
	out, err = ct.run(nil)
	require.NoError(t, err)
	require.NoError(t, answerErr, "Fail's error is the update's intended outcome, not its failure")
	assert.Equal(t, "cancelled", answer)
	assert.Empty(t, out.Rejected)
}

// An undo is retried until it is done by default: only a non-retryable
// error ends it. It gave up after 10 attempts (about 5 minutes), leaving a
// saga half undone whose status said compensated.
func TestUndosRetryUntilDoneByDefault(t *testing.T) {
	opts := undoOptions(workflow.ActivityOptions{})
	require.NotNil(t, opts.RetryPolicy)
	assert.Zero(t, opts.RetryPolicy.MaximumAttempts, "undos give up after %d attempts", opts.RetryPolicy.MaximumAttempts)
	assert.Equal(t, time.Minute, opts.RetryPolicy.MaximumInterval)
	set := &temporal.RetryPolicy{MaximumAttempts: 3}
	assert.Same(t, set, undoOptions(workflow.ActivityOptions{RetryPolicy: set}).RetryPolicy, "a policy the entity sets is kept")
}
