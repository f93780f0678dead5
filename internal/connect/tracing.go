package connect

import (
	"strings"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
)

// TracingInterceptor continues traces through Temporal: set it on the
// client options of the bridge (it carries the delivery span into the
// SignalWithStart call's headers) and of the workers (workflows, signal
// handlers and activities become spans of the same trace). The propagator
// is W3C trace context (traceparent, tracestate), as in Kafka headers.
func TracingInterceptor(tp trace.TracerProvider) (interceptor.Interceptor, error) {
	return temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{
		Tracer: tp.Tracer("sagabridge/temporal"), TextMapPropagator: propagation.TraceContext{},
	})
}

// ConsumerHeaders reads W3C trace context from a consumed record's headers
// (a propagation.TextMapCarrier).
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
