// Package event defines what travels from the bridge to a workflow: the
// envelope of one Kafka record, the batch a single signal carries, and the
// per-partition watermarks a workflow uses to apply each record exactly once.
//
// The bridge and the workflows both import this package; it has no
// dependency on Kafka or Temporal clients, so workflow code can use it
// without breaking determinism. It must not import any other sagabridge package.
package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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
	// TopicID is the Kafka topic ID (KIP-516) the record was read from;
	// empty when the broker does not serve topic IDs. A topic deleted and
	// created again under the same name has a new ID and starts its
	// offsets again, so watermarks are kept per topic ID.
	TopicID string `json:"topic_id,omitempty"`
	// Key is the record key. Keys are treated as text because they name
	// workflows; a key that is not valid UTF-8 is in KeyBytes too.
	Key string `json:"key,omitempty"`
	// KeyBytes is the record key when it is not valid UTF-8, and nil
	// otherwise. JSON writes each invalid byte of a string as U+FFFD, so
	// such a key reaches a workflow changed in Key and whole only here.
	// SetKey sets both; RecordKey returns the key's bytes.
	KeyBytes []byte `json:"key_bytes,omitempty"`
	// KeyNull says the record had no key at all (null), where Key is ""
	// for an empty key too. JSON keeps the difference only here.
	KeyNull bool `json:"key_null,omitempty"`
	// Type is the event type taken from the header or JSON field the
	// route names; empty when the route names neither.
	Type    string   `json:"type,omitempty"`
	Headers []Header `json:"headers,omitempty"`
	// Value holds the record value for routes with payload "json".
	Value json.RawMessage `json:"value,omitempty"`
	// Raw holds the record value for routes with payload "bytes".
	Raw []byte `json:"raw,omitempty"`
	// ValueEmpty says the record's value was empty, not null: JSON drops
	// an empty Raw, as it does a null one.
	ValueEmpty bool      `json:"value_empty,omitempty"`
	Timestamp  time.Time `json:"timestamp"`
}

// Position returns where the record sits in Kafka.
func (e Envelope) Position() Position {
	return Position{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset, TopicID: e.TopicID}
}

// SetKey sets the record key: Key, and KeyBytes when k is not valid UTF-8.
func (e *Envelope) SetKey(k string) {
	e.Key, e.KeyBytes = k, nil
	if !utf8.ValidString(k) {
		e.KeyBytes = []byte(k)
	}
}

// RecordKey returns the record key's bytes as Kafka had them (KeyBytes when
// set, else Key; nil for a null key).
func (e Envelope) RecordKey() []byte {
	switch {
	case e.KeyNull:
		return nil
	case e.KeyBytes != nil:
		return e.KeyBytes
	}
	return []byte(e.Key)
}

// RecordValue returns the record value's bytes as Kafka had them: Raw or
// Value, empty (not nil) when ValueEmpty, nil for a null value.
func (e Envelope) RecordValue() []byte {
	switch {
	case e.Raw != nil:
		return e.Raw
	case e.Value != nil:
		return e.Value
	case e.ValueEmpty:
		return []byte{}
	}
	return nil
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
func (e Envelope) JSONSize() int { return e.jsonSize(6, true) }

// JSONSizeV2 is JSONSize as it was until it counted KeyBytes. A worker
// older than that field dropped it from the records it read, so workflows
// replaying a history it recorded use it (workflows, change
// "sagabridge.carry-key-bytes").
func (e Envelope) JSONSizeV2() int { return e.jsonSize(6, false) }

// JSONSizeV1 is JSONSize as it was until it counted each byte of invalid
// UTF-8 as the six bytes of \ufffd (it counted three, so a binary key
// sized at half its length). Workflows replaying a history recorded with it
// use it, since the sizes decide what a run carries into the next
// (workflows, change "sagabridge.carry-size-escapes").
func (e Envelope) JSONSizeV1() int { return e.jsonSize(3, false) }

// jsonSize is JSONSize, counting invalid bytes of UTF-8 each written as
// that many, and KeyBytes if keyBytes.
func (e Envelope) jsonSize(invalid int, keyBytes bool) int {
	str := func(s string) int { return jsonStringSize(s, invalid) }
	n := 200 // field names, punctuation, the largest partition, offset and timestamp (about 160)
	n += str(e.Topic) + str(e.Key) + str(e.Type)
	if e.TopicID != "" {
		n += 12 + str(e.TopicID) // ,"topic_id":
	}
	if keyBytes && e.KeyBytes != nil {
		n += 15 + base64.StdEncoding.EncodedLen(len(e.KeyBytes)) // ,"key_bytes":""
	}
	for _, h := range e.Headers {
		n += 20 + str(h.Key) + base64.StdEncoding.EncodedLen(len(h.Value))
		if h.Value == nil {
			n += 2 // null, not ""
		}
	}
	n += len(e.Value) // raw JSON, as it is, but for HTML escapes:
	for _, c := range e.Value {
		if c == '<' || c == '>' || c == '&' {
			n += 5 // \u003c
		}
	}
	n += 4 * bytes.Count(e.Value, []byte("\u2028")) // \u2028 and \u2029 come out escaped
	n += 4 * bytes.Count(e.Value, []byte("\u2029"))
	n += base64.StdEncoding.EncodedLen(len(e.Raw))
	return n
}

// jsonStringSize is the size of s as a JSON string: quotes, and escapes
// (encoding/json escapes control characters, '"', '\\' and, for HTML,
// '<', '>' and '&', as \u00XX: six bytes at most; it writes each byte of
// invalid UTF-8 as the escape \ufffd, six bytes, counted as invalid, and
// U+2028/U+2029 as six).
func jsonStringSize(s string, invalid int) int {
	n := len(s) + 2
	for i, r := range s {
		switch {
		case r < 0x20, r == '"', r == '\\', r == '<', r == '>', r == '&':
			n += 5
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			n += invalid - 1 // one invalid byte becomes \ufffd
		case r == '\u2028', r == '\u2029':
			n += 3
		}
	}
	return n
}

// Batch is the payload of one signal: records for one workflow, in offset
// order within each partition.
type Batch struct {
	Events []Envelope `json:"events"`
	// OnClosed is the bridge's dispatch.on_closed_workflow policy ("dlq",
	// "drop" or "new_run"). A workflow that has reached its final status
	// and receives records before it closes treats them by it, as the
	// bridge treats records that reach it after it closed.
	OnClosed string `json:"on_closed,omitempty"`
	// Compact selects the compact wire form (see CompactFormat) for
	// encoding; decoding sets it when the batch came in that form.
	Compact bool `json:"-"`
}

// StartInput is the input the bridge starts a new run of a closed workflow
// with (on_closed_workflow "new_run"): the watermarks the closed run
// recorded, so the new run skips what the old one applied. An entity
// workflow (workflows.Snapshot) decodes it; a workflow that takes no input
// ignores it.
type StartInput struct {
	Watermarks Watermarks `json:"watermarks"`
}

// Position identifies a record in Kafka.
type Position struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// TopicID is the topic's Kafka ID; empty when unknown (see Envelope).
	TopicID string `json:"topic_id,omitempty"`
}

