package signup

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/workflows"
)

// rec is a record of user 7 at offset off, with an idempotency key.
func rec(off int64, typ, value, key string) event.Envelope {
	return event.Envelope{Topic: Topic, Offset: off, Key: "7", Type: typ, Value: []byte(value),
		Headers: []event.Header{{Key: TypeHeader, Value: []byte(typ)}, {Key: IdempotencyHeader, Value: []byte(key)}}}
}

// newEnv is a test environment with the saga and the simulated services.
func newEnv() (*testsuite.TestWorkflowEnvironment, *Activities) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &Activities{}
	RegisterWith(env, a)
	return env, a
}

// run signals the batches one second apart and returns the final state.
func run(t *testing.T, env *testsuite.TestWorkflowEnvironment, batches ...[]event.Envelope) State {
	t.Helper()
	for i, b := range batches {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: b}) }, time.Duration(i+1)*time.Second)
	}
	env.ExecuteWorkflow(WorkflowType)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var st State
	require.NoError(t, env.GetWorkflowResult(&st))
	return st
}

// names are the compensations' names in the order they ran.
func names(cs []workflows.CompensationResult) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

const requestedPro = `{"email":"ann@example.com","plan":"pro"}`

func TestASignupWhoseTrialEndsIsChargedAndActivated(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env,
		[]event.Envelope{rec(0, SignupRequested, requestedPro, "k0"), rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1")},
		[]event.Envelope{rec(2, TrialEnded, `{}`, "k2")})
	assert.Equal(t, StatusActive, st.Status)
	assert.Equal(t, []string{StepCreateAccount, StepCharge, StepActivate}, st.CompletedSteps)
	assert.Empty(t, st.Compensations)
	assert.Equal(t, Signup{Email: "ann@example.com", Plan: "pro", PriceCents: 1900, PaymentMethod: "pm_visa", AccountID: "acct-7", ChargeID: "ch-7"}, st.State)
	assert.Empty(t, st.Timeouts, "TrialEnded cancelled the trial's timeout")
}

func TestAProducersRetryAtANewOffsetIsDroppedByItsIdempotencyKey(t *testing.T) {
	env, a := newEnv()
	charges := 0
	env.OnActivity(a.ChargeFirstMonth, mock.Anything, mock.Anything).Return(func(context.Context, ChargeInput) (string, error) {
		charges++
		return "ch-7", nil
	})
	st := run(t, env,
		[]event.Envelope{rec(0, SignupRequested, requestedPro, "k0"), rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1")},
		[]event.Envelope{
			rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1"), // a redelivery of offset 1
			rec(2, TrialEnded, `{}`, "k2"),
			rec(3, TrialEnded, `{}`, "k2"), // the producer's retry of the same event, at offset 3
		})
	assert.Equal(t, StatusActive, st.Status)
	assert.Equal(t, 1, charges)
	assert.Equal(t, 1, st.Stats.DedupedByKey, "offset 3 dropped by its key")
	assert.Equal(t, 1, st.Stats.Deduped, "offset 1 dropped by its offset")
	assert.Empty(t, st.Rejected)
}

func TestThePaymentMethodMayArriveBeforeTheSignup(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env,
		[]event.Envelope{rec(0, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k0")},
		[]event.Envelope{rec(1, SignupRequested, `{"email":"ann@example.com","plan":"basic"}`, "k1"), rec(2, TrialEnded, `{}`, "k2")})
	assert.Equal(t, StatusActive, st.Status)
	assert.Equal(t, int64(900), st.State.PriceCents)
}

func TestEventsBeforeTheSignupAreHeldUntilItComes(t *testing.T) {
	env, _ := newEnv()
	var held State
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow("state")
		require.NoError(t, err)
		require.NoError(t, v.Get(&held))
	}, 1500*time.Millisecond)
	st := run(t, env,
		[]event.Envelope{rec(0, TrialEnded, `{}`, "k0"), rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1")},
		[]event.Envelope{rec(2, SignupRequested, requestedPro, "k2")})
	require.Len(t, held.Held, 1, "TrialEnded waits, visible in the state")
	assert.Equal(t, "waiting for "+SignupRequested, held.Held[0].Reason)
	assert.Equal(t, StatusActive, st.Status, "the held TrialEnded ended the trial once the signup was in")
	assert.Empty(t, st.Held)
	assert.Empty(t, st.Rejected)
}

func TestADeclinedChargeClosesTheAccount(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env, []event.Envelope{
		rec(0, SignupRequested, requestedPro, "k0"), rec(1, PaymentMethodAdded, `{"payment_method":"pm_declined"}`, "k1"), rec(2, TrialEnded, `{}`, "k2"),
	})
	assert.Equal(t, StatusFailed, st.Status)
	assert.Equal(t, []string{StepCreateAccount}, st.CompletedSteps)
	// The refund is registered before the charge (whose answer may be
	// lost after it went through): here a refund of nothing, harmless.
	assert.Equal(t, []string{"RefundFirstMonth", "CloseAccount"}, names(st.Compensations))
	assert.Equal(t, ErrCardDeclined+": card declined", st.LastError)
}

