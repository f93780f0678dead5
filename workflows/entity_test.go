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
