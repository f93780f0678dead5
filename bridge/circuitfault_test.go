package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// describeDenied is a Temporal whose workflows have closed and that lets
// the bridge signal but not describe them (an authorizer that allows
// SignalWithStart and refuses DescribeWorkflowExecution), until allowed.
type describeDenied struct {
	fakeTemporal
	mu      sync.Mutex
	allowed bool
}

func (d *describeDenied) SignalWithStart(ctx context.Context, t Target, b event.Batch) error {
	if err := d.fakeTemporal.SignalWithStart(ctx, t, b); err != nil {
		return err
	}
	return ErrWorkflowClosed
}

func (d *describeDenied) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.allowed {
		return nil, serviceerror.NewPermissionDenied("DescribeWorkflowExecution is not allowed", "")
	}
	return event.NewWatermarks(), nil
}

// A refusal of the describe that follows a closed workflow's answer is the
// bridge's access fault like any other: it is logged, /readyz says so and
// the target's circuit opens, and nothing is dead-lettered or committed
// until it is allowed. It was retried for ever in silence (89 retries in
// 0.5 s, nothing logged, ready, the circuit closed), the partition's
// commits stuck behind it.
func TestARefusedDescribeOfAClosedWorkflowIsAnAccessFault(t *testing.T) {
	tc := &describeDenied{}
	dl := &fakeDLQ{}
	b, s, revoke := claimWithCircuits(t, tc, dl, config.Route{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O",
		WorkflowID: "order-{key}", TaskQueue: "q"})
	defer revoke()
	require.Eventually(t, func() bool { return b.refused() != nil }, 5*time.Second, time.Millisecond,
		"the refused describe was not taken for an access fault")
	assert.Contains(t, b.refused().cause, "DescribeWorkflowExecution is not allowed")
	assert.True(t, b.hasOpenCircuit(), "the target's circuit is open")
	assert.Zero(t, s.committed(), "nothing was committed")
	dl.mu.Lock()
	assert.Empty(t, dl.failures, "nothing was dead-lettered")
	dl.mu.Unlock()

	tc.mu.Lock()
	tc.allowed = true
	tc.mu.Unlock()
	require.Eventually(t, func() bool { return s.committed() == 3 }, 5*time.Second, time.Millisecond,
		"the records were not settled once the describe was allowed")
	dl.mu.Lock()
	assert.Len(t, dl.failures, 3, "each record of a closed workflow that applied none of them is dead-lettered (policy dlq)")
	dl.mu.Unlock()
	// Every signal answers "closed": the describe that now succeeds is
	// what shows the refusal is over. (The fault stayed, /readyz 503.)
	assert.Nil(t, b.refused(), "the refusal outlived the describe that succeeded")
}

// /readyz reads each reason once: a circuit that closed between two reads
// of its access fault or of the open circuit dereferenced nil and the
// probe got a reset connection (net/http recovers the handler's panic;
// here it fails the test).
func TestReadyzReadsEachReasonOnce(t *testing.T) {
	b, err := New(config.Config{
		Kafka:  config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	b.running.Store(true)
	b.joined.Store(true)
	var c *circuit
	for _, c = range b.circuits {
	}
	require.NotNil(t, c)
	h := b.Handler()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		fault := &accessFault{cause: "denied", since: time.Now()}
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.access.Store(fault)
			c.access.Store(nil)
		}
	})
	defer wg.Wait()
	defer close(stop)
	for range 20000 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/readyz", nil))
	}
}

// A call the bridge cancels itself, when its partition is revoked or the
// bridge stops, says nothing about Temporal: it is not a retry, and not a
// retryable outcome in sagabridge_call_duration_seconds. It counted as
// both, with a "temporal call failed; retrying" warning about "context
// canceled".
func TestACallCancelledByARevocationIsNotARetry(t *testing.T) {
	tc := newStuckTemporal(false) // each call waits until its context ends
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 1, Linger: time.Millisecond},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	ch, s, done := claimInBackground(t, b)
	ch <- msg(0, "a", `{}`)
	<-tc.first
	done() // revoke: the call under way is cancelled after the drain timeout
	assert.Zero(t, s.committed())
	assert.Zero(t, b.Stats().Retries, "the cancelled call counted as a retry")
	var m dto.Metric
	require.NoError(t, b.metrics.callDuration.WithLabelValues(outcomeRetryable).(prometheus.Histogram).Write(&m))
	assert.Zero(t, m.GetHistogram().GetSampleCount(), "the cancelled call was observed as a retryable outcome")
}

