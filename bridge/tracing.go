package bridge

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagabridge/sagabridge/internal/connect"
)

// deliverSpan starts the span of one delivery to a workflow. A call carries
// several records, each perhaps with its own trace: the span continues the
// first record's trace and links the others. Without trace context in the
// records it starts a new trace.
func (b *Bridge) deliverSpan(f *flow, target Target, recs []record) (context.Context, trace.Span) {
	ctx := f.callCtx
	if !b.tracing {
		return ctx, noop.Span{}
	}
	parent := ctx
	var links []trace.Link
	for i, r := range recs {
		rc := propagation.TraceContext{}.Extract(context.Background(), connect.ConsumerHeaders(r.saramaHeaders()))
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
	return b.tracer.Start(parent, "sagabridge deliver "+target.WorkflowType,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", f.topic),
			attribute.Int("messaging.destination.partition.id", int(f.partition)),
			attribute.Int64("messaging.kafka.offset", recs[0].offset),
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
