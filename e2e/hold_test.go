package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/examples/signup"
)

// Events that arrive before their precondition are held, not lost (#15
// item 3), on the real stack: ann's TrialEnded and PaymentMethodAdded come
// before her SignupRequested (another producer, a retry); the saga holds
// TrialEnded, applies it once the signup is in, and ends active. bob's
// TrialEnded has no signup yet: the state query lists it under held, with
// its reason and offset, and nothing is rejected.
func TestAnEventBeforeItsPreconditionIsHeldThenApplied(t *testing.T) {
	e := newEnv(t, 1)
	tq := e.taskQueue + "-signup"
	e.startWorkerOn(tq, func(w worker.Worker) { signup.RegisterWith(w, &signup.Activities{}) })

	send := func(key, typ, value string) int64 {
		_, off, err := e.producer.SendMessage(&sarama.ProducerMessage{
			Topic: e.topic, Key: sarama.StringEncoder(e.id + "-" + key), Value: sarama.StringEncoder(value),
			Headers: []sarama.RecordHeader{{Key: []byte(signup.TypeHeader), Value: []byte(typ)}},
		})
		require.NoError(t, err)
		return off
	}
	send("ann", signup.TrialEnded, `{}`)
	send("ann", signup.PaymentMethodAdded, `{"payment_method":"pm_visa"}`)
	send("ann", signup.SignupRequested, `{"email":"ann@example.com","plan":"pro"}`)
	bobAt := send("bob", signup.TrialEnded, `{}`)

	_, stop := e.runBridgeWith(e.topic, func(c *config.Config) {
		c.Routes = []config.Route{{Topic: e.topic, TypeHeader: signup.TypeHeader, WorkflowType: signup.WorkflowType,
			WorkflowID: "signup-{key}", TaskQueue: tq}}
	})
	defer stop()

	var ann signup.State
	require.Eventually(t, func() bool {
		_, err := e.tc.DescribeWorkflowExecution(t.Context(), "signup-"+e.id+"-ann", "")
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "ann's saga never started")
	// Within the trial's 2 minutes: only the held TrialEnded can end it now.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, e.tc.GetWorkflow(ctx, "signup-"+e.id+"-ann", "").Get(ctx, &ann), "ann's saga did not end: the held TrialEnded was not applied")
	assert.Equal(t, signup.StatusActive, ann.Status, "ann's saga: %+v", ann.Progress)
	assert.Equal(t, []string{signup.StepCreateAccount, signup.StepCharge, signup.StepActivate}, ann.CompletedSteps)
	assert.Empty(t, ann.Held)
	assert.Empty(t, ann.Rejected)
	assert.Equal(t, 3, ann.Stats.Applied)

	var bob signup.State
	require.Eventually(t, func() bool {
		v, err := e.tc.QueryWorkflow(t.Context(), "signup-"+e.id+"-bob", "", "state")
		return err == nil && v.Get(&bob) == nil && len(bob.Held) == 1
	}, 30*time.Second, 100*time.Millisecond, "bob's TrialEnded is never listed as held")
	assert.Equal(t, signup.StatusNew, bob.Status)
	assert.Equal(t, bobAt, bob.Held[0].Offset)
	assert.Equal(t, "waiting for "+signup.SignupRequested, bob.Held[0].Reason)
	assert.Empty(t, bob.Rejected)
}
