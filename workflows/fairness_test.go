package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities/contract"
	"github.com/sagabridge/sagabridge/event"
)

// ticker counts records and says when its timeout and its update ran.
type ticker struct {
	Ticks        int       `json:"ticks"`
	FiredAt      time.Time `json:"fired_at"`
	FiredAfter   int       `json:"fired_after"` // records applied before the timeout
	UpdatedAt    time.Time `json:"updated_at"`
	UpdatedAfter int       `json:"updated_after"` // records applied before the update
}

// tickerEntity starts a one-minute timeout at its first record, and each
// record's handler takes 10 s (an activity's time).
func tickerEntity(records int) *Entity[ticker] {
	en := &Entity[ticker]{Done: func(s *ticker) bool {
		return s.Ticks >= records && !s.FiredAt.IsZero() && !s.UpdatedAt.IsZero()
	}}
	On(en, "Tick", func(c *Ctx[ticker], _ struct{}) error {
		if c.State.Ticks == 0 {
			_ = c.StartTimeout("due", time.Minute)
		}
		c.State.Ticks++
		return workflow.Sleep(c, 10*time.Second)
	})
	OnTimeout(en, "due", func(c *Ctx[ticker]) error {
		c.State.FiredAt, c.State.FiredAfter = workflow.Now(c), c.State.Ticks
		return nil
	})
	OnUpdate(en, "ping", nil, func(c *Ctx[ticker], _ string) (string, error) {
		c.State.UpdatedAt, c.State.UpdatedAfter = workflow.Now(c), c.State.Ticks
		return "pong", nil
	})
	return en
}

// tickerTest runs a ticker that is done after records records, with the
// signals signals sends at their times, and an update "ping" sent at
// updateAt; it returns the ticker's result, when it started and the
// update's answer.
func tickerTest(t *testing.T, records int, updateAt time.Duration, signals map[time.Duration]any) (out Snapshot[ticker], start time.Time, answer any) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	en := tickerEntity(records)
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[ticker]) (Snapshot[ticker], error) { return en.Run(ctx, c) },
		workflow.RegisterOptions{Name: "Ticker"})
	for at, sig := range signals {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(event.DefaultSignal, sig) }, at)
	}
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow("ping", "p1", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Error(err) },
			OnComplete: func(v any, err error) { require.NoError(t, err); answer = v }}, "x")
	}, updateAt)
	start = env.Now()
	env.ExecuteWorkflow("Ticker", nil)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.NoError(t, env.GetWorkflowResult(&out))
	return out, start, answer
}

// A steady stream of records does not starve timeouts and updates: with a
// record every 8 s and handlers of 10 s, a record was always waiting when
// one had been applied, and the selector took it first, so the timeout due
// at +61 s fired, and the update sent at +30 s was answered, only when the
// stream ended (+10m1s for both).
func TestASteadyStreamDoesNotStarveTimeoutsAndUpdates(t *testing.T) {
	const records = 60
	signals := map[time.Duration]any{}
	for i := range records {
		signals[time.Second+time.Duration(i)*8*time.Second] = event.Batch{Events: []event.Envelope{rec(0, int64(i), "Tick", `{}`)}}
	}
	out, start, answer := tickerTest(t, records, 30*time.Second, signals)
	assert.Equal(t, "pong", answer)
	assert.Equal(t, records, out.State.Ticks)
	// Each comes after the records that came before it, and before those
	// that came later: the timeout (due at +61 s) after the 8 records sent
	// up to +57 s, the update (+30 s) after the 4 sent up to +25 s. A
	// record is applied every 10 s, so the backlog at +61 s is 2 records.
	t.Logf("timeout due at +1m1s fired at +%s after %d records; update sent at +30s answered at +%s after %d",
		out.State.FiredAt.Sub(start), out.State.FiredAfter, out.State.UpdatedAt.Sub(start), out.State.UpdatedAfter)
	assert.GreaterOrEqual(t, out.State.FiredAfter, 8, "the timeout fired before records that came before it")
	assert.GreaterOrEqual(t, out.State.UpdatedAfter, 4, "the update ran before records that came before it")
	assert.LessOrEqual(t, out.State.FiredAt.Sub(start), 61*time.Second+3*10*time.Second, "the timeout fired %s late", out.State.FiredAt.Sub(start)-61*time.Second)
	assert.LessOrEqual(t, out.State.UpdatedAt.Sub(start), 30*time.Second+3*10*time.Second, "the update was answered %s late", out.State.UpdatedAt.Sub(start)-30*time.Second)
}