func TestAFailedActivationRefundsThenClosesTheAccount(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env, []event.Envelope{
		rec(0, SignupRequested, `{"email":"ann@example.com","plan":"enterprise"}`, "k0"),
		rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1"), rec(2, TrialEnded, `{}`, "k2"),
	})
	assert.Equal(t, StatusFailed, st.Status)
	assert.Equal(t, []string{StepCreateAccount, StepCharge}, st.CompletedSteps)
	assert.Equal(t, []string{"RefundFirstMonth", "CloseAccount"}, names(st.Compensations), "newest first")
	for _, c := range st.Compensations {
		assert.Empty(t, c.Error, c.Name)
	}
	assert.Contains(t, st.LastError, ErrContractRequired)
}

func TestTheTrialTimeoutEndsTheTrial(t *testing.T) {
	env, _ := newEnv()
	start := env.Now()
	st := run(t, env, []event.Envelope{rec(0, SignupRequested, requestedPro, "k0"), rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1")})
	assert.Equal(t, StatusActive, st.Status)
	assert.GreaterOrEqual(t, env.Now().Sub(start), TrialPeriod)
}

func TestATrialEndingWithoutAPaymentMethodCancelsTheSignup(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env, []event.Envelope{rec(0, SignupRequested, requestedPro, "k0")})
	assert.Equal(t, StatusCancelled, st.Status)
	assert.Equal(t, []string{"CloseAccount"}, names(st.Compensations))
	assert.Equal(t, "the trial ended without a payment method", st.LastError)
}

func TestACancelledSignupClosesItsAccountAndLaterEventsAreRejected(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env, []event.Envelope{
		rec(0, SignupRequested, requestedPro, "k0"), rec(1, SignupCancelled, `{"reason":"changed my mind"}`, "k1"),
	}, []event.Envelope{rec(2, TrialEnded, `{}`, "k2")})
	assert.Equal(t, StatusCancelled, st.Status)
	assert.Equal(t, "cancelled: changed my mind", st.LastError)
	assert.Equal(t, []string{"CloseAccount"}, names(st.Compensations))
}

func TestAnUnknownPlanIsRejectedAndTheSagaWaits(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env, []event.Envelope{
		rec(0, SignupRequested, `{"email":"ann@example.com","plan":"gold"}`, "k0"),
		rec(1, SignupRequested, requestedPro, "k1"), rec(2, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k2"), rec(3, TrialEnded, `{}`, "k3"),
	})
	assert.Equal(t, StatusActive, st.Status)
	require.Len(t, st.Rejected, 1)
	assert.Contains(t, st.Rejected[0].Reason, `unknown plan "gold"`)
}

// update sends the change-plan update at d and records its answer.
func update(env *testsuite.TestWorkflowEnvironment, d time.Duration, id string, in ChangePlan, got *PlanChanged, rejected *error) {
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateChangePlan, id, &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { *rejected = err },
			OnComplete: func(v any, err error) {
				if err != nil {
					*rejected = err
					return
				}
				*got = v.(PlanChanged)
			},
		}, in)
	}, d)
}

func TestChangePlanDuringTheTrialChargesTheNewPrice(t *testing.T) {
	env, _ := newEnv()
	var got PlanChanged
	var badPlan error
	update(env, 1500*time.Millisecond, "u1", ChangePlan{Plan: "gold"}, &got, &badPlan)
	update(env, 1600*time.Millisecond, "u2", ChangePlan{Plan: "basic"}, &got, new(error))
	st := run(t, env,
		[]event.Envelope{rec(0, SignupRequested, requestedPro, "k0"), rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1")},
		[]event.Envelope{rec(2, TrialEnded, `{}`, "k2")})
	require.Error(t, badPlan)
	assert.Contains(t, badPlan.Error(), `unknown plan "gold"`)
	assert.Equal(t, PlanChanged{Plan: "basic", PriceCents: 900}, got)
	assert.Equal(t, StatusActive, st.Status)
	assert.Equal(t, int64(900), st.State.PriceCents)
	assert.Equal(t, 1, st.Stats.Updates)
}

func TestThePlanCannotChangeAfterTheTrial(t *testing.T) {
	var st State
	st.Key, st.Status = "7", StatusActive
	err := validateChangePlan(st, ChangePlan{Plan: "basic"})
	require.Error(t, err)
	assert.Equal(t, "change-plan: signup 7 is active; the plan can change only during the trial", err.Error())
	st.Status = StatusTrial
	assert.NoError(t, validateChangePlan(st, ChangePlan{Plan: "basic"}))
}

func TestTheBridgeConfigRoutesToThisWorkflow(t *testing.T) {
	cfg, err := config.Load("bridge.yaml")
	require.NoError(t, err)
	require.Len(t, cfg.Routes, 1)
	r := cfg.Routes[0]
	assert.Equal(t, Topic, r.Topic)
	assert.Equal(t, TypeHeader, r.TypeHeader)
	assert.Equal(t, WorkflowType, r.WorkflowType)
	assert.Equal(t, TaskQueue, r.TaskQueue)
	assert.ElementsMatch(t, []string{SignupRequested, PaymentMethodAdded, TrialEnded, SignupCancelled}, r.Types)
}
