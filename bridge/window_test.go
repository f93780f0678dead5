package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

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
	return maps.Clone(s.applied), nil
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

// newWindowedBridge returns a bridge on tc whose workflows' windows hold
// window records, batching 5 records at a time.
func newWindowedBridge(t *testing.T, tc Temporal, window int) *Bridge {
	t.Helper()
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 5, Linger: time.Millisecond},
		Dispatch: config.Dispatch{WorkflowWindowRecords: window, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	return b
}

// A workflow that applies slowly is not sent more than
// dispatch.workflow_window_records it has not applied: the bridge asks it
// and waits, and everything still arrives, once, in order.
func TestAWorkflowThatIsBehindIsNotSentMoreThanItsWindow(t *testing.T) {
	const window = 20
	wf := &slowWorkflow{applied: event.NewWatermarks()}
	b := newWindowedBridge(t, wf, window)
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
	b.windows = newWindows(2, 1<<20, time.Now)
	target := Target{WorkflowID: "w", WorkflowType: "W"}
	b.windows.sent("w", "W", event.Position{Topic: "orders", Offset: 1}, 2, 10) // a full window, never applied
	f := &flow{ctx: context.Background()}
	require.NoError(t, b.awaitWindow(f, target, 1, 10))
	assert.Equal(t, 1, tc.queries)
	assert.True(t, b.windows.fits("w", "W", 2, 10), "forgotten")
}

// keptUpWorkflow applies every record as soon as it is signalled, but its
// answer to the applied query comes only after ahead more records have
// arrived (or after a second): a question waits behind the workflow's
// queued tasks while the stream goes on, as it does under load.
type keptUpWorkflow struct {
	fakeTemporal
	ahead int

	mu      sync.Mutex
	applied event.Watermarks
	got     int        // records signalled
	waiting []question // questions not answered yet
	order   []int64    // the offsets signalled, in order
}

// question is an applied query that is answered (done closed) once the
// workflow has been signalled mark records.
type question struct {
	done chan struct{}
	mark int
}

func (w *keptUpWorkflow) SignalWithStart(_ context.Context, _ Target, b event.Batch) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range b.Events {
		w.applied.Admit(e.Position())
		w.order = append(w.order, e.Offset)
	}
	w.got += len(b.Events)
	w.waiting = slices.DeleteFunc(w.waiting, func(q question) bool {
		if w.got < q.mark {
			return false
		}
		close(q.done)
		return true
	})
	return nil
}

func (w *keptUpWorkflow) AppliedWatermarks(ctx context.Context, _ string) (event.Watermarks, error) {
	q := question{done: make(chan struct{})}
	w.mu.Lock()
	q.mark = w.got + w.ahead
	w.waiting = append(w.waiting, q)
	w.mu.Unlock()
	select {
	case <-q.done:
	case <-time.After(time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.applied), nil
}

// A hot workflow that keeps up with its stream is never held back by its
// window, although the applied query is slow to answer: the bridge asks
// when the window is half full, without stopping, so the answer is in
// before the window fills. (Asking only once it is full, the partition
// stopped at every full window for as long as the answer took: at 2,000
// events/s the hottest key of the latency benchmark waited on it mid-stream.)
func TestAWorkflowThatKeepsUpIsNotHeldBackBySlowAnswers(t *testing.T) {
	const window, records = 40, 400
	wf := &keptUpWorkflow{applied: event.NewWatermarks(), ahead: 5}
	b := newWindowedBridge(t, wf, window)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.dispatcher.start(4)
	defer b.dispatcher.stop()
	ch := make(chan *sarama.ConsumerMessage)
	s := &fakeSession{ctx: ctx}
	done := make(chan error, 1)
	go func() { done <- claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch}) }()
	for i := range records { // a steady stream: a record every 2 ms
		ch <- msg(int64(i), "hot", `{}`)
		time.Sleep(2 * time.Millisecond)
	}
	for s.committed() < records && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	close(ch)
	require.NoError(t, <-done)
	assert.Equal(t, int64(records), s.committed())
	wf.mu.Lock()
	defer wf.mu.Unlock()
	require.Len(t, wf.order, records)
	for i, off := range wf.order {
		require.Equal(t, int64(i), off, "in order")
	}
	assert.Zero(t, b.windowWaits.Load(), "calls held back by the window of a workflow that kept up")
}

