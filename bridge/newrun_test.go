package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// lostStartTemporal has a workflow whose run has closed. A call that
// starts a new run starts one, which applies the call's records and
// completes at once, its memo saying what it applied; the answer to the
// first such call is lost.
type lostStartTemporal struct {
	fakeTemporal
	mu      sync.Mutex
	runs    int              // runs started
	applied []int64          // offsets applied, by any run
	memo    event.Watermarks // the last closed run's
}

func (l *lostStartTemporal) SignalWithStart(_ context.Context, t Target, b event.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !t.NewRun {
		return fmtClosed(t.WorkflowID)
	}
	l.runs++
	w := event.NewWatermarks()
	for _, e := range b.Events {
		l.applied = append(l.applied, e.Offset)
		w.Admit(e.Position())
	}
	l.memo = w
	if l.runs == 1 {
		return serviceerror.NewDeadlineExceeded("the answer was lost")
	}
	return nil
}

func (l *lostStartTemporal) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.memo, nil
}

// With on_closed_workflow new_run, a call that started a new run but got
// no answer (a deadline exceeded, a connection lost) is decided again from
// what Temporal says next: the run it started may have applied the records
// and closed. (The retry started yet another run, with the first closed
// run's watermarks, which applied the record a second time.)
func TestANewRunWhoseAnswerWasLostIsNotStartedAgain(t *testing.T) {
	tc := &lostStartTemporal{memo: event.NewWatermarks()} // run 1 closed, having applied nothing of these
	b := newRunBridge(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := consume(t, b, ctx, msg(0, "a", `{}`))
	assert.Equal(t, int64(1), s.committed())
	tc.mu.Lock()
	defer tc.mu.Unlock()
	assert.Equal(t, 1, tc.runs, "runs started")
	assert.Equal(t, []int64{0}, tc.applied, "the record is applied once")
}

// newRunBridge is a bridge of the orders route on tc with the new_run
// closed-workflow policy and fast retries.
func newRunBridge(t *testing.T, tc Temporal) *Bridge {
	t.Helper()
	b, err := New(config.Config{
		Kafka: config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond,
			OnClosedWorkflow: config.OnClosedNewRun},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	return b
}
