package bridge

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// slowWorkflow is one workflow that applies the records it is signalled
// one at a time, at its own pace, and answers the applied query.
type slowWorkflow struct {
	fakeTemporal
	mu       sync.Mutex
	queue    []event.Envelope // signalled, not yet applied
	applied  event.Watermarks
	worst    int // the most records outstanding right after a call
	maxBatch int
}

func (s *slowWorkflow) SignalWithStart(_ context.Context, _ Target, b event.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, b.Events...)
	s.worst = max(s.worst, len(s.queue))
	s.maxBatch = max(s.maxBatch, len(b.Events))
	return nil
}

func (s *slowWorkflow) AppliedWatermarks(context.Context, string) (event.Watermarks, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := event.NewWatermarks()
	for k, v := range s.applied {
		w[k] = v
	}
	return w, nil
}

// applyOne applies the oldest signalled record; false when none waits.
func (s *slowWorkflow) applyOne() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return false
	}
	s.applied.Admit(s.queue[0].Position())
	s.queue = s.queue[1:]
	return true
}

// A workflow that applies slowly is not sent more than
// dispatch.workflow_window_records it has not applied: the bridge asks it
// and waits, and everything still arrives, once, in order.
func TestAWorkflowThatIsBehindIsNotSentMoreThanItsWindow(t *testing.T) {
	const window = 20
	wf := &slowWorkflow{applied: event.NewWatermarks()}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 5, Linger: time.Millisecond},
		Dispatch: config.Dispatch{WorkflowWindowRecords: window, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: wf, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the workflow applies a record every millisecond
		for ctx.Err() == nil {
			wf.applyOne()
			time.Sleep(time.Millisecond)
		}
	}()
	var msgs []*sarama.ConsumerMessage
	for i := range 300 {
		msgs = append(msgs, msg(int64(i), "hot", `{}`))
	}
	s := consume(t, b, ctx, msgs...)
	assert.Equal(t, int64(300), s.committed())
	wf.mu.Lock()
	defer wf.mu.Unlock()
	t.Logf("at most %d records outstanding (window %d, largest call %d); %d waits", wf.worst, window, wf.maxBatch, b.windowWaits.Load())
	assert.LessOrEqual(t, wf.worst, window, "the bridge outran the workflow")
	assert.Positive(t, b.windowWaits.Load(), "the bridge never had to wait")
}

// closedTemporal answers the applied query as a closed workflow does
// (ErrWorkflowClosed) and records the calls.
type closedTemporal struct {
	fakeTemporal
	queries int
}

func (c *closedTemporal) AppliedWatermarks(context.Context, string) (event.Watermarks, error) {
	c.queries++
	return nil, fmt.Errorf("%w: w", ErrWorkflowClosed)
}

// A workflow that closed with sent records it never applied (terminated,
// timed out) never catches up: its window is forgotten at once, so the
// partition goes on to the call (which follows the closed-workflow
// policy) instead of asking for ever.
func TestAClosedWorkflowsWindowIsForgotten(t *testing.T) {
	tc := &closedTemporal{}
	b := newTestBridge(t, &tc.fakeTemporal, &fakeDLQ{})
	b.deps.Temporal = tc
	b.windows = newWindows(2, 1<<20)
	target := Target{WorkflowID: "w", WorkflowType: "W"}
	b.windows.sent("w", event.Position{Topic: "orders", Offset: 1}, 2, 10) // a full window, never applied
	f := &flow{ctx: context.Background()}
	require.NoError(t, b.awaitWindow(f, target, 1, 10))
	assert.Equal(t, 1, tc.queries)
	assert.True(t, b.windows.fits("w", "W", 2, 10), "forgotten")
}
