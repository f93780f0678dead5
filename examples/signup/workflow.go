package signup

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/workflows"
)

// SignupSaga is the signup workflow. The bridge starts it with no input and
// signals it the user's events; a run continued as new gets the carried
// State (so the parameter must be *State). It returns its final State.
func SignupSaga(ctx workflow.Context, carried *State) (State, error) {
	return signupEntity().Run(ctx, carried)
}

// untilDone retries an activity until it succeeds or fails with a
// non-retryable error, backing off to a minute between attempts. A new
// policy each time: the SDK's test environment caps unlimited retries in
// the policy it is given.
func untilDone() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute}
}

// signupEntity wires the handlers into the runtime. It is built anew on
// every run: it is configuration, and the signup's data lives in the State.
func signupEntity() *workflows.Entity[Signup] {
	retry := &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5}
	en := &workflows.Entity[Signup]{
		Final:           []string{StatusActive, StatusFailed, StatusCancelled},
		ActivityOptions: workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: retry},
		// An undo is retried until it is done: giving up leaves a charge
		// unrefunded on a failed signup.
		Compensation: workflows.CompensationOptions{
			ActivityOptions: workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: untilDone()},
		},
		StatusSearchAttribute: StatusSearchAttribute, // temporal workflow list --query 'SagaStatus="failed"'
		IdempotencyHeader:     IdempotencyHeader,     // drops a producer's retried send, at whatever offset
	}
	workflows.On(en, SignupRequested, requested)
	workflows.On(en, PaymentMethodAdded, paymentMethodAdded)
	workflows.On(en, TrialEnded, func(c *workflows.Ctx[Signup], _ struct{}) error {
		if err := holdUntilRequested(c); err != nil {
			return err
		}
		return endTrial(c)
	})
	workflows.On(en, SignupCancelled, func(c *workflows.Ctx[Signup], e ReasonEvent) error {
		if err := holdUntilRequested(c); err != nil {
			return err
		}
		return c.Fail(StatusCancelled, errors.New("cancelled: "+e.Reason))
	})
	workflows.OnTimeout(en, TimeoutTrial, endTrial)
	workflows.OnUpdate(en, UpdateChangePlan, validateChangePlan, changePlan)
	return en
}

// requested creates the account (undone by closing it) and starts the trial.
func requested(c *workflows.Ctx[Signup], e SignupRequestedEvent) error {
	if c.Status() != StatusNew {
		return fmt.Errorf("%s: signup %s is already %s", SignupRequested, c.Key(), c.Status())
	}
	price, ok := PriceCents(e.Plan)
	if !ok {
		return fmt.Errorf("%s: unknown plan %q", SignupRequested, e.Plan) // the record is rejected
	}
	c.State.Email, c.State.Plan, c.State.PriceCents = e.Email, e.Plan, price
	var a *Activities
	in := AccountInput{UserID: c.Key(), Email: e.Email}
	closeAccount := workflows.UndoActivity("CloseAccount", a.CloseAccount, in)
	c.Begin(StepCreateAccount)
	if err := workflow.ExecuteActivity(c.UndoableStep(), a.CreateAccount, in).Get(c, &c.State.AccountID); err != nil {
		// A creation that failed other than by the service's refusal may
		// have created the account (an attempt whose answer was lost), so
		// it is closed too; closing none is harmless. Signups whose
		// creation failed before this change did not; GetVersion keeps
		// their histories replaying (asked only when one fails).
		if !workflows.Refused(err) && workflow.GetVersion(c, "signup.close-unknown-account", workflow.DefaultVersion, 1) >= 1 {
			c.Compensate(closeAccount)
		}
		if c.CancelRequested() {
			return nil // the runtime compensates, the signup ends cancelled
		}
		return c.Fail(StatusFailed, err)
	}
	c.Completed(StepCreateAccount, closeAccount)
	if c.CancelRequested() {
		return nil
	}
	c.SetStatus(StatusTrial)
	return c.StartTimeout(TimeoutTrial, TrialPeriod)
}

// holdUntilRequested holds a record that came before the signup itself
// (another producer, another partition, a retry): the runtime hands it to
// its handler again once SignupRequested has been applied. It returns nil
// when the signup is in.
func holdUntilRequested(c *workflows.Ctx[Signup]) error {
	if c.Status() == StatusNew {
		return c.Hold("waiting for " + SignupRequested)
	}
	return nil
}

