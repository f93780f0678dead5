package workflows

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// The signup saga of issue #15: SignupRequested opens an account, and
// PaymentMethodAdded (from another producer, on another partition) needs
// it; TrialEnded completes it, SignupCancelled cancels it.
type signup struct {
	Account string   `json:"account"`
	Cards   []string `json:"cards"`
}

type signupEvent struct {
	Email string `json:"email"`
}

type cardEvent struct {
	Card string `json:"card"`
}

const waitingForSignup = "waiting for SignupRequested"

func signupEntity(tune func(en *Entity[signup])) *Entity[signup] {
	en := &Entity[signup]{Final: []string{"active", "cancelled"}}
	On(en, "SignupRequested", func(c *Ctx[signup], e signupEvent) error {
		c.State.Account = e.Email
		c.SetStatus("trial")
		return nil
	})
	On(en, "PaymentMethodAdded", func(c *Ctx[signup], e cardEvent) error {
		if c.State.Account == "" {
			return c.Hold(waitingForSignup)
		}
		c.State.Cards = append(c.State.Cards, e.Card)
		return nil
	})
	On(en, "TrialEnded", func(c *Ctx[signup], _ struct{}) error {
		if len(c.State.Cards) == 0 {
			return c.Hold("waiting for a payment method")
		}
		c.SetStatus("active")
		return nil
	})
	On(en, "SignupCancelled", func(c *Ctx[signup], _ struct{}) error {
		return c.Fail("cancelled", errors.New("cancelled by the customer"))
	})
	OnTimeout(en, "never", func(c *Ctx[signup]) error { return c.Hold("a timeout has no record") })
	OnUpdate(en, "poke", nil, func(c *Ctx[signup], _ string) (string, error) { return "", c.Hold("an update has no record") })
	if tune != nil {
		tune(en)
	}
	return en
}

func signupRec(partition int32, offset int64, typ, value string) event.Envelope {
	return event.Envelope{Topic: "signups", Partition: partition, Offset: offset, Key: "s1", Type: typ, Value: json.RawMessage(value)}
}

var (
	signupRequested = signupRec(0, 5, "SignupRequested", `{"email":"a@example.com"}`)
	cardAdded       = signupRec(1, 0, "PaymentMethodAdded", `{"card":"visa"}`)
	trialEnded      = signupRec(0, 6, "TrialEnded", `{}`)
	cancelled       = signupRec(0, 7, "SignupCancelled", `{}`)
)

// signupTest runs the signup saga in the SDK's test environment.
type signupTest struct {
	t    *testing.T
	env  *testsuite.TestWorkflowEnvironment
	step time.Duration
}

func newSignupTest(t *testing.T, en *Entity[signup]) *signupTest {
	var s testsuite.WorkflowTestSuite
	st := &signupTest{t: t, env: s.NewTestWorkflowEnvironment()}
	wf := func(ctx workflow.Context, c *Snapshot[signup]) (Snapshot[signup], error) { return en.Run(ctx, c) }
	st.env.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: "Signup"})
	return st
}

func (st *signupTest) at(fn func()) {
	st.step += time.Second
	st.env.RegisterDelayedCallback(fn, st.step)
}

func (st *signupTest) signal(batch ...event.Envelope) {
	st.at(func() { st.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: batch}) })
}

func (st *signupTest) query(out *Snapshot[signup]) {
	st.at(func() {
		v, err := st.env.QueryWorkflow("state")
		require.NoError(st.t, err)
		require.NoError(st.t, v.Get(out))
	})
}

func (st *signupTest) run(carried *Snapshot[signup]) (Snapshot[signup], error) {
	st.t.Helper()
	st.env.ExecuteWorkflow("Signup", carried)
	require.True(st.t, st.env.IsWorkflowCompleted())
	var out Snapshot[signup]
	err := st.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if errors.As(err, &can) {
		require.NoError(st.t, converterFor(st.t).FromPayloads(can.Input, &out))
		return out, err
	}
	require.NoError(st.t, err)
	require.NoError(st.t, st.env.GetWorkflowResult(&out))
	return out, nil
}

// A PaymentMethodAdded that arrives before its SignupRequested is held,
// shown in the state, and applied right after the SignupRequested; a
// TrialEnded held for a card is applied after that, in turn.
func TestAHeldRecordIsAppliedOnceItsPreconditionHolds(t *testing.T) {
	st := newSignupTest(t, signupEntity(nil))
	var waiting Snapshot[signup]
	st.signal(cardAdded)
	st.query(&waiting)
	st.signal(signupRequested, trialEnded)
	out, err := st.run(nil)
	require.NoError(t, err)

	require.Len(t, waiting.Held, 1)
	h := waiting.Held[0]
	assert.Equal(t, waitingForSignup, h.Reason)
	assert.Equal(t, AppliedEvent{Topic: "signups", Partition: 1, Offset: 0, Type: "PaymentMethodAdded"}, h.AppliedEvent)
	assert.Equal(t, cardAdded.Value, h.Record.Value)
	assert.Empty(t, waiting.Rejected)

	assert.Equal(t, "active", out.Status)
	assert.Equal(t, "a@example.com", out.State.Account)
	assert.Equal(t, []string{"visa"}, out.State.Cards)
	assert.Empty(t, out.Held)
	assert.Empty(t, out.Rejected)
	assert.Equal(t, 3, out.Stats.Applied, "each record counted once, held or not")
}

