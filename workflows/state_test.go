package workflows

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// queryJSON schedules a state query and stores its answer as raw JSON.
func (ct *cartTest) queryJSON(out *json.RawMessage) {
	ct.at(func() {
		v, err := ct.env.QueryWorkflow("state")
		require.NoError(ct.t, err)
		require.NoError(ct.t, v.Get(out))
	})
}

// The state answer lists no steps and no compensations as [] (as
// docs/STATE.md shows), never null: before any record, while open, at the
// end, and in the input of a new run.
func TestStateAnswerListsNoStepsAsEmptyNotNull(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	var before, open json.RawMessage
	ct.queryJSON(&before)
	ct.signal(reserve(1, "a"))
	ct.queryJSON(&open)
	ct.signal(pay(2, true))
	out, err := ct.run(nil)
	require.NoError(t, err)
	end, err := json.Marshal(out)
	require.NoError(t, err)
	for name, raw := range map[string]json.RawMessage{"before": before, "open": open, "end": end} {
		assert.NotContains(t, string(raw), "null", name)
		assert.Contains(t, string(raw), `"compensations":[]`, name)
	}
	assert.Contains(t, string(before), `"completed_steps":[]`)

	// A nil slice set by a handler is still shown as [].
	var s Snapshot[cart]
	s.Version = ContractVersion
	r := &runner[cart]{en: cartEntity(nil), c: s, timers: map[string]*timer{}}
	b, err := json.Marshal(r.snapshot())
	require.NoError(t, err)
	assert.Contains(t, string(b), `"completed_steps":[],"compensations":[]`)
}

// A saga that reached a final status without Fail has nothing left to
// undo: its pending compensations are cleared (they would never run).
func TestPendingCompensationsAreClearedWhenTheSagaSucceeds(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	var open json.RawMessage
	ct.signal(reserve(1, "a"), reserve(2, "b"))
	ct.queryJSON(&open)
	ct.signal(pay(3, true))
	out, err := ct.run(nil)
	require.NoError(t, err)
	assert.Equal(t, "paid", out.Status)
	assert.Empty(t, out.PendingCompensations)
	assert.Equal(t, []string{"Hold:a", "Hold:b", "AwaitPayment"}, out.CompletedSteps, "the steps stay listed")
	assert.Contains(t, string(open), `"pending_compensations":[`, "while open the undos are listed")
}

// recent_updates[].result is the update's answer as JSON, not base64; a
// snapshot written before (base64) still decodes to the same JSON.
func TestRecentUpdateResultIsJSON(t *testing.T) {
	ct := newCartTest(t, cartEntity(nil))
	ct.signal(reserve(1, "a"))
	ct.at(func() {
		ct.env.UpdateWorkflow("hold", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) }, OnComplete: func(any, error) {},
		}, "z")
	})
	var open json.RawMessage
	ct.queryJSON(&open)
	ct.signal(pay(2, true))
	_, err := ct.run(nil)
	require.NoError(t, err)
	assert.Contains(t, string(open), `"recent_updates":[{"id":"u1","name":"hold","result":"held z"}]`)

	var old UpdateResult
	require.NoError(t, json.Unmarshal([]byte(`{"id":"u1","name":"cancel","result":"ImNhbmNlbGxlZCI="}`), &old))
	assert.JSONEq(t, `"cancelled"`, string(old.Result), "base64, as recorded before")
	for _, raw := range []string{`"held z"`, `{"status":"cancelled"}`, `[1,2]`, `42`, `"MQ"`} {
		var u UpdateResult
		require.NoError(t, json.Unmarshal([]byte(`{"id":"u1","name":"x","result":`+raw+`}`), &u))
		assert.JSONEq(t, raw, string(u.Result))
	}
}

// An update refused because the saga is over is final: retrying it cannot
// succeed, so the failure says non-retryable (ApplicationFailureInfo's
// non_retryable, which clients read as "do not send this again").
func TestUpdateRefusedAfterTheEndIsNonRetryable(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.Finish = func(c *Ctx[cart]) error { return workflow.Sleep(c, 10*time.Second) }
	}))
	var refused []error
	cb := func() *testsuite.TestUpdateCallback {
		return &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { refused = append(refused, err) },
			OnComplete: func(_ any, err error) {
				if err != nil {
					refused = append(refused, err)
				}
			},
		}
	}
	ct.env.RegisterDelayedCallback(func() {
		// Accepted before the records are applied: refused by the handler.
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(1, "a"), pay(2, true)}})
		ct.env.UpdateWorkflow("cancel", "early", cb(), cancelRequest{Reason: "late"})
	}, time.Second)
	ct.env.RegisterDelayedCallback(func() {
		// Sent while Finish runs: refused by the validator.
		ct.env.UpdateWorkflow("cancel", "late", cb(), cancelRequest{Reason: "late"})
	}, 3*time.Second)
	_, err := ct.run(nil)
	require.NoError(t, err)
	require.Len(t, refused, 2)
	for _, err := range refused {
		assert.Contains(t, err.Error(), "already paid")
		var app *temporal.ApplicationError
		require.ErrorAs(t, err, &app)
		assert.True(t, app.NonRetryable(), "%v", err)
	}
}
