package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/activity"

	"github.com/sagabridge/sagabridge/activities/contract"
	"github.com/sagabridge/sagabridge/dlq"
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
		Class: dlq.Class(cmp.Or(in.Class, contract.ClassActivity)), Err: in.Error, FailedAt: time.Now().UTC(), Attempts: in.Attempts,
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
