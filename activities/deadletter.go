package activities

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/propagation"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/sagabridge/sagabridge/activities/contract"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

// DeadLetterActivity is the registered name of DeadLetterer.DeadLetter
// (contract.DeadLetterActivity).
const DeadLetterActivity = contract.DeadLetterActivity

// DeadLetterInput is a saga step that failed for good: the record that
// started it, and how it failed. It is defined in package contract, which
// workflow code imports without pulling in the Kafka client.
type DeadLetterInput = contract.DeadLetterInput

// DeadLetterer writes failed saga steps to the DLQ topic of the record that
// started them (dlq.TopicFor(topic, Suffix)) with class dlq.ClassActivity
// and the workflow ID, run ID and activity type. Its producer should be
// idempotent (ProducerConfig). It does not own the producer. Register it on
// a worker with RegisterActivity; its activity is "DeadLetter".
//
// Like Publish this is at-least-once: a DeadLetter that wrote and then timed
// out writes again on retry. Every record carries dlq.HeaderEventID, the
// same on every attempt, so a repeat is recognisable (dlq list -json shows
// it as event_id), and the activity's trace context in
// dlq.HeaderTraceParent: the record's own headers, traceparent included,
// go to the DLQ unchanged.
//
// A dead letter too large for the producer (MaxMessageBytes) or for the DLQ
// topic (its max.message.bytes) is written in reduced form (dlq.Reduced:
// the value dropped, its size and what was dropped in headers), as the
// bridge writes its own; it can still be found and redriven from the
// source topic. An input that can never be written (no topic) fails the
// activity without retries, naming the field.
type DeadLetterer struct {
	Producer sarama.SyncProducer
	// Suffix names the DLQ topic; empty means dlq.DefaultSuffix.
	Suffix string
	// MaxMessageBytes is the largest record Producer takes (its
	// Producer.MaxMessageBytes; sagaworker's producer takes
	// dlq.max_message_bytes). Zero means sarama's default, 1 MiB.
	MaxMessageBytes int
	// Alone sends one record per request, as Publisher.Alone: a dead
	// letter the broker refused in a batch is sent again whole through
	// it before it is written in reduced form. Optional.
	Alone sarama.SyncProducer
}

// saramaMaxMessageBytes is sarama's default Producer.MaxMessageBytes.
const saramaMaxMessageBytes = 1 << 20

// DeadLetter writes in's record to its DLQ topic and returns once the
// broker has acknowledged it.
func (d *DeadLetterer) DeadLetter(ctx context.Context, in DeadLetterInput) error {
	if in.Event.Topic == "" {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("dead-letter: the event has no topic (Event.Topic; activity %s, offset %d)", in.ActivityType, in.Event.Offset),
			"InvalidDeadLetter", nil)
	}
	if d.Producer == nil {
		return noProducer("dead-letter", "DeadLetterer.Producer")
	}
	info := activity.GetInfo(ctx)
	f := dlq.Failure{
		Topic: in.Event.Topic, Partition: in.Event.Partition, Offset: in.Event.Offset,
		Key: in.Event.RecordKey(), Value: in.Event.RecordValue(),
		Class: dlq.Class(cmp.Or(in.Class, contract.ClassActivity)), Err: in.Error, FailedAt: time.Now().UTC(), Attempts: in.Attempts,
		Timestamp:  in.Event.Timestamp,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID, ActivityType: in.ActivityType,
	}
	for _, h := range in.Event.Headers {
		f.Headers = append(f.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	suffix := cmp.Or(d.Suffix, dlq.DefaultSuffix)
	f.EventID = EventID(info.WorkflowExecution.ID, info.WorkflowExecution.RunID, info.ActivityID)
	trace := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, trace)
	f.TraceParent, f.TraceState = trace.Get("traceparent"), trace.Get("tracestate")
	log := activity.GetLogger(ctx)
	msg := f.Message(suffix)
	if size, limit := msg.ByteSize(2), cmp.Or(d.MaxMessageBytes, saramaMaxMessageBytes); size > limit {
		log.Warn("dead letter too large for the producer; writing it in reduced form", "topic", msg.Topic, "bytes", size, "max_message_bytes", limit)
		f = f.Reduced()
		msg = f.Message(suffix)
	}
	err := dlq.SendOrAlone(ctx, d.Producer, d.Alone, func() *sarama.ProducerMessage { return f.Message(suffix) })
	if err != nil && dlq.TooLarge(err) && !f.IsReduced() { // the topic's max.message.bytes, which only the broker knows
		log.Warn("dead letter too large for its DLQ topic; writing it in reduced form", "topic", msg.Topic, "error", err)
		reduced := f.Reduced()
		err = dlq.SendOrAlone(ctx, d.Producer, d.Alone, func() *sarama.ProducerMessage { return reduced.Message(suffix) })
	}
	if err != nil {
		err = fmt.Errorf("dead-letter %s (%s failed in %s) to %s: %w", in.Event.Position(), in.ActivityType, f.EventID, msg.Topic, err)
		if kafkatxn.AccessDenied(err) {
			return accessDenied(err)
		}
		return err
	}
	return nil
}