// appliedTemporal answers the applied query with what it was given.
type appliedTemporal struct {
	fakeTemporal
	applied event.Watermarks
}

func (a *appliedTemporal) AppliedWatermarks(context.Context, string) (event.Watermarks, error) {
	return a.applied, nil
}

// A call held back for one answer is counted as held back (the metric
// counted only calls that needed a second answer, and so missed the usual
// hold: one question that waits behind the workflow's queued tasks).
func TestACallHeldForOneAnswerIsCounted(t *testing.T) {
	applied := event.NewWatermarks()
	pos := event.Position{Topic: "orders", Offset: 1}
	applied.Admit(pos)
	tc := &appliedTemporal{applied: applied}
	b := newTestBridge(t, &tc.fakeTemporal, &fakeDLQ{})
	b.deps.Temporal = tc
	b.windows = newWindows(2, 1<<20, time.Now)
	b.windows.sent("w", "W", pos, 2, 10) // a full window, applied by the time it is asked
	require.NoError(t, b.awaitWindow(&flow{ctx: context.Background()}, Target{WorkflowID: "w", WorkflowType: "W"}, 1, 10))
	assert.Equal(t, uint64(1), b.windowWaits.Load())
}

// mutedWorkflow is a workflow type that does not answer the applied query
// (not built on workflows.Inbox); each call takes a while, so a hot key's
// records pile up behind the one in flight.
type mutedWorkflow struct {
	fakeTemporal
	mu      sync.Mutex
	batches []int // records per call
}

func (m *mutedWorkflow) SignalWithStart(_ context.Context, _ Target, b event.Batch) error {
	time.Sleep(2 * time.Millisecond)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches = append(m.batches, len(b.Events))
	return nil
}

func (m *mutedWorkflow) AppliedWatermarks(context.Context, string) (event.Watermarks, error) {
	return nil, serviceerror.NewQueryFailed("unknown queryType " + event.AppliedQuery)
}

// brokenQuery fails the applied query as the Temporal client does when the
// workflow's handler fails: the QueryFailed wrapped in an error that names
// the query.
type brokenQuery struct{ fakeTemporal }

func (*brokenQuery) AppliedWatermarks(_ context.Context, id string) (event.Watermarks, error) {
	return nil, fmt.Errorf("query %s of %s: %w", event.AppliedQuery, id, serviceerror.NewQueryFailed("panic: boom"))
}

