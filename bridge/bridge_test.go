package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	batches  []event.Batch // every call's batch
	targets  []Target      // every call's target
	closed   event.Watermarks
	denied   error // CheckAccess's answer
	failAll  error // every call's answer while set (after the script)
	probes   int   // CheckAccess calls
}

// set makes every call and CheckAccess answer err (nil: accept).
func (f *fakeTemporal) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAll, f.denied = err, err
}

func (f *fakeTemporal) counts() (calls, probes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.probes
}

func (f *fakeTemporal) SignalWithStart(ctx context.Context, target Target, b event.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.batches, f.targets = append(f.batches, b), append(f.targets, target)
	if len(f.script) > 0 {
		err := f.script[0]
		f.script = f.script[1:]
		if err != nil {
			return err
		}
	}
	if f.failAll != nil {
		return f.failAll
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

// AppliedWatermarks says every accepted record is applied.
func (f *fakeTemporal) AppliedWatermarks(context.Context, string) (event.Watermarks, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := event.NewWatermarks()
	for _, e := range f.accepted {
		w.Admit(e.Position())
	}
	return w, nil
}

func (f *fakeTemporal) CheckAccess(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	return f.denied
}

type fakeDLQ struct {
	mu       sync.Mutex
	failures []dlq.Failure
	failNext int
	tried    int
	limit    int    // refuse records larger than this as the broker would (0: no limit)
	onWrite  func() // called at each attempt, before its answer
}

func (f *fakeDLQ) Write(_ context.Context, fl dlq.Failure) error {
	if f.onWrite != nil {
		f.onWrite()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tried++
	if f.limit > 0 && fl.Message(dlq.DefaultSuffix).ByteSize(2) > f.limit {
		return fmt.Errorf("write: %w", sarama.ErrMessageSizeTooLarge)
	}
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

// ResetOffset moves the offset a commit would write back, as sarama's
// does (only back); with nothing marked (0 here, sarama's -1) it stays.
func (s *fakeSession) ResetOffset(_ string, _ int32, next int64, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next != 0 && next <= s.next {
		s.next = next
	}
}

func (s *fakeSession) committed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

type fakeClaim struct {
	sarama.ConsumerGroupClaim
	ch        chan *sarama.ConsumerMessage
	partition int32
	topic     string // "orders" if empty
}

func (c fakeClaim) Messages() <-chan *sarama.ConsumerMessage { return c.ch }
func (c fakeClaim) Topic() string {
	if c.topic == "" {
		return "orders"
	}
	return c.topic
}
func (c fakeClaim) Partition() int32           { return c.partition }
func (c fakeClaim) InitialOffset() int64       { return 0 }
func (c fakeClaim) HighWaterMarkOffset() int64 { return 0 }

func newTestBridge(t *testing.T, tc *fakeTemporal, dl *fakeDLQ) *Bridge {
	t.Helper()
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
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

// A workflow whose run has taken all the signals one run may (the server's
// InvalidArgument "exceeded workflow execution limit for signal events")
// is sent its records again until the run takes them (it continued as new):
// the records are not at fault, nothing is dead-lettered, and the circuit,
// which would pause the task queue's other workflows, stays closed. (Each
// record was dead-lettered as rejected, and the partition moved on.)
func TestARunAtItsSignalLimitIsRetriedNotDeadLettered(t *testing.T) {
	full := serviceerror.NewInvalidArgument(signalLimitExceeded)
	var script []error
	for range 8 { // more than backpressure.circuit.failures
		script = append(script, fmt.Errorf("signal-with-start order-a: %w", full))
	}
	tc := &fakeTemporal{script: script}
	dl := &fakeDLQ{}
	b := newTestBridge(t, tc, dl)
	s := consume(t, b, context.Background(), msg(0, "a", `{}`), msg(1, "a", `{}`))
	assert.Equal(t, int64(2), s.committed())
	assert.Empty(t, dl.failures, "a record was dead-lettered for its workflow's full run")
	require.Len(t, tc.accepted, 2)
	assert.Equal(t, []int64{0, 1}, []int64{tc.accepted[0].Offset, tc.accepted[1].Offset})
	assert.Equal(t, uint64(8), b.Stats().Retries)
	_, _, _, pauses := b.pressure.snapshot()
	assert.Zero(t, pauses[ReasonCircuitOpen], "a full run opened the circuit")
}

// A run the server terminates for its size (history size or count,
// mutable state) answers the signal that crossed the limit with an
// InvalidArgument about the run, not the record: the call is retried, and
// the next try finds the run closed and follows on_closed_workflow. (A
// call of one record was dead-lettered as rejected; under new_run the new
// run never got it, a gap in the key's records.)
func TestARunTerminatedForItsSizeIsRetriedNotDeadLettered(t *testing.T) {
	for _, m := range []string{"Workflow history size exceeds limit.", "Workflow history count exceeds limit.", "Workflow mutable state size exceeds limit."} {
		t.Run(m, func(t *testing.T) {
			tc := &fakeTemporal{script: []error{fmt.Errorf("signal-with-start order-a: %w", serviceerror.NewInvalidArgument(m)), fmtClosed("order-a")}}
			dl := &fakeDLQ{}
			b := newTestBridge(t, tc, dl)
			b.cfg.Dispatch.OnClosedWorkflow = config.OnClosedNewRun
			s := consume(t, b, context.Background(), msg(0, "a", `{}`))
			assert.Equal(t, int64(1), s.committed())
			assert.Empty(t, dl.failures, "the record was dead-lettered for its run's size")
			assert.Len(t, tc.accepted, 1, "the new run did not get the record")
		})
	}
}

// The text classify looks for is the server's message, not the text the
// seam wraps around it, which names the workflow, from the record's key: a
// key holding "memo size" made a payload too large the bridge's access
// fault (every partition paused) instead of the record's.
func TestTheWorkflowIDInAnErrorDoesNotChangeItsClass(t *testing.T) {
	tooLarge := serviceerror.NewInvalidArgument("Blob data size exceeds limit.")
	assert.Equal(t, kindRejected, classify(fmt.Errorf("signal-with-start order-memo size: %w", tooLarge)))
	assert.Equal(t, kindRejected, classify(fmt.Errorf("signal-with-start %s: %w", signalLimitExceeded, tooLarge)))
}

// The offset of a poison record is marked only once the DLQ holds it: not
// at a write that failed, and not before the first write. (Only the end
// state was checked, which a bridge marking at the first failed write and
// writing again later reaches too.)
func TestPoisonIsMarkedOnlyAfterTheDLQHoldsIt(t *testing.T) {
	dl := &fakeDLQ{failNext: 3}
	b := newTestBridge(t, &fakeTemporal{}, dl)
	ch, s, done := claimInBackground(t, b)
	var mu sync.Mutex
	var atWrites []int64 // the committable position at each write attempt
	dl.onWrite = func() {
		mu.Lock()
		defer mu.Unlock()
		atWrites = append(atWrites, s.committed())
	}
	ch <- msg(0, "a", `{not json`)
	require.Eventually(t, func() bool { return s.committed() == 1 }, 10*time.Second, time.Millisecond)
	done()
	mu.Lock()
	assert.Equal(t, []int64{0, 0, 0, 0}, atWrites, "the position at each of the four attempts (three failed)")
	mu.Unlock()
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

// Under new_run the new run starts with the closed run's watermarks, so it
// skips what the closed run applied; every batch tells the workflow the
// policy (for records that reach it after its final status). A closed run
// that recorded no watermarks (terminated) is counted, and its records are
// treated as new.
func TestNewRunStartsWithTheClosedRunsWatermarks(t *testing.T) {
	closed := fmtClosed("order-a")
	tc := &fakeTemporal{script: []error{closed}, closed: event.Watermarks{"orders/0": 5}}
	b := newTestBridge(t, tc, &fakeDLQ{})
	b.cfg.Dispatch.OnClosedWorkflow = config.OnClosedNewRun
	s := consume(t, b, context.Background(), msg(5, "a", `{}`), msg(6, "a", `{}`))
	assert.Equal(t, int64(7), s.committed())
	require.Len(t, tc.targets, 2)
	assert.True(t, tc.targets[1].NewRun)
	assert.Equal(t, event.Watermarks{"orders/0": 5}, tc.targets[1].StartWatermarks)
	require.Len(t, tc.accepted, 1, "offset 5 was applied by the closed run")
	assert.Equal(t, int64(6), tc.accepted[0].Offset)
	assert.Equal(t, config.OnClosedNewRun, tc.batches[0].OnClosed)
	assert.Zero(t, b.Stats().ClosedWithoutMemo)

	terminated := &fakeTemporal{script: []error{closed}} // no memo
	dl := &fakeDLQ{}
	b = newTestBridge(t, terminated, dl)
	consume(t, b, context.Background(), msg(5, "a", `{}`), msg(6, "a", `{}`))
	assert.Equal(t, uint64(2), b.Stats().ClosedWithoutMemo)
	assert.Len(t, dl.failures, 2, "both follow the dlq policy as new records")
}

// dispatch.batch_format decides the form of every batch the bridge sends.
func TestBatchFormatReachesEveryBatch(t *testing.T) {
	for format, compact := range map[string]bool{config.BatchFull: false, config.BatchCompact: true} {
		tc := &fakeTemporal{}
		b := newTestBridge(t, tc, &fakeDLQ{})
		b.cfg.Dispatch.BatchFormat = format
		consume(t, b, context.Background(), msg(5, "a", `{}`), msg(6, "b", `{}`))
		require.Len(t, tc.batches, 2, format)
		for _, batch := range tc.batches {
			assert.Equal(t, compact, batch.Compact, format)
		}
	}
}

func TestShutdownDuringRetriesMarksNothing(t *testing.T) {
	tc := &fakeTemporal{}
	for range 1000 {
		tc.script = append(tc.script, serviceerror.NewUnavailable("down"))
	}
	b := newTestBridge(t, tc, &fakeDLQ{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // shut down once the calls are being retried
		for calls, _ := tc.counts(); calls < 3; calls, _ = tc.counts() {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	s := consume(t, b, ctx, msg(0, "a", `{}`), msg(1, "a", `{}`))
	calls, _ := tc.counts()
	assert.GreaterOrEqual(t, calls, 3, "the calls were retried before the shutdown")
	assert.Zero(t, s.committed(), "a record Temporal never accepted must not be marked")
	assert.Empty(t, tc.accepted)
}

func fmtClosed(id string) error { return errors.Join(ErrWorkflowClosed, errors.New(id)) }

// TestClassify covers every gRPC code the server can return, as the SDK
// hands it over (serviceerror.FromStatus), and the namespace errors.
func TestClassify(t *testing.T) {
	byCode := map[codes.Code]errorKind{
		codes.Canceled: kindRetryable, codes.Unknown: kindRetryable, codes.InvalidArgument: kindRejected,
		codes.DeadlineExceeded: kindRetryable, codes.NotFound: kindRetryable, codes.AlreadyExists: kindRetryable,
		codes.PermissionDenied: kindAccess, codes.ResourceExhausted: kindRetryable, codes.FailedPrecondition: kindAccess,
		codes.Aborted: kindRetryable, codes.OutOfRange: kindRetryable, codes.Unimplemented: kindAccess,
		codes.Internal: kindRetryable, codes.Unavailable: kindRetryable, codes.DataLoss: kindRetryable,
		codes.Unauthenticated: kindAccess,
	}
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		want, ok := byCode[c]
		require.True(t, ok, "no expectation for %s", c)
		err := serviceerror.FromStatus(status.New(c, "x"))
		assert.Equal(t, want, classify(err), "%s (%T)", c, err)
		assert.Equal(t, want, classify(fmt.Errorf("signal-with-start: %w", err)), "wrapped %s", c)
	}
	for err, want := range map[error]errorKind{
		serviceerror.NewNamespaceNotFound("ns"):                                                   kindAccess,
		serviceerror.NewNamespaceInvalidState("ns", 0, nil):                                       kindAccess,
		serviceerror.NewNamespaceNotActive("ns", "a", "b"):                                        kindAccess,
		serviceerror.NewNamespaceUnavailable("ns"):                                                kindRetryable,
		serviceerror.NewWorkflowNotReady("x"):                                                     kindRetryable,
		serviceerror.NewResourceExhausted(0, "busy"):                                              kindRetryable,
		errors.New("connection reset"):                                                            kindRetryable,
		context.DeadlineExceeded:                                                                  kindRetryable,
		fmtClosed("w"):                                                                            kindClosed,
		fmt.Errorf("describe namespace: %w", serviceerror.NewPermissionDenied("no", "")):          kindAccess,
		fmt.Errorf("signal-with-start: %w", serviceerror.NewInvalidArgument(signalLimitExceeded)): kindRunFull,
		serviceerror.NewInvalidArgument("search attribute Tier is not defined"):                   kindAccess,
		serviceerror.NewInvalidArgument("Memo size exceeds limit."):                               kindAccess,
		serviceerror.NewInvalidArgument("WorkflowId length exceeds limit."):                       kindRejected,
		// The route's names, from the configuration: the dev server's own
		// answers, over its limit.maxIDLength (1,000 by default).
		serviceerror.NewInvalidArgument("taskQueue length exceeds limit"):     kindAccess,
		serviceerror.NewInvalidArgument("WorkflowType length exceeds limit."): kindAccess,
		serviceerror.NewInvalidArgument("SignalName length exceeds limit."):   kindAccess,
	} {
		assert.Equal(t, want, classify(err), "%T %v", err, err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// An expired API key or a mistyped namespace is the bridge's fault, not the
// records': they are neither dead-lettered nor committed; every partition
// pauses and readiness says why; the bridge resumes by itself once the
// cause is fixed.
func TestAnAccessFaultPausesEverythingAndDeadLettersNothing(t *testing.T) {
	for name, cause := range map[string]error{
		"revoked key":       status.Error(codes.Unauthenticated, "api key revoked"),
		"permission":        serviceerror.NewPermissionDenied("no write permission", ""),
		"missing namespace": serviceerror.NewNamespaceNotFound("nope"),
	} {
		t.Run(name, func(t *testing.T) {
			tc := &fakeTemporal{}
			tc.set(cause)
			dl := &fakeDLQ{}
			b, s, revoke := claimWithCircuits(t, tc, dl, config.Route{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O",
				WorkflowID: "order-{key}", TaskQueue: "q"})
			defer revoke()
			// The first refusal opens the circuit at once (not after 1,000
			// failures); half-open probes keep failing and keep it paused.
			require.Eventually(t, func() bool { _, probes := tc.counts(); return probes >= 2 }, 5*time.Second, time.Millisecond)
			assert.NotNil(t, b.refused())
			r, _ := b.pressure.reason("orders")
			assert.Equal(t, ReasonCircuitOpen, r)
			rec := httptest.NewRecorder()
			b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
			assert.Contains(t, rec.Body.String(), "namespace default")
			assert.Contains(t, rec.Body.String(), cause.Error())
			dl.mu.Lock()
			assert.Empty(t, dl.failures, "nothing was dead-lettered")
			dl.mu.Unlock()
			assert.Zero(t, s.committed(), "nothing was committed")

			tc.set(nil) // the key is rotated, the namespace created
			require.Eventually(t, func() bool { return s.committed() == 3 }, 5*time.Second, time.Millisecond)
			assert.Nil(t, b.refused())
			rec = httptest.NewRecorder()
			b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			assert.Equal(t, http.StatusOK, rec.Code)
		})
	}
}

// Records that sarama had fetched before a pause still arrive; they count
// against the in-flight budget and must move on like the rest, or a full
// budget would never drain.
func TestRecordsThatArriveWhilePausedStillDrain(t *testing.T) {
	tc := &fakeTemporal{}
	b, err := New(config.Config{
		Kafka:        config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:        config.Batch{MaxRecords: 1, MaxInFlight: 2},
		Backpressure: config.Backpressure{MaxRecords: 2},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	var msgs []*sarama.ConsumerMessage
	for i := range 50 {
		msgs = append(msgs, msg(int64(i), fmt.Sprint("k", i%7), `{}`))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := consume(t, b, ctx, msgs...)
	assert.Equal(t, int64(50), s.committed(), "every record was delivered although the budget was full")
	assert.Len(t, tc.accepted, 50)
}

// A dead letter too large for the DLQ is written in reduced form, so the
// partition moves on; a DLQ that refuses writes pauses the partition, says
// so in /readyz, and the partition resumes once a write succeeds.
func TestADeadLetterThatDoesNotFitIsReducedAndAFailingDLQPausesThePartition(t *testing.T) {
	dl := &fakeDLQ{limit: 1 << 20}
	b := newTestBridge(t, &fakeTemporal{}, dl)
	huge := msg(0, "a", `{"broken`+strings.Repeat("x", 3<<20))
	s := consume(t, b, context.Background(), huge, msg(1, "a", `{}`))
	assert.Equal(t, int64(2), s.committed(), "the partition moved on")
	require.Len(t, dl.failures, 1)
	assert.True(t, dl.failures[0].IsReduced(), "written in reduced form")
	assert.Nil(t, dl.failures[0].Value)
	assert.Equal(t, uint64(1), b.reducedDeadLetters.Load())

	dl = &fakeDLQ{failNext: 1 << 30}
	b = newTestBridge(t, &fakeTemporal{}, dl)
	b.running.Store(true)
	b.joined.Store(true)
	b.dispatcher.start(2)
	defer b.dispatcher.stop()
	ch := make(chan *sarama.ConsumerMessage, 1)
	ch <- msg(0, "a", `{not json`)
	ses := &fakeSession{ctx: context.Background()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, claimHandler{b: b}.ConsumeClaim(ses, fakeClaim{ch: ch}))
	}()
	require.Eventually(t, func() bool { return strings.Contains(b.pressure.pausedFor("orders", 0), ReasonDLQUnavailable) },
		5*time.Second, time.Millisecond)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "dead letters of orders/0 cannot be written: broker down")
	assert.Positive(t, b.dlqFailures.Load())
	assert.Zero(t, ses.committed())

	dl.mu.Lock()
	dl.failNext = 0 // the DLQ is back
	dl.mu.Unlock()
	require.Eventually(t, func() bool { return ses.committed() == 1 }, 5*time.Second, time.Millisecond)
	assert.Empty(t, b.pressure.pausedFor("orders", 0))
	close(ch)
	<-done
}

// closedAddr is a local address nothing listens on: connections are refused at once.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestRunTwiceIsAnError(t *testing.T) {
	b := newTestBridge(t, &fakeTemporal{}, &fakeDLQ{})
	b.cfg.Kafka.Brokers = []string{closedAddr(t)}
	b.cfg.Kafka.ConnectTimeout = 5 * time.Second
	err := b.Run(t.Context())
	require.Error(t, err, "no broker")
	assert.NotErrorIs(t, err, ErrAlreadyRun)
	assert.ErrorIs(t, b.Run(t.Context()), ErrAlreadyRun)
}

// A route without type_header or type_field gives every record an empty
// event type, which no Entity handler matches: New says so.
func TestNewWarnsAboutARouteWithoutEventTypes(t *testing.T) {
	var logs bytes.Buffer
	_, err := New(config.Config{
		Kafka: config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Routes: []config.Route{
			{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"},
			{Topic: "signups", WorkflowType: "Signup", WorkflowID: "signup-{key}", TaskQueue: "q"},
		},
	}, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "routes[1] (topic signups) has no type_header or type_field")
	assert.NotContains(t, logs.String(), "routes[0]")
}

// The bridge holds a record as its envelope; what it dead-letters is the
// Kafka record as it was read: key (a null key stays null), value, every
// header in order (repeats too).
func TestARejectedRecordReachesTheDLQAsItWasRead(t *testing.T) {
	invalid := serviceerror.NewInvalidArgument("bad payload")
	tc := &fakeTemporal{script: []error{invalid, invalid, invalid}}
	dl := &fakeDLQ{}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{json:id}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: dl, Logger: quiet()})
	require.NoError(t, err)
	at := time.Date(2026, 12, 3, 14, 0, 0, 123_000_000, time.FixedZone("x", 3600))
	headers := []*sarama.RecordHeader{
		{Key: []byte("event-type"), Value: []byte("E")}, {Key: []byte("h"), Value: []byte("1")}, {Key: []byte("h"), Value: []byte("2")},
	}
	keyless := &sarama.ConsumerMessage{Topic: "orders", Offset: 0, Value: []byte(`{"id":"a"}`), Headers: headers, Timestamp: at}
	keyed := &sarama.ConsumerMessage{Topic: "orders", Offset: 1, Key: []byte("k"), Value: []byte(`{"id":"a"}`), Headers: headers, Timestamp: at}
	s := consume(t, b, context.Background(), keyless, keyed)
	assert.Equal(t, int64(2), s.committed())
	require.Len(t, dl.failures, 2)
	for i, want := range []*sarama.ConsumerMessage{keyless, keyed} {
		got := dl.failures[i]
		assert.Equal(t, want.Offset, got.Offset)
		assert.Equal(t, want.Key, got.Key, "record %d: key", i)
		assert.Equal(t, want.Value, got.Value)
		require.Len(t, got.Headers, len(headers))
		for j, h := range headers {
			assert.Equal(t, *h, got.Headers[j])
		}
		assert.Equal(t, dlq.ClassRejected, got.Class)
		assert.True(t, at.Equal(got.Timestamp), "record %d: timestamp %s, want %s", i, got.Timestamp, at)
	}
	assert.Nil(t, dl.failures[0].Key, "a null key stays null")
}

// claimWithCircuits starts a bridge of route on tc and dl, ready, with 4
// dispatch workers and its circuits watched, and a claim of orders/0 with
// records a, b and c (offsets 0 to 2). It returns the bridge, the claim's
// session and what revokes the claim and waits for it to end.
func claimWithCircuits(t *testing.T, tc Temporal, dl *fakeDLQ, route config.Route) (*Bridge, *fakeSession, func()) {
	t.Helper()
	b, err := New(config.Config{
		Kafka:        config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch:     config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Backpressure: config.Backpressure{Circuit: config.Circuit{Failures: 1000, OpenFor: 20 * time.Millisecond}},
		Routes:       []config.Route{route},
	}, Deps{Temporal: tc, DeadLetters: dl, Logger: quiet()})
	require.NoError(t, err)
	b.running.Store(true)
	b.joined.Store(true)
	b.dispatcher.start(4)
	ctx, cancel := context.WithCancel(context.Background())
	go b.watchCircuits(ctx)
	ch := make(chan *sarama.ConsumerMessage, 3)
	for i, k := range []string{"a", "b", "c"} {
		ch <- msg(int64(i), k, `{}`)
	}
	s := &fakeSession{ctx: ctx}
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch}))
	}()
	return b, s, func() {
		close(ch)
		<-done
		cancel()
		b.dispatcher.stop()
	}
}

// hangingDescribe is a Temporal whose first describe of a closed workflow
// never answers until its context ends.
type hangingDescribe struct {
	*fakeTemporal
	describes atomic.Int32
}

func (h *hangingDescribe) ClosedWatermarks(ctx context.Context, id string) (event.Watermarks, error) {
	if h.describes.Add(1) == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return h.fakeTemporal.ClosedWatermarks(ctx, id)
}

// The describe of a closed workflow is bounded by dispatch.call_timeout,
// as the call is: one that never answers is given up on and the call
// tried again.
// (It waited until the partition ended, its records held.)
func TestTheDescribeOfAClosedWorkflowIsBoundedByTheCallTimeout(t *testing.T) {
	tc := &fakeTemporal{script: []error{fmtClosed("order-a")}}
	h := &hangingDescribe{fakeTemporal: tc}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{CallTimeout: 200 * time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: h, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // far beyond the call timeout, far below the SDK's 10 s
	defer cancel()
	s := consume(t, b, ctx, msg(0, "a", `{}`))
	assert.Equal(t, int64(1), s.committed(), "the record waited on a describe that never answered")
	assert.Equal(t, int32(1), h.describes.Load(), "given up on, and the call tried again")
}
