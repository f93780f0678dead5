package workflows

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

type tally struct {
	Offsets []int64 `json:"offsets"`
	Last    bool    `json:"last"`
}

func tallyEntity(maxPerRun int) *Entity[tally] {
	return &Entity[tally]{
		Apply: func(ctx workflow.Context, s *tally, e event.Envelope) {
			s.Offsets = append(s.Offsets, e.Offset)
			s.Last = s.Last || e.Type == "last"
		},
		Done:              func(s *tally) bool { return s.Last },
		IdempotencyHeader: "idem",
		IdempotencyWindow: 2,
		MaxAppliedPerRun:  maxPerRun,
	}
}

func ev(offset int64, typ, idem string) event.Envelope {
	e := event.Envelope{Topic: "t", Partition: 0, Offset: offset, Type: typ}
	if idem != "" {
		e.Headers = []event.Header{{Key: "idem", Value: []byte(idem)}}
	}
	return e
}

func runTally(t *testing.T, en *Entity[tally], carried *Snapshot[tally], batches ...[]event.Envelope) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	wf := func(ctx workflow.Context, c *Snapshot[tally]) (tally, error) {
		out, err := en.Run(ctx, c)
		return out.State, err
	}
	env.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: "Tally"})
	for i, b := range batches {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: b}) }, time.Duration(i+1)*time.Second)
	}
	env.ExecuteWorkflow("Tally", carried)
	require.True(t, env.IsWorkflowCompleted())
	return env
}

func TestEntityDedupesByOffsetAndByIdempotencyKey(t *testing.T) {
	env := runTally(t, tallyEntity(0), nil,
		[]event.Envelope{ev(1, "", "a"), ev(2, "", "b"), ev(1, "", "a")}, // offset 1 again
		[]event.Envelope{ev(3, "", "a"), ev(4, "", "c"), ev(5, "", "a")}, // key a again at 3; at 5 it fell out of the window of 2
		[]event.Envelope{ev(6, "last", "")},
	)
	require.NoError(t, env.GetWorkflowError())
	var st tally
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, []int64{1, 2, 4, 5, 6}, st.Offsets)
}

func TestEntityContinuesAsNewCarryingEverythingAndThePendingRecords(t *testing.T) {
	// One batch of 5: the run limit is reached after the first record, so
	// the other four go to the next run, unapplied, in the carried inbox.
	env := runTally(t, tallyEntity(1), nil, []event.Envelope{ev(1, "", "a"), ev(2, "", "b"), ev(3, "", ""), ev(4, "", ""), ev(5, "", "")})
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want ContinueAsNew, got %v", env.GetWorkflowError())

	var next Snapshot[tally]
	require.NoError(t, converterFor(t).FromPayloads(can.Input, &next))
	assert.Equal(t, []int64{1}, next.State.Offsets)
	assert.Equal(t, int64(1), next.Watermarks["t/0"])
	assert.Equal(t, []string{"a"}, next.RecentKeys)
	assert.Equal(t, 1, next.Stats.Runs)
	assert.Equal(t, 1, next.Stats.Applied)
	require.Len(t, next.Inbox, 4)
	assert.Equal(t, int64(2), next.Inbox[0].Offset)

	// The next run applies the carried records first, dedupes what was
	// applied, and carries on.
	env = runTally(t, tallyEntity(0), &next, []event.Envelope{ev(5, "", ""), ev(6, "", "b"), ev(7, "last", "")})
	require.NoError(t, env.GetWorkflowError())
	var st tally
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, []int64{1, 2, 3, 4, 5, 7}, st.Offsets, "5 by offset and 6 by key are duplicates")
}

// Bridges of both batch formats may feed one workflow while they are
// rolled (dispatch.batch_format): a record is applied once whichever form
// carried it, and the partition of each record is the one it was sent with.
func TestEntityReadsCompactAndFullBatchesAlike(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var seen []event.Position
	en := tallyEntity(0)
	apply := en.Apply
	en.Apply = func(ctx workflow.Context, st *tally, e event.Envelope) {
		seen = append(seen, e.Position())
		apply(ctx, st, e)
	}
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[tally]) (tally, error) {
		out, err := en.Run(ctx, c)
		return out.State, err
	}, workflow.RegisterOptions{Name: "Tally"})
	p1 := func(e event.Envelope) event.Envelope { e.Partition = 1; return e }
	batches := []event.Batch{
		{Events: []event.Envelope{ev(1, "", ""), p1(ev(1, "", "")), ev(2, "", "")}, Compact: true},
		{Events: []event.Envelope{ev(2, "", ""), ev(3, "", ""), p1(ev(1, "", ""))}},                    // a full-form redelivery
		{Events: []event.Envelope{ev(3, "", ""), p1(ev(2, "", "")), ev(4, "last", "")}, Compact: true}, // and a compact one
	}
	for i, b := range batches {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(event.DefaultSignal, b) }, time.Duration(i+1)*time.Second)
	}
	env.ExecuteWorkflow("Tally", nil)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var st tally
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, []int64{1, 1, 2, 3, 2, 4}, st.Offsets)
	assert.Equal(t, []event.Position{{Topic: "t", Offset: 1}, {Topic: "t", Partition: 1, Offset: 1}, {Topic: "t", Offset: 2},
		{Topic: "t", Offset: 3}, {Topic: "t", Partition: 1, Offset: 2}, {Topic: "t", Offset: 4}}, seen)
}

