package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// newRunFailsTwice answers every call with "closed" but a new run's, which
// fails twice (Temporal unavailable) and then goes through; the closed run's
// memo covers what it applied.
type newRunFailsTwice struct {
	fakeTemporal
	mu    sync.Mutex
	tries int
	memo  event.Watermarks
}

func (l *newRunFailsTwice) SignalWithStart(_ context.Context, t Target, _ event.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !t.NewRun {
		return fmtClosed(t.WorkflowID)
	}
	if l.tries++; l.tries <= 2 {
		return serviceerror.NewUnavailable("down")
	}
	return nil
}

func (l *newRunFailsTwice) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	return l.memo, nil
}

// The counters say what happened to records, not how often a call was
// tried: a redelivery the closed run's memo covers is skipped once however
// often the new run's call is retried. (records_deduped_total counted it
// on every retry: 3 for 1.)
func TestACallRetriedCountsItsSkippedRedeliveryOnce(t *testing.T) {
	memo := event.NewWatermarks()
	memo.Admit(event.Position{Topic: "orders", Partition: 0, Offset: 0})
	b, err := New(config.Config{
		Kafka: config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond,
			OnClosedWorkflow: config.OnClosedNewRun},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: &newRunFailsTwice{memo: memo}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	assert.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := consume(t, b, ctx, msg(0, "a", `{}`), msg(1, "a", `{}`))
	assert.Equal(t, int64(2), s.committed())
	assert.Equal(t, uint64(1), b.Stats().ClosedRedeliveries, "one redelivered record skipped")
}

// A dead letter too large for the DLQ is counted as reduced once, however
// often its reduced form is tried. (dlq_reduced_total counted each try:
// the retry started again from the whole dead letter.)
func TestADeadLetterReducedIsCountedOnce(t *testing.T) {
	dl := &fakeDLQ{limit: 2000}
	tries := 0
	dl.onWrite = func() {
		dl.mu.Lock()
		defer dl.mu.Unlock()
		if tries++; tries == 2 { // the reduced form's first try fails
			dl.failNext = 1
		}
	}
	b := newTestBridge(t, &fakeTemporal{}, dl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big := make([]byte, 5000)
	for i := range big {
		big[i] = 'x'
	}
	m := msg(0, "a", string(big)) // not JSON: poison
	m.Headers = append(m.Headers, &sarama.RecordHeader{Key: []byte("h"), Value: []byte("v")})
	s := consume(t, b, ctx, m)
	assert.Equal(t, int64(1), s.committed())
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if assert.Len(t, dl.failures, 1) {
		assert.True(t, dl.failures[0].IsReduced())
	}
	assert.Equal(t, uint64(1), b.reducedDeadLetters.Load(), "reduced once")
}

// closedRejectsBatches: the workflow is closed (terminated: no memo); a new
// run's call of several records is rejected (one of them is invalid), one
// record alone goes through.
type closedRejectsBatches struct {
	fakeTemporal
	mu sync.Mutex
}

func (l *closedRejectsBatches) SignalWithStart(_ context.Context, t Target, b event.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !t.NewRun {
		return fmtClosed(t.WorkflowID)
	}
	if len(b.Events) > 1 {
		return serviceerror.NewInvalidArgument("bad payload")
	}
	return nil
}

func (l *closedRejectsBatches) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	return nil, nil
}

// Records resent one by one after a new run's call was rejected are
// counted as reaching a closed workflow without a memo once each, by the
// call that finishes them. (3 records counted 6: each alone call counted
// them again.)
func TestRecordsResentAloneAreCountedOnce(t *testing.T) {
	b, err := New(config.Config{
		Kafka: config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond,
			OnClosedWorkflow: config.OnClosedNewRun},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: &closedRejectsBatches{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	assert.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := consume(t, b, ctx, msg(0, "a", `{}`), msg(1, "a", `{}`), msg(2, "a", `{}`))
	assert.Equal(t, int64(3), s.committed())
	assert.Equal(t, uint64(3), b.Stats().ClosedWithoutMemo, "3 records reached a closed workflow without memo")
}

// lostNewRunAnswer: the workflow's run has closed (its memo covers offset
// 0); the first new-run call starts a run, which keeps running, but its
// answer is lost; later calls signal that run.
type lostNewRunAnswer struct {
	fakeTemporal
	mu      sync.Mutex
	running bool
	memo    event.Watermarks
	got     []int64
}

func (l *lostNewRunAnswer) SignalWithStart(_ context.Context, t Target, b event.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.running && !t.NewRun {
		return fmtClosed(t.WorkflowID)
	}
	for _, e := range b.Events {
		l.got = append(l.got, e.Offset)
	}
	if !l.running {
		l.running = true
		return serviceerror.NewDeadlineExceeded("the answer was lost")
	}
	return nil
}

func (l *lostNewRunAnswer) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	return l.memo, nil
}

// A new run whose start's answer was lost is signalled by the retry, with
// every record of the call: the records the closed run had applied were
// counted as skipped by the try that failed as well as delivered by the
// one that went through (3 counted for 2 records).
func TestANewRunWhoseAnswerWasLostCountsEachRecordOnce(t *testing.T) {
	memo := event.NewWatermarks()
	memo.Admit(event.Position{Topic: "orders", Partition: 0, Offset: 0})
	tc := &lostNewRunAnswer{memo: memo}
	b := newRunBridge(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := consume(t, b, ctx, msg(0, "a", `{}`), msg(1, "a", `{}`))
	assert.Equal(t, int64(2), s.committed())
	st := b.Stats()
	assert.Equal(t, uint64(2), st.Delivered+st.ClosedRedeliveries, "two records, each counted once (delivered or skipped as a redelivery)")
}

// The same lost answer for a workflow terminated without a memo: its
// records are still counted as closed without a memo, once (the retry,
// an ordinary call to the new run, does not ask again).
func TestANewRunOfAMemolessWorkflowWhoseAnswerWasLostIsCounted(t *testing.T) {
	tc := &lostNewRunAnswer{}
	b := newRunBridge(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := consume(t, b, ctx, msg(0, "a", `{}`), msg(1, "a", `{}`))
	assert.Equal(t, int64(2), s.committed())
	assert.Equal(t, uint64(2), b.closedWithoutMemo.Load())
}
