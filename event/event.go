// Package event defines what travels from the bridge to a workflow: the
// envelope of one Kafka record, the batch a single signal carries, and the
// per-partition watermarks a workflow uses to apply each record exactly once.
//
// The bridge and the workflows both import this package; it has no
// dependency on Kafka or Temporal clients, so workflow code can use it
// without breaking determinism. It must not import any other sagabridge package.
package event

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// DefaultSignal is the signal name the bridge uses when a route names none.
const DefaultSignal = "events"

// AppliedQuery is the query a workflow fed by the bridge answers with its
// Watermarks (workflows.Inbox registers it). The bridge asks it when it has
// sent a workflow more records or bytes than dispatch.workflow_window_*
// that it does not yet know applied, and waits until the workflow has
// caught up: a workflow that is behind is not sent more.
const AppliedQuery = "sagabridge.applied"

// MemoKey is the workflow memo key under which an entity workflow records
// its final Watermarks before it closes. The bridge reads it to tell a
// redelivered record for a closed workflow from a new one.
const MemoKey = "sagabridge.applied"

// Header is one Kafka record header. Values are kept as bytes so that
// binary headers survive the trip unchanged.
type Header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// Envelope is one Kafka record as a workflow sees it.
type Envelope struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// Key is the record key. Keys are treated as text because they name
	// workflows; the DLQ keeps the original bytes.
	Key string `json:"key,omitempty"`
	// Type is the event type taken from the header or JSON field the
	// route names; empty when the route names neither.
	Type    string   `json:"type,omitempty"`
	Headers []Header `json:"headers,omitempty"`
	// Value holds the record value for routes with payload "json".
	Value json.RawMessage `json:"value,omitempty"`
	// Raw holds the record value for routes with payload "bytes".
	Raw       []byte    `json:"raw,omitempty"`
	Timestamp time.Time `json:"timestamp"`
}

// Position returns where the record sits in Kafka.
func (e Envelope) Position() Position {
	return Position{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset}
}

// Header returns the value of the last header named key, and whether any was present.
func (e Envelope) Header(key string) ([]byte, bool) {
	for i := len(e.Headers) - 1; i >= 0; i-- {
		if e.Headers[i].Key == key {
			return e.Headers[i].Value, true
		}
	}
	return nil, false
}

// Decode unmarshals the JSON value into v and names the record on failure.
func (e Envelope) Decode(v any) error {
	if err := json.Unmarshal(e.Value, v); err != nil {
		return fmt.Errorf("decode %s event at %s: %w", e.Type, e.Position(), err)
	}
	return nil
}

// JSONSize is the size of e as JSON: header values and Raw in base64,
// escapes counted. It errs high by a few bytes, never low, so a payload
// sized by it stays under a limit it is checked against.
func (e Envelope) JSONSize() int {
	n := 120 // field names, punctuation, partition, offset, timestamp
	n += jsonStringSize(e.Topic) + jsonStringSize(e.Key) + jsonStringSize(e.Type)
	for _, h := range e.Headers {
		n += 20 + jsonStringSize(h.Key) + base64.StdEncoding.EncodedLen(len(h.Value))
	}
	n += len(e.Value) // raw JSON, as it is
	n += base64.StdEncoding.EncodedLen(len(e.Raw))
	return n
}

// jsonStringSize is the size of s as a JSON string: quotes, and escapes
// (encoding/json escapes control characters, '"', '\\' and, for HTML,
// '<', '>' and '&', as \u00XX: six bytes at most).
func jsonStringSize(s string) int {
	n := len(s) + 2
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20, c == '"', c == '\\', c == '<', c == '>', c == '&':
			n += 5
		}
	}
	return n
}

// Batch is the payload of one signal: records for one workflow, in offset
// order within each partition.
type Batch struct {
	Events []Envelope `json:"events"`
}

// Position identifies a record in Kafka.
type Position struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// String renders the position as topic/partition@offset.
func (p Position) String() string {
	return fmt.Sprintf("%s/%d@%d", p.Topic, p.Partition, p.Offset)
}

// partitionKey names a partition inside Watermarks.
func partitionKey(topic string, partition int32) string {
	return fmt.Sprintf("%s/%d", topic, partition)
}

// Watermarks records, per topic partition, the highest offset a workflow
// has applied. Kafka redelivers a partition from a committed offset forward,
// so a record at or below its partition's watermark is a duplicate. The
// state is O(partitions) and is carried across ContinueAsNew.
//
// The zero value is not usable; use make(Watermarks) or NewWatermarks.
type Watermarks map[string]int64

// NewWatermarks returns empty watermarks.
func NewWatermarks() Watermarks { return make(Watermarks) }

// Covers reports whether p was already applied.
func (w Watermarks) Covers(p Position) bool {
	high, ok := w[partitionKey(p.Topic, p.Partition)]
	return ok && p.Offset <= high
}

// Admit records p as applied and reports true, or reports false when p was
// already applied.
func (w Watermarks) Admit(p Position) bool {
	if w.Covers(p) {
		return false
	}
	w[partitionKey(p.Topic, p.Partition)] = p.Offset
	return true
}