// A busy workflow (ResourceExhausted with cause BUSY_WORKFLOW: too many
// requests to one workflow at once) is about that workflow, not Temporal's
// health: its call is retried with backoff, the circuit of its task queue
// stays closed and the concurrency limit is not cut. Five such answers
// for one key opened the circuit, pausing every partition routed to the
// task queue for open_for, and cut the limit from 64 to 48.
func TestABusyWorkflowDoesNotOpenTheCircuit(t *testing.T) {
	tc := &fakeTemporal{}
	for range 5 {
		tc.script = append(tc.script, &serviceerror.ResourceExhausted{Message: "workflow is busy",
			Cause: enumspb.RESOURCE_EXHAUSTED_CAUSE_BUSY_WORKFLOW})
	}
	var opened atomic.Int32
	log := slog.New(onLog{slog.NewTextHandler(io.Discard, nil), func(msg string) {
		if strings.HasPrefix(msg, "circuit to Temporal opened") {
			opened.Add(1)
		}
	}})
	b, err := New(config.Config{
		Kafka:        config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch:     config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Backpressure: config.Backpressure{Circuit: config.Circuit{Failures: 3, OpenFor: time.Minute}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults(), Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: log})
	require.NoError(t, err)
	limit := b.limiter.current()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := consume(t, b, ctx, msg(0, "hot", `{}`))
	require.Equal(t, int64(1), s.committed(), "the record was not delivered after the workflow stopped being busy")
	assert.Zero(t, opened.Load(), "the circuit opened")
	assert.Equal(t, limit, b.limiter.current(), "the concurrency limit was cut")
	calls, _ := tc.counts()
	assert.Equal(t, 6, calls, "five busy answers, then the call that was accepted")
}

// Temporal refuses the calls but not the namespace check the circuit
// probes with (a key that may describe the namespace but not signal, a
// route's search attribute not registered): the probe closed the circuit
// every open_for, logged "Temporal accepts the bridge again", cleared the
// refusal from /readyz and the access gauge, and the next calls logged
// the refusal again. The refusal now lasts until a call succeeds: logged
// once, shown all along, and "accepts again" only when it is true.
func TestARefusalOnlyTheCallsSeeIsNotClearedByTheNamespaceProbe(t *testing.T) {
	tc := &fakeTemporal{failAll: serviceerror.NewPermissionDenied("signals are not allowed for this key", "")} // CheckAccess succeeds
	var mu sync.Mutex
	lines := map[string]int{}
	log := slog.New(onLog{slog.NewTextHandler(io.Discard, nil), func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range []string{"Temporal refuses the bridge's own access", "Temporal accepts the bridge again", "circuit to Temporal closed"} {
			if strings.HasPrefix(msg, l) {
				lines[l]++
			}
		}
	}})
	count := func(l string) int { mu.Lock(); defer mu.Unlock(); return lines[l] }
	b, err := New(config.Config{
		Kafka:        config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch:     config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Backpressure: config.Backpressure{Circuit: config.Circuit{Failures: 1000, OpenFor: 20 * time.Millisecond}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: log})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.watchCircuits(ctx)
	ch, s, done := claimInBackground(t, b)
	defer done()
	ch <- msg(0, "a", `{}`)
	// Five closings by the probe, each followed by a refused call.
	require.Eventually(t, func() bool { return count("circuit to Temporal closed") >= 5 }, 10*time.Second, time.Millisecond,
		"the probe never closed the circuit")
	calls, _ := tc.counts()
	assert.GreaterOrEqual(t, calls, 5, "calls after the probe's closings")
	assert.Equal(t, 1, count("Temporal refuses the bridge's own access"), "the refusal is logged once")
	assert.Zero(t, count("Temporal accepts the bridge again"), "the probe said Temporal accepts the bridge again")
	assert.NotNil(t, b.refused(), "the refusal was cleared by the probe")

	tc.set(nil) // signals allowed
	require.Eventually(t, func() bool { return s.committed() == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, 1, count("Temporal accepts the bridge again"))
	assert.Nil(t, b.refused())
}

// What /readyz and the log say of an access fault is Temporal's own
// message, never the context the seam wraps it in, which names the
// workflow and so a record key. (A refused search attribute, describe or
// query put "... of order-<key>" in both.)
func TestAnAccessFaultNamesNoWorkflow(t *testing.T) {
	b := newTestBridge(t, &fakeTemporal{}, &fakeDLQ{})
	c := b.circuitFor(Target{TaskQueue: "q"})
	for _, err := range []error{
		fmt.Errorf("query sagabridge.applied of order-4111111111111111: %w", status.Error(codes.PermissionDenied, "may not query")),
		fmt.Errorf("search attributes of order-4111111111111111: %w", serviceerror.NewInvalidArgument("search attribute Tier is not defined")),
		queryRefused{fmt.Errorf("query sagabridge.applied of order-4111111111111111: %w", serviceerror.NewInvalidArgument("Namespace is not allowed to query"))},
	} {
		c.access.Store(nil)
		b.accessDenied(c, err)
		f := c.access.Load()
		require.NotNil(t, f)
		assert.NotContains(t, f.cause, "4111111111111111", "%v", err)
		assert.NotEmpty(t, f.cause)
	}
}

// A refusal the flow-control query met is not cleared by a signal that
// goes through (signals may go through while queries are refused), only
// by a query answered or by the circuit closing; and a query answered does
// not clear a signal's refusal. (A signal that went through cleared it at
// once, and a query answered cleared a signal's.)
func TestAQueryRefusalIsNotClearedByASignal(t *testing.T) {
	b := newTestBridge(t, &fakeTemporal{}, &fakeDLQ{})
	c := b.circuitFor(Target{TaskQueue: "q"})
	b.accessDenied(c, queryRefused{serviceerror.NewPermissionDenied("may not query", "")})
	b.callWentThrough(c)
	require.NotNil(t, c.access.Load(), "a signal that went through cleared the query's refusal")
	b.queryWentThrough(c)
	require.Nil(t, c.access.Load(), "a query answered did not clear it")

	b.accessDenied(c, serviceerror.NewPermissionDenied("may not signal", ""))
	b.queryWentThrough(c)
	require.NotNil(t, c.access.Load(), "a query answered cleared a signal's refusal")
	b.callWentThrough(c)
	assert.Nil(t, c.access.Load())
}

// The circuit closing clears a query's refusal, as it does one the
// namespace check met: the query may never be asked again (no window fills
// again, or the type is sent without flow control), and a fault no one
// clears would fail /readyz for good.
func TestTheCircuitClosingClearsAQueryRefusal(t *testing.T) {
	b, err := New(config.Config{
		Kafka:        config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Backpressure: config.Backpressure{Circuit: config.Circuit{Failures: 1, OpenFor: 10 * time.Millisecond}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults(), Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	c := b.circuitFor(Target{TaskQueue: "q"})
	_, _ = c.breaker.Execute(func() (struct{}, error) {
		return struct{}{}, queryRefused{serviceerror.NewPermissionDenied("may not query", "")}
	})
	require.NotNil(t, c.access.Load())
	require.Equal(t, gobreaker.StateOpen, c.breaker.State())
	require.Eventually(t, func() bool { return c.breaker.State() == gobreaker.StateHalfOpen }, 5*time.Second, time.Millisecond)
	_, err = c.breaker.Execute(func() (struct{}, error) { return struct{}{}, nil }) // the probe goes through
	require.NoError(t, err)
	assert.Nil(t, c.access.Load(), "the circuit closed and the query's refusal stayed")
}