// The new run that takes the records which came after the final status
// (on_closed_workflow: new_run) is a ContinueAsNew, and it remembers what
// every ContinueAsNew does: the idempotency keys and the updates' answers.
// It forgot both: a producer's retry of a record the closed run applied
// (same key, a later offset) was applied again by the new run.
func TestTheNewRunOfLateRecordsRemembersKeys(t *testing.T) {
	en := tallyEntity(0)
	en.IdempotencyWindow = 100
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[tally]) (Snapshot[tally], error) { return en.Run(ctx, c) },
		workflow.RegisterOptions{Name: "Tally"})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(event.DefaultSignal, event.Batch{OnClosed: "new_run", Events: []event.Envelope{ev(1, "", "k1"), ev(2, "last", "k2"), ev(3, "", "k3")}})
	}, time.Second)
	env.ExecuteWorkflow("Tally", nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next Snapshot[tally]
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	// k3 came late: the closed run admitted it (its key is remembered) and
	// hands it on admitted, so the new run applies it.
	assert.Equal(t, []string{"k1", "k2", "k3"}, next.RecentKeys, "the new run's input")

	en2 := tallyEntity(0)
	en2.IdempotencyWindow = 100
	env2 := runTally(t, en2, &next, []event.Envelope{ev(4, "", "k1"), ev(5, "last", "")})
	var st tally
	require.NoError(t, env2.GetWorkflowResult(&st))
	assert.Equal(t, []int64{3, 5}, st.Offsets, "the producer's retry of offset 1 (key k1, offset 4) is not applied again")
}

// So does an update's answer: a client whose answer was lost sends the
// update again (the same update ID) to the workflow, which is the new run
// now, and gets the first answer; it ran again.
func TestTheNewRunOfLateRecordsRemembersUpdateAnswers(t *testing.T) {
	ct := newCartTest(t, cartEntity(func(en *Entity[cart]) {
		en.Finish = func(c *Ctx[cart]) error { return workflow.Sleep(c, 10*time.Second) } // publishing the outcome
	}))
	ct.signal(reserve(1, "a"))
	ct.at(func() {
		ct.env.UpdateWorkflow("cancel", "u1", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Error(err) },
			OnComplete: func(any, error) {}}, cancelRequest{Reason: "first"})
	})
	ct.at(func() { // while Finish runs: a record for the new run
		ct.env.SignalWorkflow(event.DefaultSignal, event.Batch{OnClosed: "new_run", Events: []event.Envelope{reserve(2, "b")}})
	})
	next, err := ct.run(nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can, "the cancelled run hands its late record to a new run")
	require.Len(t, next.RecentUpdates, 1, "the new run's input")

	ct2 := newCartTest(t, cartEntity(nil))
	var answer any
	ct2.at(func() {
		ct2.env.UpdateWorkflow("cancel", "u1", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(v any, err error) { require.NoError(t, err); answer = v }}, cancelRequest{Reason: "first"})
	})
	out, _ := ct2.run(&next)
	assert.NotNil(t, answer)
	assert.Zero(t, out.Stats.Updates, "the retried update ran again in the new run (status %s)", out.Status)
	assert.Equal(t, 1, out.Stats.DedupedUpdates)
}

// The updates' answers are remembered within a quarter of MaxCarryBytes,
// not by count alone: 100 answers of 12 KB (1.2 MB) made the state alone
// larger than MaxCarryBytes (1 MiB), and the run could not continue as
// new, however many records it had applied.
func TestLargeUpdateAnswersDoNotKeepTheRunFromContinuingAsNew(t *testing.T) {
	en := tallyEntity(1)
	OnUpdate(en, "report", nil, func(c *Ctx[tally], _ string) (string, error) { return strings.Repeat("x", 12_000), nil })
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[tally]) (Snapshot[tally], error) { return en.Run(ctx, c) },
		workflow.RegisterOptions{Name: "Tally"})
	for i := range 100 {
		id := fmt.Sprint("u", i)
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow("report", id, &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Error(err) },
				OnComplete: func(_ any, err error) { require.NoError(t, err) }}, "x")
		}, time.Duration(i+1)*time.Second)
	}
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{ev(1, "", ""), ev(2, "", ""), ev(3, "last", "")}})
	}, 200*time.Second)
	env.ExecuteWorkflow("Tally", nil)
	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can, "MaxAppliedPerRun 1 was reached and the run did not continue as new")
	var next Snapshot[tally]
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	size := 0
	for _, u := range next.RecentUpdates {
		size += jsonSize(u)
	}
	assert.LessOrEqual(t, size, defaultMaxCarryBytes/4)
	require.NotEmpty(t, next.RecentUpdates)
	assert.Equal(t, "u99", next.RecentUpdates[len(next.RecentUpdates)-1].ID, "the newest answers are kept")
}

