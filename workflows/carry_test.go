package workflows

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

type bulky struct {
	Pad  string `json:"pad"`
	N    int    `json:"n"`
	Last bool   `json:"last"`
}

// A run whose state was once too large to carry continues as new once it
// is small again: it looks again every stayRecheck records. (It stayed in
// the run for good: a spike of held or bulky state pinned the run, whose
// history then grew until Temporal terminated it, state and all.)
func TestARunThatCouldNotCarryItsStateContinuesAsNewOnceItShrinks(t *testing.T) {
	en := &Entity[bulky]{
		Apply: func(_ workflow.Context, s *bulky, e event.Envelope) {
			switch e.Type {
			case "grow":
				s.Pad = strings.Repeat("x", 8<<10)
			case "shrink":
				s.Pad = ""
			}
			s.N++
			s.Last = s.Last || e.Type == "last"
		},
		Done:             func(s *bulky) bool { return s.Last },
		MaxAppliedPerRun: 1,
		MaxCarryBytes:    4 << 10,
	}
	batch := []event.Envelope{ev(1, "grow", ""), ev(2, "shrink", "")}
	for i := range stayRecheck + 10 {
		batch = append(batch, ev(int64(3+i), "", ""))
	}
	batch = append(batch, ev(int64(3+stayRecheck+10), "last", ""))

	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[bulky]) (Snapshot[bulky], error) { return en.Run(ctx, c) },
		workflow.RegisterOptions{Name: "Bulky"})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: batch}) }, 0)
	env.ExecuteWorkflow("Bulky", nil)
	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can, "the run never continued as new after its state shrank")
	var next Snapshot[bulky]
	require.NoError(t, converterFor(t).FromPayloads(can.Input, &next))
	assert.Empty(t, next.State.Pad)
	assert.LessOrEqual(t, next.State.N, 2+stayRecheck+1, "continued as new within stayRecheck records of shrinking")
	assert.Equal(t, len(batch), next.State.N+len(next.Inbox), "every record applied or carried")
}

// An entity that never ends (no Final) and completes a step per record
// keeps the last keepSteps step names, not every one it ever completed:
// the list is carried across ContinueAsNew, and unbounded it would one day
// be over MaxCarryBytes, the run could no longer continue as new, and
// Temporal would terminate it at its history limit. (CompletedSteps grew by
// one name per record for ever.)
func TestALongLivedEntityKeepsTheLastStepsItCompleted(t *testing.T) {
	en := cartEntity(func(en *Entity[cart]) { en.Final = nil })
	On(en, "Step", func(c *Ctx[cart], _ struct{}) error {
		c.Completed("Step")
		return nil
	})
	ct := newCartTest(t, en)
	carried := &Snapshot[cart]{Progress: Progress{Status: "open", CompletedSteps: slices.Repeat([]string{"Old"}, keepSteps)},
		State: cart{Items: []string{}}}
	ct.signal(rec(0, 1, "Step", `{}`), rec(0, 2, "Step", `{}`))
	var st Snapshot[cart]
	ct.at(func() {
		v, err := ct.env.QueryWorkflow("state")
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		ct.env.CancelWorkflow()
	})
	ct.env.ExecuteWorkflow("Cart", carried)
	require.True(t, ct.env.IsWorkflowCompleted())
	require.Len(t, st.CompletedSteps, keepSteps)
	assert.Equal(t, []string{"Step", "Step"}, st.CompletedSteps[keepSteps-2:], "the newest are kept")
}

// A worker older than event.Envelope.KeyBytes dropped the field from the
// records it decoded, so the size it gave the state it carried left them
// out. Replaying such a history (the bridge already sending key_bytes),
// the run must size the state as it did, or the carry decision, and the
// commands after it, could differ.
func TestTheStateOfOldRunsIsSizedWithoutKeyBytes(t *testing.T) {
	binary := event.Envelope{Topic: "carts", Offset: 3, Type: "Reserve", Value: []byte(`{}`)}
	binary.SetKey("\xff\xfe")
	old := binary
	old.KeyBytes = nil // as the older worker decoded it
	s := Snapshot[cart]{
		Held:                 []HeldRecord{{Record: binary, Reason: "later"}},
		PendingCompensations: []Undo{{Name: "Release", Activity: "Release", Record: &binary}},
	}
	s.Compensations = []CompensationResult{{Name: "Refund", Error: "declined", Undo: &Undo{Name: "Refund", Activity: "Refund", Record: &binary}}}
	want := Snapshot[cart]{
		Held:                 []HeldRecord{{Record: old, Reason: "later"}},
		PendingCompensations: []Undo{{Name: "Release", Activity: "Release", Record: &old}},
	}
	want.Compensations = []CompensationResult{{Name: "Refund", Error: "declined", Undo: &Undo{Name: "Refund", Activity: "Refund", Record: &old}}}
	assert.Equal(t, jsonSize(want), jsonSize(olderRecords(s, false, true)))
	assert.Greater(t, jsonSize(s), jsonSize(want), "KeyBytes count in new runs")
	assert.NotNil(t, s.Held[0].Record.KeyBytes, "the state itself is left as it is")
	assert.NotNil(t, s.PendingCompensations[0].Record.KeyBytes, "the state itself is left as it is")
	assert.NotNil(t, s.Compensations[0].Undo.Record.KeyBytes, "the state itself is left as it is")
}

