// Package activities holds the activities sagabridge gives workflows:
// Publisher, which publishes a workflow's outcome events to Kafka, and
// DeadLetterer, which sends the record behind a failed saga step to its DLQ.
//
// Published records carry W3C trace context (traceparent) from the
// activity's span, when the worker traces (connect.TracingInterceptor).
//
// Temporal → Kafka is at-least-once: an activity that published and then
// timed out is retried and publishes again. Every record therefore carries a
// deterministic event ID (header HeaderEventID), the same on every attempt,
// so consumers can drop the repeats.
//
// Activities run in workers, not in workflow code. Workflow code that only
// calls them by name imports package contract (their names and input
// types, without the Kafka client) instead. This package must not import
// the bridge engine, the configuration or the workflows package.
package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
	"github.com/sagabridge/sagabridge/internal/topicname"
)

// Header names set on every published record.
const (
	// HeaderEventID is "<workflow ID>/<run ID>/<activity ID>": stable across
	// retries of one activity, unique across activities and runs.
	HeaderEventID = "sagabridge.event.id"
	// HeaderEventType is the Outcome's Type.
	HeaderEventType = "event-type"
)

// Outcome is one event a workflow publishes.
type Outcome struct {
	Topic string          `json:"topic"`
	Key   string          `json:"key"` // "" for a record without a key (null), which a compacted topic refuses
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

// Publisher publishes outcomes with an idempotent producer (see
// ProducerConfig). It does not own the producer. Register it on a worker
// with RegisterActivity; its activity is "Publish".
type Publisher struct {
	Producer sarama.SyncProducer
	// Alone sends one record per request (a producer of dlq.AloneConfig). A
	// broker refuses a whole batch as too large when the records sarama
	// put in it exceed the topic's max.message.bytes together; each such
	// record is sent again through Alone, and only a record refused alone
	// is too large. Optional: without it a record refused in a batch
	// counts as too large.
	Alone sarama.SyncProducer
}

// ProducerConfig is the producer Publisher expects: idempotent, so the
// broker drops the producer's own retries, and acknowledged by all in-sync
// replicas before the activity completes.
func ProducerConfig(version sarama.KafkaVersion) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = version
	c.ClientID = "sagabridge-publisher"
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Net.MaxOpenRequests = 1
	return c
}

// Publish sends o and returns once the broker has acknowledged it. An
// outcome that can never be published fails without retries (a
// non-retryable ApplicationError): "InvalidOutcome" without a topic or a
// type, with a topic name Kafka refuses, or that the topic refuses sent
// alone (INVALID_RECORD, as a compacted topic does a keyless record; see
// dlq.SendOrAlone), "OutcomeTooLarge" over the producer's
// Producer.MaxMessageBytes or its topic's max.message.bytes. Every other failure (the broker out of
// reach, the topic not created yet, a missing ACL) is retried.
func (p *Publisher) Publish(ctx context.Context, o Outcome) error {
	var missing []string
	if o.Topic == "" {
		missing = append(missing, "Outcome.Topic")
	}
	if o.Type == "" {
		missing = append(missing, "Outcome.Type")
	}
	if len(missing) > 0 {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("publish: the outcome has no %s (key %q)", strings.Join(missing, " and no "), o.Key), "InvalidOutcome", nil)
	}
	if err := topicname.Check(o.Topic); err != nil { // the broker answers "unknown topic", retried for ever
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("publish: Outcome.Topic %v (key %q)", err, o.Key), "InvalidOutcome", nil)
	}
	if p.Producer == nil {
		return noProducer("publish", "Publisher.Producer")
	}
	info := activity.GetInfo(ctx)
	id := EventID(info.WorkflowExecution.ID, info.WorkflowExecution.RunID, info.ActivityID)
	message := func() *sarama.ProducerMessage {
		msg := &sarama.ProducerMessage{
			Topic: o.Topic,
			Value: sarama.ByteEncoder(o.Value),
			Headers: []sarama.RecordHeader{
				{Key: []byte(HeaderEventID), Value: []byte(id)},
				{Key: []byte(HeaderEventType), Value: []byte(o.Type)},
			},
		}
		if o.Key != "" { // none: a null key, spread over the partitions
			msg.Key = sarama.StringEncoder(o.Key)
		}
		injectTrace(ctx, msg)
		return msg
	}
	if err := dlq.SendOrAlone(ctx, p.Producer, p.Alone, message); err != nil {
		err = fmt.Errorf("publish %s %s to %s: %w", o.Type, id, o.Topic, err)
		if dlq.TooLarge(err) {
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%v (%d bytes of value)", err, len(o.Value)), "OutcomeTooLarge", err)
		}
		if kafkatxn.AccessDenied(err) {
			return accessDenied(err)
		}
		// The topic refuses it as it is, retrying cannot help: refused
		// alone, or without Alone a keyless record, the usual cause. A
		// keyed one may only have shared its batch with one.
		if errors.Is(err, sarama.ErrInvalidRecord) && (p.Alone != nil || o.Key == "") {
			why := "a compacted topic refuses a record without a key: set Outcome.Key"
			if o.Key != "" {
				why = "the topic refuses the record sent alone: see its broker-side validation, a schema say"
			}
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%v (%s)", err, why), "InvalidOutcome", err)
		}
		return err
	}
	return nil
}

// accessDenied is the failure of an activity Kafka refused the worker's
// own access (an ACL, a credential): the worker's set-up, never the
// record's, so it is retried, typed KafkaAccessDenied so that a saga does
// not take it for the record's failure (workflows.WorkerFault).
func accessDenied(err error) error {
	return temporal.NewApplicationErrorWithCause(err.Error()+" (Kafka refused the worker's own access: see its ACLs and credentials)", "KafkaAccessDenied", err)
}

// noProducer is the failure of an activity whose producer field is nil:
// the worker's set-up, never the record's, so it is retried, and the
// outcome or dead letter goes out once the worker is fixed.
func noProducer(what, field string) error {
	return temporal.NewApplicationError(fmt.Sprintf(
		"%s: %s is nil: the worker has no Kafka producer (with sagaworker, set Worker.Kafka so that Deps.Producer is one)", what, field), "NoProducer")
}

// EventID builds the deterministic ID of the record one activity publishes.
func EventID(workflowID, runID, activityID string) string {
	return workflowID + "/" + runID + "/" + activityID
}