// A workflow whose applied query fails for another reason than a missing
// handler (here its handler panics) keeps its window, and so does its type:
// the call waits and asks again. (Every QueryFailed turned flow control off
// for the workflow's type for the life of the process, because the error
// the client wraps it in names the query, and that name was what the check
// looked for.)
func TestAFailingAppliedQueryKeepsFlowControl(t *testing.T) {
	b := newWindowedBridge(t, &brokenQuery{}, 10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &flow{ctx: ctx}
	target := Target{WorkflowID: "order-hot", WorkflowType: "O"}
	release, err := b.askApplied(f, target)
	assert.False(t, release, "a failed query released the call")
	require.Error(t, err)
	assert.False(t, b.windows.exemptLocked("O"), "a failed query exempted the workflow type from flow control")

	muted := &mutedWorkflow{}
	b = newWindowedBridge(t, muted, 10)
	release, err = b.askApplied(f, target)
	assert.True(t, release, "a workflow without the query handler waited for it")
	require.NoError(t, err)
	assert.True(t, b.windows.exemptLocked("O"))
}

// A workflow type that does not answer the applied query is sent without
// flow control, and that includes the window's bound on what one call
// carries: a hot key of such a type still gets merged calls once its
// records pile up, and nothing is remembered of what it was sent. (The
// window went on counting what it sent such a workflow, for ever: memory
// grew with every call, and past the window's size each call carried one
// batch.)
func TestAWorkflowTypeWithoutTheQueryIsSentMergedCallsAndNotRemembered(t *testing.T) {
	const window, records = 10, 600
	wf := &mutedWorkflow{}
	b := newWindowedBridge(t, wf, window)
	var msgs []*sarama.ConsumerMessage
	for i := range records {
		msgs = append(msgs, msg(int64(i), "hot", `{}`))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := consume(t, b, ctx, msgs...)
	require.Equal(t, int64(records), s.committed())
	wf.mu.Lock()
	defer wf.mu.Unlock()
	t.Logf("%d calls, records per call %v", len(wf.batches), wf.batches)
	assert.Greater(t, slices.Max(wf.batches), window, "no call carried more than the window of a workflow that is not flow-controlled")
	assert.Less(t, len(wf.batches), records/5/2, "most calls carried one batch of 5")
	b.windows.mu.Lock()
	defer b.windows.mu.Unlock()
	assert.Empty(t, b.windows.byID, "windows remembered for a workflow that is not flow-controlled")
}

// A call whose partition was revoked while its window was full is
// abandoned without asking, and is not counted as held back.
func TestAnAbandonedCallIsNotCountedAsHeld(t *testing.T) {
	tc := &closedTemporal{}
	b := newTestBridge(t, &tc.fakeTemporal, &fakeDLQ{})
	b.deps.Temporal = tc
	b.windows = newWindows(2, 1<<20, time.Now)
	b.windows.sent("w", "W", event.Position{Topic: "orders", Offset: 1}, 2, 10) // a full window
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // revoked
	err := b.awaitWindow(&flow{ctx: ctx}, Target{WorkflowID: "w", WorkflowType: "W"}, 1, 10)
	require.ErrorIs(t, err, errAbandoned)
	assert.Zero(t, tc.queries, "asked for a revoked partition")
	assert.Zero(t, b.windowWaits.Load(), "counted as held back")
}

// One early question per workflow, even when the workflow's window is
// forgotten (the least recently sent to of maxWindows) while its question
// is in flight and then made again: a second question is not started
// beside the first. (The in-flight mark lived in the window and was
// forgotten with it.)
func TestAnEarlyQuestionInFlightOutlivesItsForgottenWindow(t *testing.T) {
	ws := newWindows(10, 1<<20, time.Now)
	at := event.Position{Topic: "orders", Offset: 1}
	ws.sent("a", "W", at, 6, 10) // past half the window
	require.True(t, ws.askEarly("a", "W"))
	for i := range maxWindows { // a is forgotten
		ws.sent(fmt.Sprint("other-", i), "W", at, 1, 1)
	}
	ws.sent("a", "W", at, 6, 10)
	assert.False(t, ws.askEarly("a", "W"), "a second early question to a while the first is in flight")
	ws.answered("a")
	assert.True(t, ws.askEarly("a", "W"), "asked again once the first question ended")
}

// bufferedQueryWorkflow answers the applied query as Temporal does while a
// workflow task is pending: it holds one question until the task completes
// (release is closed) and refuses a second beside it with
// ResourceExhausted (history.MaxBufferedQueryCount, default 1; the SDK
// retries that with a backoff that doubles from 200 ms).
type bufferedQueryWorkflow struct {
	fakeTemporal
	release chan struct{}
	applied event.Watermarks

	mu              sync.Mutex
	asked, refused  int
	questionPending bool
}

func (q *bufferedQueryWorkflow) AppliedWatermarks(ctx context.Context, _ string) (event.Watermarks, error) {
	q.mu.Lock()
	q.asked++
	if q.questionPending {
		q.refused++
		q.mu.Unlock()
		return nil, serviceerror.NewResourceExhausted(enumspb.RESOURCE_EXHAUSTED_CAUSE_CONCURRENT_LIMIT, "consistent query buffer is full, cannot accept new consistent queries")
	}
	q.questionPending = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.questionPending = false
		q.mu.Unlock()
	}()
	select {
	case <-q.release:
		return maps.Clone(q.applied), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (q *bufferedQueryWorkflow) counts() (asked, refused int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.asked, q.refused
}

// A call held at a full window while the workflow's early question is in
// flight waits for that answer instead of asking beside it, and goes as
// soon as the answer makes room. (It asked again at once: Temporal refuses
// a second query to a workflow with a pending task, the SDK retries the
// refusal after 200 ms, 400 ms, ..., so a hot workflow's held calls went
// out up to seconds after the answer that released them.)
func TestAHeldCallWaitsForTheEarlyQuestionInsteadOfAskingBesideIt(t *testing.T) {
	last := event.Position{Topic: "orders", Offset: 5}
	applied := event.NewWatermarks()
	applied.Admit(last)
	wf := &bufferedQueryWorkflow{release: make(chan struct{}), applied: applied}
	b := newTestBridge(t, &wf.fakeTemporal, &fakeDLQ{})
	b.deps.Temporal = wf
	b.windows = newWindows(10, 1<<20, time.Now)
	target := Target{WorkflowID: "w", WorkflowType: "W"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &flow{ctx: ctx}

	b.windows.sent(target.WorkflowID, target.WorkflowType, last, 6, 60) // past half the window
	b.askAhead(f, target)
	require.Eventually(t, func() bool { asked, _ := wf.counts(); return asked == 1 }, 10*time.Second, time.Millisecond, "the early question was not asked")

	held := make(chan error, 1)
	go func() { held <- b.awaitWindow(f, target, 5, 50) }() // 6+5 > 10: held
	require.Eventually(t, func() bool { return b.windowWaits.Load() == 1 }, 10*time.Second, time.Millisecond, "the call was not held")
	close(wf.release) // the workflow task completes: the early question is answered
	require.NoError(t, <-held)
	f.units.Wait()

	asked, refused := wf.counts()
	assert.Equal(t, 1, asked, "questions asked of the workflow (the held call asked beside the early question)")
	assert.Zero(t, refused, "questions refused because another was in flight")
}

// awaitWindow waits in place until records and bytes more may be sent to
// target's workflow: it asks windowRoom again each time a hold ends, as the
// dispatcher does for a held call; errAbandoned if the partition ends.
func (b *Bridge) awaitWindow(f *flow, target Target, records, bytes int) error {
	st := &callState{}
	for {
		err := b.windowRoom(f, target, records, bytes, st)
		var held *heldError
		if !errors.As(err, &held) {
			return err
		}
		if held.wait(f.ctx) != nil {
			return errAbandoned
		}
	}
}

// wait blocks until e's wait ends; it returns errAbandoned if ctx ends
// first.
func (e *heldError) wait(ctx context.Context) error {
	if e.wake == nil {
		if sleep(ctx, e.after) != nil {
			return errAbandoned
		}
		return nil
	}
	select {
	case <-e.wake:
		return nil
	case <-ctx.Done():
		return errAbandoned
	}
}

// A workflow type exempted from flow control because one of its workflows
// did not answer the applied query (a worker of an older build, still
// polling during a rolling deploy) is asked again after a while: the
// exemption ends with the old worker. (It lasted for the life of the
// process: hot keys of the type ran into the signal and history limits
// again, long after every worker answered.)
func TestAnExemptionFromFlowControlExpires(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ws := newWindows(10, 1<<20, func() time.Time { return now })
	hot := event.Position{Topic: "orders", Partition: 0, Offset: 99}
	ws.sent("order-hot", "O", hot, 10, 100) // a full window
	ws.exemptType("order-other", "O")
	assert.True(t, ws.fits("order-hot", "O", 1, 10), "exempt: sent without flow control")
	ws.sent("order-hot", "O", hot, 10, 100)

	now = now.Add(10 * time.Minute) // a rolling deploy is over
	ws.sent("order-hot", "O", hot, 10, 100)
	assert.False(t, ws.fits("order-hot", "O", 1, 10), "the exemption outlived the old worker")
}

// deniedQuery is fakeTemporal whose applied query is refused while
// denied is set (an authorizer that lets the bridge signal but not query).
type deniedQuery struct {
	fakeTemporal
	refusal error
	denied  atomic.Bool
	queries atomic.Int32
}

func (d *deniedQuery) AppliedWatermarks(ctx context.Context, id string) (event.Watermarks, error) {
	d.queries.Add(1)
	if d.denied.Load() {
		return nil, d.refusal
	}
	return d.fakeTemporal.AppliedWatermarks(ctx, id)
}

// A refused applied query is the bridge's access fault, like a refused
// call: logged, shown on /readyz, and cleared once a query goes through.
// (It was retried in silence about once a second, for ever: a hot
// workflow's records stopped at its window while /readyz said ok and the
// log said nothing.)
func TestARefusedAppliedQueryIsTheBridgesAccessFault(t *testing.T) {
	refusal := serviceerror.NewPermissionDenied("may not query workflows", "")
	tc := &deniedQuery{refusal: refusal}
	tc.denied.Store(true)
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 5, Linger: time.Millisecond},
		Dispatch: config.Dispatch{WorkflowWindowRecords: 10, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	b.running.Store(true)
	b.joined.Store(true)
	ch, s, done := claimInBackground(t, b)
	for i := range 100 {
		ch <- msg(int64(i), "hot", `{}`)
	}
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	require.Eventually(t, func() bool { return b.refused() != nil }, 10*time.Second, time.Millisecond,
		"a refused query was not taken for the bridge's access fault (%d queries, %d of 100 committed)", tc.queries.Load(), s.committed())
	code, body := readyz()
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, refusal.Error())
	assert.Zero(t, b.Stats().DeadLettered)

	tc.denied.Store(false)
	require.Eventually(t, func() bool { return s.committed() == 100 }, 30*time.Second, time.Millisecond, "committed %d of 100", s.committed())
	require.Eventually(t, func() bool { code, _ := readyz(); return code == http.StatusOK }, 10*time.Second, time.Millisecond,
		"the fault did not clear once a query went through")
	done()
}

// A query that fails for another reason than access (Temporal down, a
// slow worker) counts neither way in the circuit: a half-open circuit is
// not closed by it while signals would still fail. (It counted as a
// success: the query took the one probe of a half-open circuit and closed
// it, and queries between failing signals kept a closed one from tripping.)
func TestAFailedAppliedQueryDoesNotCloseAHalfOpenCircuit(t *testing.T) {
	tc := &deniedQuery{refusal: serviceerror.NewUnavailable("down")}
	tc.denied.Store(true)
	b, err := New(config.Config{
		Kafka:        config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Backpressure: config.Backpressure{Circuit: config.Circuit{Failures: 1, OpenFor: 10 * time.Millisecond}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults(), Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	target := Target{WorkflowID: "order-a", WorkflowType: "O", TaskQueue: "q"}
	c := b.circuitFor(target)
	_, _ = c.breaker.Execute(func() (struct{}, error) { return struct{}{}, serviceerror.NewUnavailable("down") })
	require.Equal(t, gobreaker.StateOpen, c.breaker.State())
	require.Eventually(t, func() bool { return c.breaker.State() == gobreaker.StateHalfOpen }, 5*time.Second, time.Millisecond)

	_, _, err = b.queryApplied(context.Background(), target)
	require.Error(t, err)
	assert.Equal(t, gobreaker.StateHalfOpen, c.breaker.State(), "a failed query closed the half-open circuit")
	tc.denied.Store(false)
	_, _, err = b.queryApplied(context.Background(), target)
	require.NoError(t, err)
	assert.Equal(t, gobreaker.StateClosed, c.breaker.State(), "a query answered is Temporal answering")
}

// In a namespace that takes no queries (the server's InvalidArgument) flow
// control cannot work: the workflow's type is sent without it, with a
// warning, as a type that does not answer is, and nothing else stops.
// (Every hot workflow stopped at its window, silently, and records waited
// for ever.)
func TestANamespaceThatTakesNoQueriesTurnsFlowControlOff(t *testing.T) {
	tc := &deniedQuery{refusal: fmt.Errorf("query sagabridge.applied of order-hot: %w",
		serviceerror.NewInvalidArgument("Namespace is not allowed to query, please contact Temporal support."))}
	tc.denied.Store(true)
	warned := make(chan string, 10)
	log := slog.New(onLog{slog.NewTextHandler(io.Discard, nil), func(msg string) {
		if strings.Contains(msg, "takes no queries") {
			select {
			case warned <- msg:
			default:
			}
		}
	}})
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 5, Linger: time.Millisecond},
		Dispatch: config.Dispatch{WorkflowWindowRecords: 10, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: log})
	require.NoError(t, err)
	ch, s, done := claimInBackground(t, b)
	for i := range 100 {
		ch <- msg(int64(i), "hot", `{}`)
	}
	require.Eventually(t, func() bool { return s.committed() == 100 }, 30*time.Second, time.Millisecond,
		"committed %d of 100 (%d queries)", s.committed(), tc.queries.Load())
	done()
	select {
	case <-warned:
	default:
		t.Error("no warning that flow control is off")
	}
	assert.Nil(t, b.refused(), "taken for an access fault")
	assert.Zero(t, b.Stats().DeadLettered)
}

// A workflow's window keeps a bounded number of entries however many calls
// it was sent before it was asked (at half of workflow_window_records,
// 5,000 one-record calls by default): one entry per call made 64 bytes a
// call, outside the memory budget, 320 MiB for 1,000 such workflows, and
// the array stayed allocated after the answer emptied it. Merged entries
// are confirmed only once the workflow applied their last call, never
// before (a merged entry confirms late, not early).
func TestAWindowKeepsBoundedEntriesAndNeverConfirmsEarly(t *testing.T) {
	ws := newWindows(10000, 1<<30, time.Now)
	const calls = 4999
	for o := range int64(calls) {
		p := int32(o % 3) // three partitions, interleaved
		ws.sent("order-1", "O", event.Position{Topic: "orders", Partition: p, Offset: o}, 1, 100)
	}
	w := ws.byID["order-1"].Value.(*window)
	assert.LessOrEqual(t, len(w.calls), maxCallsPerWindow)
	assert.Equal(t, calls, w.records)
	assert.Equal(t, calls*100, w.bytes)

	// The workflow applied everything up to offset 2,999 of each partition.
	applied := event.NewWatermarks()
	for p := range int32(3) {
		last := int64(2999) - (int64(2999)-int64(p))%3 // the last offset of p at or below 2,999
		applied.Admit(event.Position{Topic: "orders", Partition: p, Offset: last})
	}
	ws.confirm("order-1", applied)
	assert.GreaterOrEqual(t, w.records, calls-3000, "never more confirmed than applied")
	assert.LessOrEqual(t, w.records, calls-3000+calls/4, "the answer confirmed all but about an entry's share per partition")
	for _, c := range w.calls {
		assert.False(t, applied.Covers(c.partition), "a kept entry the answer covers: %v", c.partition)
	}

	all := event.NewWatermarks()
	for p := range int32(3) {
		all.Admit(event.Position{Topic: "orders", Partition: p, Offset: calls})
	}
	ws.confirm("order-1", all)
	assert.Zero(t, w.records)
	assert.LessOrEqual(t, cap(w.calls), 2*maxCallsPerWindow, "the array is not kept at its peak")
}

// A partition read again (revoked and claimed back, or a new session)
// sends offsets lower than some already in the window; a merged entry
// takes the higher offset of the two, so an answer covering the lower one
// confirms neither. (It took the later entry's, the lower offset: an
// answer at 50 confirmed the records up to 115 the workflow had not
// applied.)
func TestAMergedEntryAfterARedeliveryNeverConfirmsEarly(t *testing.T) {
	ws := newWindows(10000, 1<<30, time.Now)
	p := func(o int64) event.Position { return event.Position{Topic: "orders", Partition: 0, Offset: o} }
	for o := int64(100); o < 115; o++ {
		ws.sent("order-1", "O", p(o), 10, 10)
	}
	ws.sent("order-1", "O", p(115), 1, 1)
	ws.sent("order-1", "O", p(50), 1, 1) // redelivered from 50: a merge, of 115 and 50 (the fewest records)
	w := ws.byID["order-1"].Value.(*window)
	applied := event.NewWatermarks()
	applied.Admit(p(50))
	ws.confirm("order-1", applied)
	assert.Equal(t, 152, w.records, "the merged entry holds 115's record, which is not applied")
}

// terminatedThenNewRun is one workflow whose run was terminated (no memo)
// with records it never applied; a new_run call starts a new run that
// applies every record it is sent at once.
type terminatedThenNewRun struct {
	fakeTemporal
	mu      sync.Mutex
	closed  bool
	applied event.Watermarks
}

func (w *terminatedThenNewRun) SignalWithStart(_ context.Context, target Target, b event.Batch) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if target.WorkflowID != "order-hot" {
		return nil // other workflows: open, and not flow-controlled here
	}
	if w.closed && !target.NewRun {
		return fmt.Errorf("%w: %s", ErrWorkflowClosed, target.WorkflowID)
	}
	w.closed = false
	for _, e := range b.Events {
		w.applied.Admit(e.Position())
	}
	return nil
}

func (w *terminatedThenNewRun) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	return nil, nil // terminated: no memo
}

func (w *terminatedThenNewRun) AppliedWatermarks(context.Context, string) (event.Watermarks, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, fmt.Errorf("%w: w", ErrWorkflowClosed)
	}
	return maps.Clone(w.applied), nil
}

// The window entries of a terminated run (sent from another partition,
// never applied) survived the new run the bridge starts under new_run: no
// answer of the new run covers them, so a later call larger than the room
// they left waited for ever (about 900 times in 5 s, asking each time).
func TestTheWindowOfAClosedRunDoesNotHoldTheNewRun(t *testing.T) {
	wf := &terminatedThenNewRun{closed: true, applied: event.NewWatermarks()}
	b, err := New(config.Config{
		Kafka: config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch: config.Batch{MaxRecords: 8, Linger: time.Millisecond},
		Dispatch: config.Dispatch{WorkflowWindowRecords: 10, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond,
			OnClosedWorkflow: config.OnClosedNewRun},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: wf, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	// The terminated run had been sent 4 records of orders/1 it never applied.
	b.windows.sent("order-hot", "O", event.Position{Topic: "orders", Partition: 1, Offset: 3}, 4, 400)

	var ms []*sarama.ConsumerMessage
	for i := range int64(7) { // offsets 0..6: other keys
		ms = append(ms, msg(i, fmt.Sprint("other", i), `{}`))
	}
	ms = append(ms, msg(7, "hot", `{}`)) // a call of 1 record: fits, starts the new run
	for i := int64(8); i < 16; i++ {     // a call of 8 records
		ms = append(ms, msg(i, "hot", `{}`))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := consume(t, b, ctx, ms...)
	assert.Equal(t, int64(16), s.committed(), "the new run applied everything it was sent, yet the bridge waits on the dead run's window (%d waits)", b.windowWaits.Load())
}
