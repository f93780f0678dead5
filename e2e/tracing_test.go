package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/bridge/temporalsdk"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/connect"
)

// An order's events carry a W3C traceparent from the producer's span. One
// trace then links the Kafka record, the bridge's delivery, the
// SignalWithStart call, the workflow, its activities, and the outcome event
// the workflow publishes back to Kafka (its traceparent header).
func TestOneTraceLinksTheKafkaRecordTheSignalTheActivitiesAndTheOutcome(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracing, err := connect.TracingInterceptor(tp)
	require.NoError(t, err)
	dial := func() client.Client {
		c, err := client.Dial(client.Options{HostPort: stack.Temporal.Address, Logger: quietLogger(), Interceptors: []interceptor.ClientInterceptor{tracing}})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		return c
	}

	e := newEnv(t, 1)
	e.stopWorker() // a worker that traces instead
	w := worker.New(dial(), e.taskQueue, worker.Options{MaxConcurrentWorkflowTaskPollers: 8})
	saga.RegisterWith(w, e.acts, &activities.Publisher{Producer: e.outcomes})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	pc, err := connect.DLQProducerConfig(config.Kafka{Version: "3.6.0", ClientID: "e2e"}, 0)
	require.NoError(t, err)
	dlqProducer, err := sarama.NewSyncProducer(stack.Kafka.Brokers, pc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = dlqProducer.Close() })
	b, err := bridge.New(e.config(e.topic), bridge.Deps{
		Temporal:       temporalsdk.Client{Client: dial()},
		DeadLetters:    dlq.ProducerWriter{Producer: dlqProducer, Suffix: dlq.DefaultSuffix},
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		TracerProvider: tp,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The shop's checkout span, propagated in every event of the order.
	rootCtx, root := tp.Tracer("shop").Start(context.Background(), "checkout")
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(rootCtx, carrier)
	root.End()
	traceID := root.SpanContext().TraceID()
	o := saga.Orders(e.id+"-", 1, 3)[0]
	e.produceTraced(o, carrier)
	st := e.result(o.ID, 90*time.Second)
	assert.Equal(t, o.Want.Status, st.Status)

	// The outcome event carries the same trace.
	mine := func(m *sarama.ConsumerMessage) bool { return string(m.Key) == o.ID }
	outcomes := readWhere(t, saga.OutcomeTopic, 1, 30*time.Second, mine)
	require.Len(t, outcomes, 1)
	out := propagation.TraceContext{}.Extract(context.Background(), connect.ConsumerHeaders(outcomes[0].Headers))
	assert.Equal(t, traceID, trace.SpanContextFromContext(out).TraceID(), "the outcome record's traceparent")

	// And the spans between them.
	var names []string
	for _, s := range recorder.Ended() {
		if s.SpanContext().TraceID() == traceID {
			names = append(names, s.Name())
		}
	}
	t.Logf("spans of the trace: %v", names)
	for _, want := range []string{"checkout", "sagabridge deliver " + saga.WorkflowType, "SignalWithStartWorkflow:", "RunWorkflow:" + saga.WorkflowType, "RunActivity:ReserveInventory", "RunActivity:Publish"} {
		assert.True(t, slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, want) }), "no span %q in the trace", want)
	}
}

// produceTraced sends o's events with the trace context in carrier as
// record headers (traceparent), as a producer that traces would.
func (e *env) produceTraced(o saga.Order, carrier propagation.MapCarrier) {
	e.t.Helper()
	for _, m := range saga.Interleave([]saga.Order{o}, 1) {
		headers := []sarama.RecordHeader{{Key: []byte(saga.TypeHeader), Value: []byte(m.Type)}}
		for k, v := range carrier {
			headers = append(headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
		}
		_, _, err := e.producer.SendMessage(&sarama.ProducerMessage{Topic: e.topic, Key: sarama.StringEncoder(m.OrderID), Value: sarama.ByteEncoder(m.Value), Headers: headers})
		require.NoError(e.t, err)
	}
}

// otlpReceiver is an OTLP/gRPC trace collector that keeps what it receives.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// names returns the names of the received spans of traceID.
func (r *otlpReceiver) names(traceID trace.TraceID) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.spans {
		if bytes.Equal(s.GetTraceId(), traceID[:]) {
			out = append(out, s.GetName())
		}
	}
	return out
}

// The bridge binary exports its delivery spans over OTLP when
// OTEL_EXPORTER_OTLP_ENDPOINT names a collector, in the trace of the record.
func TestBridgeBinaryExportsSpansOverOTLP(t *testing.T) {
	recv := &otlpReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")

	e := newEnv(t, 1)
	var out syncBuffer
	p := e.startBridgeProcess(e.topic, &out)
	tp := sdktrace.NewTracerProvider()
	rootCtx, root := tp.Tracer("shop").Start(context.Background(), "checkout")
	root.End()
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(rootCtx, carrier)
	o := saga.Orders(e.id+"-", 1, 3)[0]
	e.produceTraced(o, carrier)
	e.result(o.ID, 90*time.Second)
	require.NoError(t, p.Stop(20*time.Second)) // flushes the batch exporter
	names := recv.names(root.SpanContext().TraceID())
	t.Logf("spans the bridge exported in the record's trace: %v", names)
	assert.True(t, slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "sagabridge deliver") }), "no delivery span arrived")
	assert.True(t, slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "SignalWithStartWorkflow:") }), "no Temporal client span arrived")
}
