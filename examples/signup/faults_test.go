package signup

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// errDown is a service that does not answer: retryable.
var errDown = errors.New("service unavailable")

// trialEnds is a signup of plan, with a card, whose trial ends.
func trialEnds(plan string) [][]event.Envelope {
	return [][]event.Envelope{
		{rec(0, SignupRequested, `{"email":"ann@example.com","plan":"`+plan+`"}`, "k0"), rec(1, PaymentMethodAdded, `{"payment_method":"pm_visa"}`, "k1")},
		{rec(2, TrialEnded, `{}`, "k2")},
	}
}

// A charge that went through and whose answer was lost (then every retry
// failed) is refunded: the refund is registered before the charge. It was
// registered after it succeeded, so the failed signup closed the account
// and kept the money.
func TestAChargeWhoseAnswerWasLostIsRefunded(t *testing.T) {
	env, a := newEnv()
	env.OnActivity(a.ChargeFirstMonth, mock.Anything, mock.Anything).Return("", errDown)
	st := run(t, env, trialEnds("pro")...)
	assert.Equal(t, StatusFailed, st.Status)
	assert.Equal(t, []string{"RefundFirstMonth", "CloseAccount"}, names(st.Compensations))
}

// An undo is retried until it is done: a payment service down for longer
// than the runtime's default ten attempts left the first month unrefunded
// on a failed signup. (Temporal's test environment caps unlimited retries
// at ten attempts, so the policy each activity is scheduled with is read
// from the workflow's outbound calls.)
func TestUndosAndActivationAreRetriedUntilDone(t *testing.T) {
	env, _ := newEnv()
	policies := &schedulePolicies{byType: map[string]*temporal.RetryPolicy{}}
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{policies}})
	st := run(t, env, trialEnds("enterprise")...) // activation is refused: the saga compensates
	assert.Equal(t, StatusFailed, st.Status)
	// CloseAccount runs with the same options as RefundFirstMonth
	// (Entity.Compensation), whose policy the test environment has capped
	// by then.
	for _, activity := range []string{"RefundFirstMonth", "ActivateSubscription"} {
		p := policies.get(activity)
		if assert.NotNil(t, p, "%s was not scheduled", activity) {
			assert.Zero(t, p.MaximumAttempts, "%s gives up after %d attempts", activity, p.MaximumAttempts)
		}
	}
}

// schedulePolicies records the retry policy each activity type is
// scheduled with.
type schedulePolicies struct {
	interceptor.WorkerInterceptorBase
	mu     sync.Mutex
	byType map[string]*temporal.RetryPolicy
}

func (p *schedulePolicies) get(activityType string) *temporal.RetryPolicy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byType[activityType]
}

func (p *schedulePolicies) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &policyInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, p: p}
}

type policyInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	p *schedulePolicies
}

func (i *policyInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&policyOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: outbound}, p: i.p})
}

type policyOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	p *schedulePolicies
}

func (o *policyOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	o.p.mu.Lock()
	if rp := workflow.GetActivityOptions(ctx).RetryPolicy; rp != nil {
		scheduled := *rp // as scheduled: the test environment caps unlimited retries in place afterwards
		o.p.byType[activityType] = &scheduled
	}
	o.p.mu.Unlock()
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

// An activation whose answer was lost may have activated the plan: it is
// retried until the service answers, and only its refusal compensates.
// After five attempts the signup was refunded and closed while the
// subscription may have been active.
func TestAnActivationIsRetriedUntilTheServiceAnswers(t *testing.T) {
	env, a := newEnv()
	failures := 0
	env.OnActivity(a.ActivateSubscription, mock.Anything, mock.Anything).Return(func(ctx context.Context, in ActivateInput) error {
		if failures < 6 {
			failures++
			return errDown
		}
		return nil
	})
	st := run(t, env, trialEnds("pro")...)
	assert.Equal(t, StatusActive, st.Status)
	assert.Empty(t, st.Compensations)
}

// A SignupCancelled that comes before its SignupRequested (another
// partition's order, a producer's retry) is held, and cancels the signup
// once the request is in: it does not close the saga first, which would
// send the request to the DLQ and leave the account to be created by no
// one, or by a new run.
func TestACancellationBeforeTheRequestIsHeldAndThenCancels(t *testing.T) {
	env, _ := newEnv()
	st := run(t, env,
		[]event.Envelope{rec(0, SignupCancelled, `{"reason":"changed my mind"}`, "k0")},
		[]event.Envelope{rec(1, SignupRequested, requestedPro, "k1")})
	assert.Equal(t, StatusCancelled, st.Status)
	assert.Equal(t, []string{"CloseAccount"}, names(st.Compensations), "the account the request created is closed")
	assert.Empty(t, st.Held)
}