// Likewise for the marks of a null key and of an empty value: a worker
// older than event.Envelope.KeyNull and ValueEmpty dropped them from the
// records it decoded, and sized its state without them. (Nothing stripped
// them for such runs: a state near MaxCarryBytes could decide otherwise on
// replay.)
func TestTheStateOfOldRunsIsSizedWithoutTheNullAndEmptyMarks(t *testing.T) {
	marked := event.Envelope{Topic: "carts", Offset: 3, Type: "Reserve", KeyNull: true, ValueEmpty: true}
	old := marked
	old.KeyNull, old.ValueEmpty = false, false
	s := Snapshot[cart]{
		Held:                 []HeldRecord{{Record: marked, Reason: "later"}},
		PendingCompensations: []Undo{{Name: "Release", Activity: "Release", Record: &marked}},
	}
	s.Compensations = []CompensationResult{{Name: "Refund", Error: "declined", Undo: &Undo{Name: "Refund", Activity: "Refund", Record: &marked}}}
	want := Snapshot[cart]{
		Held:                 []HeldRecord{{Record: old, Reason: "later"}},
		PendingCompensations: []Undo{{Name: "Release", Activity: "Release", Record: &old}},
	}
	want.Compensations = []CompensationResult{{Name: "Refund", Error: "declined", Undo: &Undo{Name: "Refund", Activity: "Refund", Record: &old}}}
	assert.Equal(t, jsonSize(want), jsonSize(olderRecords(s, true, false)), "a run before the marks, after KeyBytes")
	assert.Equal(t, jsonSize(want), jsonSize(olderRecords(s, false, false)), "a run before both")
	assert.Equal(t, jsonSize(s), jsonSize(olderRecords(s, true, true)), "a run with both")
	assert.True(t, s.Held[0].Record.KeyNull, "the state itself is left as it is")
}

// An update that ends the saga while the run hands over to the next (a
// cancel accepted as the run decides to continue as new) closes the run:
// Finish runs and the timeouts stop. (The run continued as new carrying a
// final status and its timeouts; the next one restarted the timers before
// it closed.)
func TestAnUpdateThatEndsTheSagaDuringTheHandOverClosesTheRun(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) { en.MaxAppliedPerRun = 1 }))
	ct.env.RegisterDelayedCallback(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(1, "a")}})
		ct.env.UpdateWorkflow("cancel", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) }, OnComplete: func(any, error) {},
		}, cancelRequest{Reason: "now"})
	}, time.Second)
	ct.env.ExecuteWorkflow("Cart", nil)
	require.True(t, ct.env.IsWorkflowCompleted())
	err := ct.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if errors.As(err, &can) {
		var next Snapshot[cart]
		require.NoError(t, converterFor(t).FromPayloads(can.Input, &next))
		t.Fatalf("continued as new with status %q and timeouts %v", next.Status, next.Timeouts)
	}
	require.NoError(t, err, "a saga that reached its final status closes")
	v, err := ct.env.QueryWorkflow("state")
	require.NoError(t, err)
	var st Snapshot[cart]
	require.NoError(t, v.Get(&st))
	assert.Equal(t, "cancelled", st.Status)
	assert.Empty(t, st.Timeouts, "the saga's timeouts outlived it")
}

// A run recorded before the timestamps of the state were made encodable
// replays as it ran: an update that made the saga succeed during the
// hand-over dropped its pending compensations from the state sized, among
// them a record whose timestamp JSON cannot encode, and the run continued
// as new. (The replay sized the state with that record as too large and
// closed instead: a nondeterminism error.)
func TestAHandOverRecordedBeforeEncodableTimestampsReplaysAsItRan(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.MaxAppliedPerRun = 1
		OnUpdate(en, "pay-now", nil, func(c *Ctx[cart], _ string) (string, error) {
			c.SetStatus("paid")
			return c.Status(), nil
		})
	}))
	for _, change := range []string{encodableTimestampsChange, doneBeforeContinueChange} {
		ct.env.OnGetVersion(change, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion) // as a history without their markers
	}
	ct.env.RegisterDelayedCallback(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, json.RawMessage(`{"events":[{"topic":"carts","offset":1,"key":"c1","type":"Reserve","value":{"item":"precious"},"timestamp":"2026-01-01T00:00:00+24:00"}]}`))
		ct.env.UpdateWorkflow("pay-now", "u1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) }, OnComplete: func(any, error) {},
		}, "now")
	}, time.Second)
	ct.env.ExecuteWorkflow("Cart", nil)
	require.True(t, ct.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, ct.env.GetWorkflowError(), &can, "the run continued as new when it was recorded")
}