// String renders the position as topic/partition@offset.
func (p Position) String() string {
	return fmt.Sprintf("%s/%d@%d", p.Topic, p.Partition, p.Offset)
}

// partitionKey names a partition inside Watermarks: "topic/partition", and
// "topic/partition@topicID" when the topic ID is known.
func partitionKey(topic string, partition int32) string {
	return fmt.Sprintf("%s/%d", topic, partition)
}

// key is p's partition key, and the key without topic ID that watermarks
// recorded before topic IDs were known (legacy; empty when p has no ID).
func (p Position) key() (key, legacy string) {
	k := partitionKey(p.Topic, p.Partition)
	if p.TopicID == "" {
		return k, ""
	}
	return k + "@" + p.TopicID, k
}

// Watermarks records, per topic partition, the highest offset a workflow
// has applied. Kafka redelivers a partition from a committed offset forward,
// so a record at or below its partition's watermark is a duplicate. The
// state is O(partitions) and is carried across ContinueAsNew.
//
// Partitions are told apart by topic ID when the record has one, so a topic
// deleted and created again (offsets from 0 again) starts new watermarks.
// A watermark recorded without a topic ID (before the broker served them)
// stands for the first topic ID seen after it, which takes it over.
//
// The zero value is not usable; use make(Watermarks) or NewWatermarks.
type Watermarks map[string]int64

// NewWatermarks returns empty watermarks.
func NewWatermarks() Watermarks { return make(Watermarks) }

// high is p's partition watermark, and the key it is kept under.
//
// A record whose topic ID is not known (a broker that serves none, or a
// bridge that could not read it) is held against the watermark of its
// partition under any ID, the highest if there are several: applying a
// redelivery twice is worse than skipping a record of a recreated topic
// that no ID tells apart.
func (w Watermarks) high(p Position) (high int64, key string, ok bool) {
	key, legacy := p.key()
	if high, ok := w[key]; ok {
		return high, key, true
	}
	if legacy != "" {
		high, ok := w[legacy]
		return high, legacy, ok
	}
	prefix := key + "@"
	for k, v := range w {
		if strings.HasPrefix(k, prefix) && (!ok || v > high || (v == high && k < key)) {
			high, key, ok = v, k, true
		}
	}
	if !ok {
		key = p.Topic + "/" + strconv.FormatInt(int64(p.Partition), 10)
	}
	return high, key, ok
}

// Covers reports whether p was already applied.
func (w Watermarks) Covers(p Position) bool {
	high, _, ok := w.high(p)
	return ok && p.Offset <= high
}

// Admit records p as applied and reports true, or reports false when p was
// already applied.
func (w Watermarks) Admit(p Position) bool {
	if w.Covers(p) {
		return false
	}
	key, legacy := p.key()
	if legacy != "" {
		delete(w, legacy) // taken over by this topic ID
	} else {
		_, key, _ = w.high(p) // no ID: the partition's watermark, under whatever ID it has
	}
	w[key] = p.Offset
	return true
}

// Untagged reports whether p has a topic ID and its partition's watermark
// was recorded without one (TakeOver would move it).
func (w Watermarks) Untagged(p Position) bool {
	_, legacy := p.key()
	_, ok := w[legacy]
	return legacy != "" && ok
}

// TakeOver moves p's partition watermark recorded without a topic ID
// (before the broker served IDs) to p's topic ID, and reports whether
// there was one. Admit does so for a new record only; for a redelivery,
// which is what usually comes first after an upgrade, the watermark was
// left to the next ID seen, which could be the ID of the topic deleted and
// created again, whose new records were then skipped.
func (w Watermarks) TakeOver(p Position) bool {
	key, legacy := p.key()
	if legacy == "" {
		return false
	}
	high, ok := w[legacy]
	if !ok {
		return false
	}
	if old, has := w[key]; !has || old < high {
		w[key] = high
	}
	delete(w, legacy)
	return true
}

// Rewind marks p and the later offsets of its partition as not applied.
func (w Watermarks) Rewind(p Position) {
	high, found, ok := w.high(p)
	if !ok || high < p.Offset {
		return
	}
	key, legacy := p.key()
	if legacy != "" {
		delete(w, legacy)
	} else {
		key = found
	}
	if p.Offset == 0 {
		delete(w, key)
		return
	}
	w[key] = p.Offset - 1
}