// An answer larger than that budget alone is remembered as an error that
// says the update ran, so that a retry in the next run (Temporal answers
// a retry within the run itself) is not run a second time.
func TestAnAnswerTooLargeToRememberIsNotRunAgainOnARetry(t *testing.T) {
	runs := 0
	entity := func(maxPerRun int) *Entity[tally] {
		en := tallyEntity(maxPerRun)
		OnUpdate(en, "report", nil, func(c *Ctx[tally], _ string) (string, error) {
			runs++
			return strings.Repeat("x", defaultMaxCarryBytes/2), nil
		})
		return en
	}
	run := func(carried *Snapshot[tally], maxPerRun int, records []event.Envelope) (Snapshot[tally], error, error) {
		en := entity(maxPerRun)
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[tally]) (Snapshot[tally], error) { return en.Run(ctx, c) },
			workflow.RegisterOptions{Name: "Tally"})
		var answer error
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow("report", "u1", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Error(err) },
				OnComplete: func(_ any, err error) { answer = err }}, "x")
		}, time.Second)
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: records}) }, 10*time.Second)
		env.ExecuteWorkflow("Tally", carried)
		require.True(t, env.IsWorkflowCompleted())
		var out Snapshot[tally]
		err := env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		if errors.As(err, &can) {
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &out))
			return out, answer, err
		}
		require.NoError(t, err)
		require.NoError(t, env.GetWorkflowResult(&out))
		return out, answer, nil
	}
	next, first, err := run(nil, 1, []event.Envelope{ev(1, "", "")})
	require.Error(t, err, "continued as new")
	require.NoError(t, first)
	assert.Less(t, jsonSize(next.RecentUpdates), 4096, "the answer carried")

	_, retry, err := run(&next, 0, []event.Envelope{ev(3, "last", "")})
	require.NoError(t, err)
	assert.Equal(t, 1, runs, "the retry ran the update again")
	require.Error(t, retry)
	assert.Contains(t, retry.Error(), "too large to remember")
}

// A signal that cannot be decoded (the SDK drops it) counted among the
// batches that came before an update, and the update waited for a batch
// that never came: on an idle saga it was never answered.
func TestAnUpdateAfterAnUndecodableSignalIsAnswered(t *testing.T) {
	out, start, answer := tickerTest(t, 1, 5*time.Second, map[time.Duration]any{
		time.Second:     event.Batch{Events: []event.Envelope{rec(0, 0, "Tick", `{}`)}},
		3 * time.Second: json.RawMessage(`{"events":{"format":3,"groups":[]}}`),
	})
	assert.Equal(t, "pong", answer)
	assert.Less(t, out.State.UpdatedAt.Sub(start), time.Minute+30*time.Second, "the update was answered at +%s", out.State.UpdatedAt.Sub(start))
}

// The keys of the late records dead-lettered because the new run's input
// was full (MaxCarryBytes) are not handed on: they grew the input past
// MaxCarryBytes (7,375 bytes of 4,000), and the new run dropped a
// redrive of such a record as a duplicate.
func TestTheKeysOfLateRecordsDeadLetteredAreNotHandedOn(t *testing.T) {
	en := tallyEntity(0)
	en.IdempotencyWindow, en.MaxCarryBytes = 1000, 4000
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[tally]) (Snapshot[tally], error) { return en.Run(ctx, c) },
		workflow.RegisterOptions{Name: "Tally"})
	env.RegisterActivityWithOptions(func(context.Context, contract.DeadLetterInput) error { return nil },
		activity.RegisterOptions{Name: contract.DeadLetterActivity})
	key := func(i int) string { return fmt.Sprintf("%064d", i) }
	batch := []event.Envelope{ev(1, "last", "")}
	for i := range 78 {
		batch = append(batch, ev(int64(2+i), "", key(i)))
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(event.DefaultSignal, event.Batch{OnClosed: "new_run", Events: batch}) }, time.Second)
	env.ExecuteWorkflow("Tally", nil)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next Snapshot[tally]
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	size := 0
	for _, p := range can.Input.GetPayloads() {
		size += len(p.GetData())
	}
	assert.LessOrEqual(t, size, 4000, "the new run's input")
	require.Less(t, len(next.Inbox), 78, "some late records were dead-lettered")
	redriven := ev(500, "", key(77)) // the last, dead-lettered, redriven
	en2 := tallyEntity(0)
	en2.IdempotencyWindow = 1000
	env2 := runTally(t, en2, &next, []event.Envelope{redriven, ev(501, "last", "")})
	var st tally
	require.NoError(t, env2.GetWorkflowResult(&st))
	assert.Contains(t, st.Offsets, int64(500), "the redriven record was dropped as a duplicate")
}
