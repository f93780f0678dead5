package bridge

import (
	"context"
	"strings"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
)

// TraceContext is the propagator sagabridge uses everywhere: W3C
// traceparent and tracestate, in Kafka headers and in Temporal headers.
var TraceContext propagation.TextMapPropagator = propagation.TraceContext{}

// TracingInterceptor continues traces through Temporal: set it on the
// client options of the bridge (it carries the delivery span into the
// SignalWithStart call's headers) and of the workers (workflows, signal
// handlers and activities become spans of the same trace).
func TracingInterceptor(tp trace.TracerProvider) (interceptor.Interceptor, error) {
	return temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{
		Tracer: tp.Tracer("sagabridge/temporal"), TextMapPropagator: TraceContext,
	})
}

// ConsumerHeaders reads W3C trace context from a consumed record's headers.
type ConsumerHeaders []*sarama.RecordHeader

// Get returns the value of the last header named key (case-insensitive).
func (h ConsumerHeaders) Get(key string) string {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i] != nil && strings.EqualFold(string(h[i].Key), key) {
			return string(h[i].Value)
		}
	}
	return ""
}

// Set is not used on consumed records.
func (h ConsumerHeaders) Set(string, string) {}

// Keys lists the header names.
func (h ConsumerHeaders) Keys() []string {
	keys := make([]string, 0, len(h))
	for _, x := range h {
		if x != nil {
			keys = append(keys, string(x.Key))
		}
	}
	return keys
}

// deliverSpan starts the span of one delivery to a workflow. A call carries
// several records, each perhaps with its own trace: the span continues the
// first record's trace and links the others. Without trace context in the
// records it starts a new trace.
func (b *Bridge) deliverSpan(ctx context.Context, target Target, recs []record) (context.Context, trace.Span) {
	if !b.tracing {
		return ctx, noop.Span{}
	}
	parent := ctx
	var links []trace.Link
	for i, r := range recs {
		rc := TraceContext.Extract(context.Background(), ConsumerHeaders(r.msg.Headers))
		sc := trace.SpanContextFromContext(rc)
		if !sc.IsValid() {
			continue
		}
		if i == 0 {
			parent = trace.ContextWithRemoteSpanContext(ctx, sc)
			continue
		}
		links = append(links, trace.Link{SpanContext: sc})
	}
	first := recs[0].msg
	return b.tracer.Start(parent, "sagabridge deliver "+target.WorkflowType,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", first.Topic),
			attribute.Int("messaging.destination.partition.id", int(first.Partition)),
			attribute.Int64("messaging.kafka.offset", first.Offset),
			attribute.Int("messaging.batch.message_count", len(recs)),
			attribute.String("temporal.workflow_id", target.WorkflowID),
			attribute.String("temporal.workflow_type", target.WorkflowType),
		))
}

// endSpan ends a delivery span with the delivery's outcome.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
