// Package contract is what workflow code needs to call sagabridge's
// activities: their registered names and input types. It holds no
// implementation and imports no Kafka or Temporal client, so a workflow
// package can use it without pulling them in; package activities
// implements the activities (and re-exports these names).
//
// The JSON of each input is the contract between workflows and workers:
// fields may be added, none renamed or removed.
package contract

import "github.com/sagabridge/sagabridge/event"

// DeadLetterActivity is the registered name of the dead-letter activity
// (activities.DeadLetterer.DeadLetter).
const DeadLetterActivity = "DeadLetter"

// Class says why a record was dead-lettered: the value of the DLQ record's
// sagabridge.dlq.error.class header. These are the classes the dead-letter
// activity writes; dlq.Class lists them all, with the same strings.
type Class string

// The classes the dead-letter activity writes.
const (
	// ClassActivity: a saga activity exhausted its retry policy; the record
	// is the event that started the failed step (dlq.ClassActivity).
	ClassActivity Class = "activity"
	// ClassWorkflowClosed: a record arrived for a workflow that had
	// already reached its final status (dlq.ClassWorkflowClosed).
	ClassWorkflowClosed Class = "workflow_closed"
)

// DeadLetterInput is a saga step that failed for good: the record that
// started it, and how it failed. workflows.DeadLetter builds it.
type DeadLetterInput struct {
	// Event is the Kafka record whose handling failed; its key and headers
	// go to the DLQ unchanged, and its value too for routes with payload
	// "bytes". A "json" value has travelled through Temporal's JSON
	// converter, which keeps the document but not its bytes: it drops
	// insignificant white space and writes <, > and & as \u003c, \u003e
	// and \u0026.
	Event event.Envelope `json:"event"`
	// ActivityType is the activity that exhausted its retry policy.
	ActivityType string `json:"activity_type"`
	// Attempts is how many times it ran.
	Attempts int `json:"attempts"`
	// Error is its last failure.
	Error string `json:"error"`
	// Class is the DLQ class; empty means ClassActivity. An entity that
	// receives a record after its final status writes it with
	// ClassWorkflowClosed.
	Class Class `json:"class,omitempty"`
}
