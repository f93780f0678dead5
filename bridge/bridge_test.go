package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// fakeTemporal answers each call with the next scripted error (nil once the
// script runs out) and records what was accepted.
type fakeTemporal struct {
	mu       sync.Mutex
	script   []error
	calls    int
	accepted []event.Envelope
	closed   event.Watermarks
}

func (f *fakeTemporal) SignalWithStart(ctx context.Context, _ Target, b event.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.script) > 0 {
		err := f.script[0]
		f.script = f.script[1:]
		if err != nil {
			return err
		}
	}
	f.accepted = append(f.accepted, b.Events...)
	return nil
}

func (f *fakeTemporal) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	return f.closed, nil
}

func (f *fakeTemporal) TaskQueueBacklog(context.Context, string) (Backlog, error) {
	return Backlog{}, nil
}

type fakeDLQ struct {
	mu       sync.Mutex
	failures []dlq.Failure
	failNext int
	tried    int
}

func (f *fakeDLQ) Write(_ context.Context, fl dlq.Failure) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tried++
	if f.failNext > 0 {
		f.failNext--
		return errors.New("broker down")
	}
	f.failures = append(f.failures, fl)
	return nil
}

// fakeSession records the committable position; the rest of the interface is unused.
type fakeSession struct {
	sarama.ConsumerGroupSession
	ctx  context.Context
	mu   sync.Mutex
	next int64 // the offset a commit would write; 0 = nothing marked
}

func (s *fakeSession) Context() context.Context { return s.ctx }
func (s *fakeSession) GenerationID() int32      { return 1 }
func (s *fakeSession) MarkOffset(_ string, _ int32, next int64, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if next <= s.next {
		panic("marks must only move forward")
	}
	s.next = next
}

func (s *fakeSession) committed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

type fakeClaim struct {
	sarama.ConsumerGroupClaim
	ch chan *sarama.ConsumerMessage
}

func (c fakeClaim) Messages() <-chan *sarama.ConsumerMessage { return c.ch }
func (c fakeClaim) Topic() string                            { return "orders" }
func (c fakeClaim) Partition() int32                         { return 0 }
func (c fakeClaim) InitialOffset() int64                     { return 0 }
func (c fakeClaim) HighWaterMarkOffset() int64               { return 0 }

func newTestBridge(t *testing.T, tc *fakeTemporal, dl *fakeDLQ) *Bridge {
	t.Helper()
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: dl, Logger: quiet()})
	require.NoError(t, err)
	return b
}

// consume runs ConsumeClaim over msgs until every record is committable,
// or ctx ends, and then revokes the claim.
func consume(t *testing.T, b *Bridge, ctx context.Context, msgs ...*sarama.ConsumerMessage) *fakeSession {
	t.Helper()
	b.dispatcher.start(4)
	defer b.dispatcher.stop()
	ch := make(chan *sarama.ConsumerMessage, len(msgs))
	for _, m := range msgs {
		ch <- m
	}
	s := &fakeSession{ctx: ctx}
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch}))
	}()
	want := msgs[len(msgs)-1].Offset + 1
	for s.committed() < want && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	close(ch) // revoke
	<-done
	return s
}

func msg(offset int64, key, value string) *sarama.ConsumerMessage {
	return &sarama.ConsumerMessage{Topic: "orders", Partition: 0, Offset: offset, Key: []byte(key), Value: []byte(value),
		Headers: []*sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte("E")}}}
}

func TestRetryableErrorsAreRetriedThenMarked(t *testing.T) {
	tc := &fakeTemporal{script: []error{
		serviceerror.NewUnavailable("down"), serviceerror.NewResourceExhausted(0, "busy"), context.DeadlineExceeded,
	}}
	b := newTestBridge(t, tc, &fakeDLQ{})
	s := consume(t, b, context.Background(), msg(0, "a", `{}`), msg(1, "b", `{}`))
	assert.Equal(t, int64(2), s.committed())
	assert.Equal(t, 5, tc.calls)
	assert.Equal(t, uint64(3), b.Stats().Retries)
	assert.Equal(t, uint64(2), b.Stats().Delivered)
}

func TestPermanentErrorIsolatesTheRejectedRecordAndMovesOn(t *testing.T) {
	// The batch call is rejected; resent one by one, only record 0 is.
	invalid := serviceerror.NewInvalidArgument("bad payload")
	tc := &fakeTemporal{script: []error{invalid, invalid}}
	dl := &fakeDLQ{}
	b := newTestBridge(t, tc, dl)
	s := consume(t, b, context.Background(), msg(0, "a", `{}`), msg(1, "a", `{}`))
	assert.Equal(t, int64(2), s.committed())
	require.Len(t, dl.failures, 1)
	assert.Equal(t, dlq.ClassRejected, dl.failures[0].Class)
	assert.Equal(t, "order-a", dl.failures[0].WorkflowID)
	assert.Equal(t, int64(0), dl.failures[0].Offset)
	require.Len(t, tc.accepted, 1)
	assert.Equal(t, int64(1), tc.accepted[0].Offset)
}

func TestPoisonIsMarkedOnlyAfterTheDLQHoldsIt(t *testing.T) {
	dl := &fakeDLQ{failNext: 3}
	b := newTestBridge(t, &fakeTemporal{}, dl)
	s := consume(t, b, context.Background(), msg(0, "a", `{not json`))
	assert.Equal(t, int64(1), s.committed())
	require.Len(t, dl.failures, 1)
	assert.Equal(t, dlq.ClassDecode, dl.failures[0].Class)
}

func TestClosedWorkflowRedeliveryIsSkippedNewRecordIsDeadLettered(t *testing.T) {
	closed := fmtClosed("order-a")
	tc := &fakeTemporal{script: []error{closed, closed}, closed: event.Watermarks{"orders/0": 5}}
	dl := &fakeDLQ{}
	b := newTestBridge(t, tc, dl)
	s := consume(t, b, context.Background(), msg(5, "a", `{}`), msg(6, "a", `{}`))
	assert.Equal(t, int64(7), s.committed())
	assert.Equal(t, uint64(1), b.Stats().ClosedRedeliveries)
	require.Len(t, dl.failures, 1)
	assert.Equal(t, dlq.ClassWorkflowClosed, dl.failures[0].Class)
	assert.Equal(t, int64(6), dl.failures[0].Offset)
}

func TestShutdownDuringRetriesMarksNothing(t *testing.T) {
	tc := &fakeTemporal{}
	for range 1000 {
		tc.script = append(tc.script, serviceerror.NewUnavailable("down"))
	}
	b := newTestBridge(t, tc, &fakeDLQ{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	s := consume(t, b, ctx, msg(0, "a", `{}`), msg(1, "a", `{}`))
	assert.Zero(t, s.committed(), "a record Temporal never accepted must not be marked")
	assert.Empty(t, tc.accepted)
}

func fmtClosed(id string) error { return errors.Join(ErrWorkflowClosed, errors.New(id)) }

func TestClassify(t *testing.T) {
	assert.Equal(t, kindRetryable, classify(serviceerror.NewUnavailable("x")))
	assert.Equal(t, kindRetryable, classify(serviceerror.NewResourceExhausted(0, "x")))
	assert.Equal(t, kindRetryable, classify(serviceerror.NewWorkflowNotReady("x")))
	assert.Equal(t, kindRetryable, classify(errors.New("connection reset")))
	assert.Equal(t, kindPermanent, classify(serviceerror.NewInvalidArgument("x")))
	assert.Equal(t, kindPermanent, classify(serviceerror.NewNamespaceNotFound("x")))
	assert.Equal(t, kindClosed, classify(fmtClosed("w")))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
