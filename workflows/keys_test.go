package workflows

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// continueOnce runs batch with a run limit of limit records and returns
// what the run carried into the next.
func continueOnce(t *testing.T, en *Entity[tally], batch []event.Envelope) Snapshot[tally] {
	t.Helper()
	env := runTally(t, en, nil, batch)
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want ContinueAsNew, got %v", env.GetWorkflowError())
	var next Snapshot[tally]
	require.NoError(t, converterFor(t).FromPayloads(can.Input, &next))
	return next
}

// A producer's retried send carries the same binary idempotency key (a raw
// 16-byte UUID). The keys were carried across ContinueAsNew as JSON
// strings, which turn each invalid byte into U+FFFD: the next run let the
// retry through.
func TestABinaryIdempotencyKeyIsRememberedAcrossContinueAsNew(t *testing.T) {
	key := "\x9f\x12\xc3\x00\xfe\x81\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09" // not UTF-8
	first, retry := ev(1, "", key), ev(2, "", key)

	next := continueOnce(t, tallyEntity(1), []event.Envelope{first, retry})
	env := runTally(t, tallyEntity(0), &next, []event.Envelope{ev(3, "last", "")})
	var st tally
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.Equal(t, []int64{1, 3}, st.Offsets, "the retry at offset 2 was applied a second time (carried keys %q)", next.RecentKeys)
}

// Keys are bounded in number (IdempotencyWindow), and were not in bytes:
// with keys of 1.1 KB the remembered ones alone were over MaxCarryBytes
// (1,000 of them, the default window, over the default 1 MiB), and the run
// could never continue as new (until Temporal's history limit terminated
// it). Here a tenth of each, so the run's one workflow task stays well
// under the SDK's deadlock detection (1 s) under the race detector.
func TestLongIdempotencyKeysDoNotStopTheRunContinuingAsNew(t *testing.T) {
	en := tallyEntity(100)
	en.IdempotencyWindow, en.MaxCarryBytes = 100, 100<<10
	var b []event.Envelope
	for i := 1; i <= 100; i++ {
		b = append(b, ev(int64(i), "", fmt.Sprintf("%04d-%s", i, strings.Repeat("k", 1100))))
	}
	next := continueOnce(t, en, append(b, ev(101, "", "")))
	require.Len(t, next.RecentKeys, 100)

	// The next run still knows them: a retry of the last is dropped.
	en = tallyEntity(0)
	en.IdempotencyWindow, en.MaxCarryBytes = 100, 100<<10
	env := runTally(t, en, &next, []event.Envelope{ev(102, "", string(b[99].Headers[0].Value)), ev(103, "last", "")})
	var st tally
	require.NoError(t, env.GetWorkflowResult(&st))
	assert.NotContains(t, st.Offsets, int64(102), "a retry of a long key carried across")
}

// A run recorded before keyDigestChange remembered its keys whole, and is
// replayed so: its carried state was sized with them.
func TestARunRecordedBeforeKeyDigestsRemembersKeysWhole(t *testing.T) {
	long := strings.Repeat("k", 100)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, c *Snapshot[tally]) (tally, error) {
		out, err := tallyEntity(1).Run(ctx, c)
		return out.State, err
	}, workflow.RegisterOptions{Name: "Tally"})
	env.OnGetVersion(keyDigestChange, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(event.DefaultSignal, event.Batch{Events: []event.Envelope{ev(1, "", long), ev(2, "", "")}})
	}, time.Second)
	env.ExecuteWorkflow("Tally", nil)
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want ContinueAsNew, got %v", env.GetWorkflowError())
	var next Snapshot[tally]
	require.NoError(t, converterFor(t).FromPayloads(can.Input, &next))
	assert.Equal(t, []string{long}, next.RecentKeys)

	next = continueOnce(t, tallyEntity(1), []event.Envelope{ev(1, "", long), ev(2, "", "")})
	assert.Equal(t, []string{rememberedKey(long)}, next.RecentKeys, "since the change")
	assert.Len(t, next.RecentKeys[0], 50)
}