// Records that arrive in order are not held.
func TestRecordsInOrderAreNotHeld(t *testing.T) {
	st := newSignupTest(t, signupEntity(nil))
	var open Snapshot[signup]
	st.signal(signupRequested, cardAdded)
	st.query(&open)
	st.signal(trialEnded)
	out, err := st.run(nil)
	require.NoError(t, err)
	assert.Empty(t, open.Held)
	assert.Equal(t, "active", out.Status)
}

// At most Entity.MaxHeld records are held; one more is rejected, saying why.
func TestHeldRecordsAreBounded(t *testing.T) {
	st := newSignupTest(t, signupEntity(func(en *Entity[signup]) { en.MaxHeld = 2 }))
	st.signal(signupRec(1, 0, "PaymentMethodAdded", `{"card":"a"}`), signupRec(1, 1, "PaymentMethodAdded", `{"card":"b"}`),
		signupRec(1, 2, "PaymentMethodAdded", `{"card":"c"}`))
	st.signal(signupRequested, trialEnded)
	out, err := st.run(nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, out.State.Cards, "the held ones applied in arrival order")
	require.Len(t, out.Rejected, 1)
	assert.Equal(t, int64(2), out.Rejected[0].Offset)
	assert.Equal(t, "held records full (Entity.MaxHeld 2): "+waitingForSignup, out.Rejected[0].Reason)
}

// Held records are carried across ContinueAsNew and applied by the next run.
func TestHeldRecordsAreCarriedAcrossContinueAsNew(t *testing.T) {
	st := newSignupTest(t, signupEntity(func(en *Entity[signup]) { en.MaxAppliedPerRun = 1 }))
	st.signal(cardAdded)
	next, err := st.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	require.Len(t, next.Held, 1)
	assert.Equal(t, cardAdded.Offset, next.Held[0].Offset)
	assert.Equal(t, event.Watermarks{"signups/1": 0}, next.Watermarks, "a held record is admitted: its redelivery is a duplicate")

	st = newSignupTest(t, signupEntity(nil))
	st.signal(cardAdded, signupRequested, trialEnded) // the card again: deduped
	out, err := st.run(&next)
	require.NoError(t, err)
	assert.Equal(t, "active", out.Status)
	assert.Equal(t, []string{"visa"}, out.State.Cards)
	assert.Empty(t, out.Held)
	assert.Equal(t, 1, out.Stats.Deduped)
}

// Records still held when the saga ends are rejected with their reason.
func TestHeldRecordsAreReleasedWhenTheSagaEnds(t *testing.T) {
	st := newSignupTest(t, signupEntity(nil))
	st.signal(cardAdded, cancelled)
	out, err := st.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "cancelled", out.Status)
	assert.Empty(t, out.Held)
	require.Len(t, out.Rejected, 1)
	assert.Equal(t, "held until the saga ended: "+waitingForSignup, out.Rejected[0].Reason)
	assert.Equal(t, int64(0), out.Rejected[0].Offset)
	assert.Equal(t, int32(1), out.Rejected[0].Partition)
}

// Only a record's handler can hold: a timeout or update handler that
// calls Hold has its timeout or update rejected.
func TestHoldOutsideARecordHandlerIsAnError(t *testing.T) {
	st := newSignupTest(t, signupEntity(func(en *Entity[signup]) {
		On(en, "Remind", func(c *Ctx[signup], _ struct{}) error { return c.StartTimeout("never", 100*time.Millisecond) })
	}))
	var updateErr error
	st.signal(signupRec(0, 1, "Remind", `{}`))
	st.at(func() {
		st.env.UpdateWorkflow("poke", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { updateErr = err }, OnComplete: func(_ any, err error) { updateErr = err },
		}, "x")
	})
	st.signal(cancelled)
	out, err := st.run(nil)
	require.NoError(t, err)
	require.Error(t, updateErr)
	assert.Contains(t, updateErr.Error(), "only a record's handler can hold its record")
	require.NotEmpty(t, out.Rejected)
	assert.Equal(t, "never", out.Rejected[0].Timeout)
	assert.Contains(t, out.Rejected[0].Reason, "only a record's handler can hold its record")
}
