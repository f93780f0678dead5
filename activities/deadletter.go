package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/activity"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// DeadLetterActivity is the registered name of DeadLetterer.DeadLetter.
const DeadLetterActivity = "DeadLetter"

// DeadLetterInput is a saga step that failed for good: the record that
// started it, and how it failed. workflows.DeadLetter builds it.
type DeadLetterInput struct {
	// Event is the Kafka record whose handling failed; its key and headers
	// go to the DLQ unchanged, and its value too for routes with payload
	// "bytes". A "json" value has travelled through Temporal's JSON
	// converter, which keeps its content but drops insignificant white
	// space.
	Event event.Envelope `json:"event"`
	// ActivityType is the activity that exhausted its retry policy.
	ActivityType string `json:"activity_type"`
	// Attempts is how many times it ran.
	Attempts int `json:"attempts"`
	// Error is its last failure.
	Error string `json:"error"`
	// Class is the DLQ class; empty means dlq.ClassActivity. An entity
	// that receives a record after its final status writes it with
	// dlq.ClassWorkflowClosed.
	Class dlq.Class `json:"class,omitempty"`
}

// DeadLetterer writes failed saga steps to the DLQ topic of the record that
// started them (dlq.TopicFor(topic, Suffix)) with class dlq.ClassActivity
// and the workflow ID, run ID and activity type. Its producer should be
// idempotent (ProducerConfig). It does not own the producer. Register it on
// a worker with RegisterActivity; its activity is "DeadLetter".
//
// Like Publish this is at-least-once: a DeadLetter that wrote and then timed
// out writes again on retry. Every record carries HeaderEventID, the same on
// every attempt, so a repeat is recognisable (dlq list shows it).
type DeadLetterer struct {
	Producer sarama.SyncProducer
	// Suffix names the DLQ topic; empty means dlq.DefaultSuffix.
	Suffix string
}

// DeadLetter writes in's record to its DLQ topic and returns once the
// broker has acknowledged it.
func (d *DeadLetterer) DeadLetter(ctx context.Context, in DeadLetterInput) error {
	if in.Event.Topic == "" {
		return errors.New("dead-letter: the event has no topic")
	}
	info := activity.GetInfo(ctx)
	f := dlq.Failure{
		Topic: in.Event.Topic, Partition: in.Event.Partition, Offset: in.Event.Offset,
		Key: []byte(in.Event.Key), Value: in.Event.Raw,
		Class: cmp.Or(in.Class, dlq.ClassActivity), Err: in.Error, FailedAt: time.Now().UTC(), Attempts: in.Attempts,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID, ActivityType: in.ActivityType,
	}
	if f.Value == nil {
		f.Value = in.Event.Value
	}
	for _, h := range in.Event.Headers {
		f.Headers = append(f.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	suffix := d.Suffix
	if suffix == "" {
		suffix = dlq.DefaultSuffix
	}
	msg := f.Message(suffix)
	id := EventID(info.WorkflowExecution.ID, info.WorkflowExecution.RunID, info.ActivityID)
	msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(HeaderEventID), Value: []byte(id)})
	injectTrace(ctx, msg)
	if _, _, err := d.Producer.SendMessage(msg); err != nil {
		return fmt.Errorf("dead-letter %s (%s failed in %s) to %s: %w", in.Event.Position(), in.ActivityType, id, msg.Topic, err)
	}
	return nil
}