// A negative setting is refused by name. UpdateWindow -1 panicked in
// workflow code at the first update ("slice bounds out of range [2:1]"),
// and a negative MaxCarryBytes silently meant never continuing as new.
func TestNegativeEntitySettingsAreRefusedByName(t *testing.T) {
	en := cartEntity(func(en *Entity[cart]) { en.UpdateWindow, en.MaxCarryBytes = -1, -5 })
	err := en.Validate()
	require.Error(t, err)
	assert.ErrorContains(t, err, "Entity.UpdateWindow is -1: it must be 0 (the default) or more")
	assert.ErrorContains(t, err, "Entity.MaxCarryBytes is -5")
	assert.NoError(t, cartEntity(nil).Validate())

	ct := newCartTest(t, en)
	ct.signal(reserve(1, "a"))
	ct.env.ExecuteWorkflow("Cart", nil)
	require.True(t, ct.env.IsWorkflowCompleted())
	var panicked *temporal.PanicError
	require.ErrorAs(t, ct.env.GetWorkflowError(), &panicked, "the workflow task fails, to be retried by a fixed worker")
	assert.Contains(t, panicked.Error(), "Entity.UpdateWindow is -1")
}

// A record whose timestamp decodes but cannot be encoded again (past year
// 9999, a zone offset of 24 hours: bridges before such records were
// dead-lettered sent them) is carried to the next run, its timestamp made
// encodable (the same instant in UTC, or none past year 9999). The run
// panicked in ContinueAsNew, its workflow task failing for ever. Refusing
// the batch instead would change how recorded histories replay.
func TestARecordWithAnUnencodableTimestampIsCarried(t *testing.T) {
	for name, sig := range map[string]string{
		"compact, past year 9999": `{"events":{"format":2,"groups":[{"topic":"t","partition":0,"records":[{"offset":1},{"offset":2,"ms":300000000000000}]}]}}`,
		"full, zone +24:00":       `{"events":[{"topic":"t","offset":1,"timestamp":"2026-01-01T00:00:00Z"},{"topic":"t","offset":2,"timestamp":"2026-01-01T00:00:00+24:00"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			en := tallyEntity(1) // continues as new after a record, carrying the second
			env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[tally]) (Snapshot[tally], error) {
				return en.Run(ctx, c)
			}, workflow.RegisterOptions{Name: "Tally"})
			env.RegisterDelayedCallback(func() { env.SignalWorkflow("events", json.RawMessage(sig)) }, time.Second)
			env.ExecuteWorkflow("Tally", nil)
			var can *workflow.ContinueAsNewError
			require.ErrorAs(t, env.GetWorkflowError(), &can)
			var next Snapshot[tally]
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
			require.Len(t, next.Inbox, 1)
			assert.Equal(t, int64(2), next.Inbox[0].Offset)
			_, err := next.Inbox[0].Timestamp.MarshalJSON()
			assert.NoError(t, err)
		})
	}
}

// A held record (Entity.Hold) with such a timestamp is carried too. (The
// state was sized before its timestamp was made encodable: it counted as
// over MaxCarryBytes, and the run never continued as new, until Temporal
// terminated it at its history limit.)
func TestAHeldRecordWithAnUnencodableTimestampIsCarried(t *testing.T) {
	st := newSignupTest(t, signupEntity(func(en *Entity[signup]) { en.MaxAppliedPerRun = 1 }))
	sig := `{"events":[{"topic":"signups","partition":1,"offset":0,"key":"s1","type":"PaymentMethodAdded","value":{"card":"visa"},"timestamp":"2026-01-01T00:00:00+24:00"}]}`
	st.at(func() { st.env.SignalWorkflow(event.DefaultSignal, json.RawMessage(sig)) })
	st.signal(signupRec(2, 0, "Other", `{}`))
	st.env.ExecuteWorkflow("Signup", nil)
	require.True(t, st.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, st.env.GetWorkflowError(), &can, "the run continues as new carrying the held record")
	var next Snapshot[signup]
	require.NoError(t, converterFor(t).FromPayloads(can.Input, &next))
	require.Len(t, next.Held, 1)
	assert.True(t, next.Held[0].Record.Timestamp.Equal(time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)), "the same instant: %v", next.Held[0].Record.Timestamp)
}

// A record kept with its undo (WithDeadLetter) with such a timestamp is
// carried, and answers the state query and the result. (The run never
// continued as new, the state query failed, and a saga whose undo failed
// for good could not return its result: "unable to encode".)
func TestAnUndoRecordWithAnUnencodableTimestampIsCarriedQueriedAndReturned(t *testing.T) {
	const precious = `{"topic":"carts","offset":1,"key":"c1","type":"Reserve","value":{"item":"precious"},"timestamp":"2026-01-01T00:00:00+24:00"}`
	t.Run("carried", func(t *testing.T) {
		ct := newCartTest(t, cartEntity(func(en *Entity[cart]) { en.MaxAppliedPerRun = 1 }))
		sig := `{"events":[` + precious + `,{"topic":"carts","offset":2,"key":"c1","type":"Reserve","value":{"item":"b"},"timestamp":"2026-01-01T00:00:00Z"}]}`
		ct.at(func() { ct.env.SignalWorkflow(event.DefaultSignal, json.RawMessage(sig)) })
		ct.env.ExecuteWorkflow("Cart", nil)
		require.True(t, ct.env.IsWorkflowCompleted())
		var can *workflow.ContinueAsNewError
		require.ErrorAs(t, ct.env.GetWorkflowError(), &can, "the run continues as new after a record (MaxAppliedPerRun 1)")
	})
	t.Run("queried and returned", func(t *testing.T) {
		ct := newCartTest(t, cartEntity(nil))
		ct.world.failRelease["precious"] = true
		ct.at(func() { ct.env.SignalWorkflow(event.DefaultSignal, json.RawMessage(`{"events":[`+precious+`]}`)) })
		ct.at(func() {
			_, err := ct.env.QueryWorkflow("state")
			assert.NoError(t, err, "the state query while the saga runs")
		})
		ct.signal(pay(2, false))
		ct.env.ExecuteWorkflow("Cart", nil)
		require.True(t, ct.env.IsWorkflowCompleted())
		require.NoError(t, ct.env.GetWorkflowError())
	})
}

// A record with such a timestamp that comes after the saga's end is
// dead-lettered (on_closed_workflow: dlq), its timestamp the same instant
// in UTC. (The DeadLetter activity's input could not be encoded: the
// record was only listed, "could not be dead-lettered".)
func TestALateRecordWithAnUnencodableTimestampIsDeadLettered(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.Finish = func(c *Ctx[cart]) error { return workflow.Sleep(c, 10*time.Second) } // the record comes meanwhile
	}))
	ct.signal(reserve(1, "a"), pay(2, true))
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, json.RawMessage(`{"on_closed":"dlq","events":[{"topic":"carts","offset":3,"key":"c1","type":"Reserve","value":{"item":"x"},"timestamp":"2026-01-01T00:00:00+24:00"}]}`))
	})
	out, err := ct.run(nil)
	require.NoError(t, err)
	require.Len(t, out.Rejected, 1)
	assert.Contains(t, out.Rejected[0].Reason, "dead-lettered (on_closed_workflow: dlq)")
	require.Len(t, ct.world.deadLetters, 1)
	assert.True(t, ct.world.deadLetters[0].Event.Timestamp.Equal(time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)))
}

// The Finish error handed to the new run of late records is kept when a
// late record's timestamp JSON cannot encode: the new run's input was
// sized with that record as too large, and the error cut to nothing.
func TestAPreviousRunErrorIsKeptBesideALateRecordWithAnUnencodableTimestamp(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.Finish = func(c *Ctx[cart]) error {
			_ = workflow.Sleep(c, 10*time.Second) // the late record arrives meanwhile
			return errors.New("outcome service down")
		}
	}))
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{reserve(1, "a"), pay(2, true)}, OnClosed: "new_run"})
	})
	ct.at(func() {
		ct.env.SignalWorkflow(event.DefaultSignal, json.RawMessage(`{"on_closed":"new_run","events":[{"topic":"carts","offset":3,"key":"c1","type":"Reserve","value":{"item":"x"},"timestamp":"2026-01-01T00:00:00+24:00"}]}`))
	})
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	assert.Equal(t, "outcome service down", next.PreviousRunError)
	require.Len(t, next.Inbox, 1)
}