// paymentMethodAdded keeps the card to charge. It may come before the
// signup itself (another producer, another partition): it is kept then too.
func paymentMethodAdded(c *workflows.Ctx[Signup], e PaymentMethodAddedEvent) error {
	if c.Status() != StatusNew && c.Status() != StatusTrial {
		return fmt.Errorf("%s: signup %s is %s", PaymentMethodAdded, c.Key(), c.Status())
	}
	c.State.PaymentMethod = e.PaymentMethod
	return nil
}

// endTrial charges the first month (undone by a refund) and activates the
// subscription. It runs on TrialEnded or when the trial's timeout fires.
func endTrial(c *workflows.Ctx[Signup]) error {
	if c.Status() != StatusTrial {
		return fmt.Errorf("the trial of signup %s is not running: it is %s", c.Key(), c.Status())
	}
	c.CancelTimeout(TimeoutTrial)
	if c.State.PaymentMethod == "" {
		return c.Fail(StatusCancelled, errors.New("the trial ended without a payment method"))
	}
	var a *Activities
	charge := ChargeInput{UserID: c.Key(), PaymentMethod: c.State.PaymentMethod, AmountCents: c.State.PriceCents}
	refund := workflows.UndoActivity("RefundFirstMonth", a.RefundFirstMonth, charge)
	// A charge that went through and whose answer was lost must still be
	// refunded, so the refund is registered before the charge (a refund of
	// nothing charged is harmless). Activation may have happened when its
	// answer was lost, so it is retried until the service answers; only
	// its refusal compensates. Signups whose trial ended before this change
	// did neither; GetVersion keeps their histories replaying.
	v := workflow.GetVersion(c, "signup.refund-before-charge", workflow.DefaultVersion, 1)
	c.Begin(StepCharge)
	if v >= 1 {
		c.Compensate(refund)
	}
	chargeCtx := workflow.Context(c)
	if v >= 1 {
		chargeCtx = c.UndoableStep() // a request to cancel waits for the charge to land before refunding it
	}
	err := workflow.ExecuteActivity(chargeCtx, a.ChargeFirstMonth, charge).Get(c, &c.State.ChargeID)
	if v >= 1 && c.CancelRequested() {
		return nil // the refund is registered: the runtime refunds whatever landed, closes the account
	}
	if err != nil {
		return c.Fail(StatusFailed, err) // refunds (if registered), closes the account; return at once: Fail is final
	}
	if v >= 1 {
		c.Completed(StepCharge)
	} else {
		c.Completed(StepCharge, refund)
	}
	c.Begin(StepActivate)
	activate := workflow.Context(c)
	if v >= 1 {
		// A request to cancel cannot stop an activation begun either: the
		// subscription becomes active, and the request comes too late.
		activate = workflow.WithActivityOptions(c.IrrevocableStep(), workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: untilDone()})
	}
	if err := workflow.ExecuteActivity(activate, a.ActivateSubscription, ActivateInput{UserID: c.Key(), Plan: c.State.Plan}).Get(activate, nil); err != nil {
		return c.Fail(StatusFailed, err) // refunds, then closes the account
	}
	c.Completed(StepActivate)
	c.SetStatus(StatusActive)
	return nil
}

// validateChangePlan accepts a plan change only for a known plan during the
// trial; a refused update leaves no trace in the history.
func validateChangePlan(st State, in ChangePlan) error {
	if _, ok := PriceCents(in.Plan); !ok {
		return fmt.Errorf("change-plan: unknown plan %q", in.Plan)
	}
	if st.Status != StatusTrial {
		return fmt.Errorf("change-plan: signup %s is %s; the plan can change only during the trial", st.Key, st.Status)
	}
	return nil
}

// changePlan switches the plan. The state may have moved on since the
// validator ran, so it checks the status again.
func changePlan(c *workflows.Ctx[Signup], in ChangePlan) (PlanChanged, error) {
	if c.Status() != StatusTrial {
		return PlanChanged{}, fmt.Errorf("change-plan: signup %s is %s", c.Key(), c.Status())
	}
	c.State.Plan = in.Plan
	c.State.PriceCents, _ = PriceCents(in.Plan)
	return PlanChanged{Plan: c.State.Plan, PriceCents: c.State.PriceCents}, nil
}

// RegisterWith registers SignupSaga under WorkflowType and the services'
// activities with w.
func RegisterWith(w worker.Registry, a *Activities) {
	w.RegisterWorkflowWithOptions(SignupSaga, workflow.RegisterOptions{Name: WorkflowType})
	w.RegisterActivity(a)
}
