package signup

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sagabridge/sagabridge/event"
)

// An account whose every creation attempt failed after the service had
// created it (each answer lost) may exist: the failed signup closes it.
// (Its close was registered only after a success: the account stayed
// open on a failed signup.)
func TestAnAccountWhoseCreationIsUnknownIsClosed(t *testing.T) {
	env, a := newEnv()
	var closed atomic.Int32
	env.OnActivity(a.CreateAccount, mock.Anything, mock.Anything).Return("", errors.New("account service timed out"))
	env.OnActivity(a.CloseAccount, mock.Anything, mock.Anything).Return(func(context.Context, AccountInput) error {
		closed.Add(1)
		return nil
	})
	st := run(t, env, []event.Envelope{rec(0, SignupRequested, requestedPro, "k0")})
	assert.Equal(t, StatusFailed, st.Status)
	assert.Equal(t, int32(1), closed.Load(), "an account that may exist was never closed")
}

// An account the service refused to create (not an email address) has
// nothing to close.
func TestARefusedAccountIsNotClosed(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env, []event.Envelope{rec(0, SignupRequested, `{"email":"ann","plan":"pro"}`, "k0")})
	assert.Equal(t, StatusFailed, st.Status)
	assert.Empty(t, st.Compensations)
}

// endTrialWithCancel runs a signup to its trial's end; mocks may cancel
// the workflow while an activity runs. It returns the final state and the
// workflow's error.
func endTrialWithCancel(t *testing.T, env *testsuite.TestWorkflowEnvironment) (State, error) {
	t.Helper()
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{
			rec(0, SignupRequested, requestedPro, "k0"),
			rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1"),
			rec(2, TrialEnded, `{}`, "k2"),
		}})
	}, time.Second)
	env.ExecuteWorkflow(WorkflowType)
	require.True(t, env.IsWorkflowCompleted())
	v, err := env.QueryWorkflow("state") // a cancelled workflow has no result
	require.NoError(t, err)
	var st State
	require.NoError(t, v.Get(&st))
	return st, env.GetWorkflowError()
}

// A request to cancel that comes while the first month is charged ends
// the signup cancelled: the charge is refunded and the account closed.
// (The charge's cancellation counted as its failure: the signup ended
// failed.) That the refund waits for the charge to land is checked on a
// real server for the order saga, which uses the same Ctx.UndoableStep.
func TestACancelWhileChargingEndsTheSignupCancelled(t *testing.T) {
	env, a := newEnv()
	env.OnActivity(a.ChargeFirstMonth, mock.Anything, mock.Anything).Return(func(context.Context, ChargeInput) (string, error) {
		env.CancelWorkflow()
		return "ch-7", nil
	})
	st, err := endTrialWithCancel(t, env)
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "the workflow reports itself cancelled: %v", err)
	assert.Equal(t, StatusCancelled, st.Status)
	assert.Equal(t, []string{"RefundFirstMonth", "CloseAccount"}, names(st.Compensations))
}

// A request to cancel that comes while the subscription is activated
// cannot stop it: activation finishes and the signup ends active, its
// charge kept. (The activation's cancellation counted as its failure: the
// saga refunded an active subscription.)
func TestACancelWhileActivatingLetsTheActivationFinish(t *testing.T) {
	env, a := newEnv()
	var refunds atomic.Int32
	env.OnActivity(a.ActivateSubscription, mock.Anything, mock.Anything).Return(func(context.Context, ActivateInput) error {
		env.CancelWorkflow()
		time.Sleep(100 * time.Millisecond)
		return nil
	})
	env.OnActivity(a.RefundFirstMonth, mock.Anything, mock.Anything).Return(func(context.Context, ChargeInput) error {
		refunds.Add(1)
		return nil
	})
	st, err := endTrialWithCancel(t, env)
	require.NoError(t, err, "the subscription is active: the request to cancel came too late")
	assert.Equal(t, StatusActive, st.Status)
	assert.Zero(t, refunds.Load(), "an active subscription was refunded")
}
