package activities

import (
	"context"
	"strings"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/propagation"
)

// producerHeaders writes W3C trace context into a produced record's headers.
type producerHeaders struct{ msg *sarama.ProducerMessage }

func (h producerHeaders) Get(key string) string {
	for i := len(h.msg.Headers) - 1; i >= 0; i-- {
		if strings.EqualFold(string(h.msg.Headers[i].Key), key) {
			return string(h.msg.Headers[i].Value)
		}
	}
	return ""
}

func (h producerHeaders) Set(key, value string) {
	for i := range h.msg.Headers {
		if strings.EqualFold(string(h.msg.Headers[i].Key), key) {
			h.msg.Headers[i].Value = []byte(value)
			return
		}
	}
	h.msg.Headers = append(h.msg.Headers, sarama.RecordHeader{Key: []byte(key), Value: []byte(value)})
}

func (h producerHeaders) Keys() []string {
	keys := make([]string, len(h.msg.Headers))
	for i, x := range h.msg.Headers {
		keys[i] = string(x.Key)
	}
	return keys
}

// injectTrace sets traceparent (and tracestate) on msg from the span in
// ctx: with the SDK's tracing interceptor on the worker, the activity's
// span, so the record joins the trace of the event that caused it. Without
// a span it does nothing.
func injectTrace(ctx context.Context, msg *sarama.ProducerMessage) {
	propagation.TraceContext{}.Inject(ctx, producerHeaders{msg})
}
