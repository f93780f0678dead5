package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// CompactFormat is the format number of a Batch's compact wire form.
const CompactFormat = 2

// A Batch travels in one of two JSON forms. The full form, the only one
// before format 2, has every record carry its topic, topic ID, partition
// and key:
//
//	{"events":[{"topic":"orders","partition":3,"offset":7,"topic_id":"…","key":"o-1","value":{…},"timestamp":"…"}, …]}
//
// The compact form (Batch.Compact) says them once for each run of records
// that share them, and gives a timestamp that is a whole millisecond (as
// Kafka's are) in milliseconds since the epoch:
//
//	{"events":{"format":2,"groups":[{"topic":"orders","topic_id":"…","partition":3,"key":"o-1",
//	  "records":[{"offset":7,"value":{…},"ms":1764900000123}, …]}]}}
//
// A key that is not valid UTF-8 also has "key_bytes" (base64) beside
// "key", in the envelope or in the group (Envelope.KeyBytes); a null key
// has "key_null" (Envelope.KeyNull), and an empty value "value_empty".
//
// With small values it is about a third of the full form's size. A decoder
// built before format 2 cannot read it: the SDK logs the signal as
// corrupted and drops it. So the bridge sends it only when told that the
// workers read it (config dispatch.batch_format).

// compactEvents is the compact form's "events" object.
type compactEvents struct {
	Format int            `json:"format"`
	Groups []compactGroup `json:"groups"`
}

// compactGroup is a run of records that share topic, topic ID, partition and key.
type compactGroup struct {
	Topic     string          `json:"topic"`
	TopicID   string          `json:"topic_id,omitempty"`
	Partition int32           `json:"partition"`
	Key       string          `json:"key,omitempty"`
	KeyBytes  []byte          `json:"key_bytes,omitempty"`
	KeyNull   bool            `json:"key_null,omitempty"`
	Records   []compactRecord `json:"records"`
}

// compactRecord is what is left of an Envelope once its group names the rest.
type compactRecord struct {
	Offset  int64           `json:"offset"`
	Type    string          `json:"type,omitempty"`
	Headers []Header        `json:"headers,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	Raw     []byte          `json:"raw,omitempty"`
	// ValueEmpty is Envelope.ValueEmpty.
	ValueEmpty bool `json:"value_empty,omitempty"`
	// Ms is the timestamp in milliseconds since the epoch when it is a
	// whole millisecond; otherwise Timestamp holds it (absent when zero).
	Ms        *int64     `json:"ms,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
}

// fullBatch is Batch's full form, without its methods.
type fullBatch struct {
	Events   []Envelope `json:"events"`
	OnClosed string     `json:"on_closed,omitempty"`
}

// MarshalJSON writes b in its compact form when b.Compact is set, and in
// the full form otherwise.
func (b Batch) MarshalJSON() ([]byte, error) {
	if !b.Compact {
		return json.Marshal(fullBatch{Events: b.Events, OnClosed: b.OnClosed})
	}
	ce := compactEvents{Format: CompactFormat}
	for _, e := range b.Events {
		n := len(ce.Groups)
		if n == 0 || !ce.Groups[n-1].holds(e) {
			ce.Groups = append(ce.Groups, compactGroup{Topic: e.Topic, TopicID: e.TopicID, Partition: e.Partition, Key: e.Key, KeyBytes: e.KeyBytes, KeyNull: e.KeyNull})
			n++
		}
		g := &ce.Groups[n-1]
		g.Records = append(g.Records, compactOf(e))
	}
	return json.Marshal(struct {
		Events   compactEvents `json:"events"`
		OnClosed string        `json:"on_closed,omitempty"`
	}{ce, b.OnClosed})
}

// UnmarshalJSON reads either form. An "events" object of another format
// than CompactFormat is an error that names it.
func (b *Batch) UnmarshalJSON(data []byte) error {
	var raw struct {
		Events   json.RawMessage `json:"events"`
		OnClosed string          `json:"on_closed"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*b = Batch{OnClosed: raw.OnClosed}
	events := bytes.TrimSpace(raw.Events)
	if len(events) == 0 || bytes.Equal(events, []byte("null")) {
		return nil
	}
	if events[0] == '[' {
		return json.Unmarshal(events, &b.Events)
	}
	var ce compactEvents
	if err := json.Unmarshal(events, &ce); err != nil {
		return fmt.Errorf("batch events: %w", err)
	}
	if ce.Format != CompactFormat {
		return fmt.Errorf("batch events: format %d is not one this code reads (%d); upgrade the worker", ce.Format, CompactFormat)
	}
	n := 0
	for _, g := range ce.Groups {
		n += len(g.Records)
	}
	b.Compact = true
	b.Events = make([]Envelope, 0, n)
	for _, g := range ce.Groups {
		for _, r := range g.Records {
			e := Envelope{Topic: g.Topic, TopicID: g.TopicID, Partition: g.Partition, Key: g.Key, KeyBytes: g.KeyBytes, KeyNull: g.KeyNull,
				Offset: r.Offset, Type: r.Type, Headers: r.Headers, Value: r.Value, Raw: r.Raw, ValueEmpty: r.ValueEmpty}
			switch {
			case r.Ms != nil:
				e.Timestamp = time.UnixMilli(*r.Ms).UTC()
			case r.Timestamp != nil:
				e.Timestamp = *r.Timestamp
			}
			b.Events = append(b.Events, e)
		}
	}
	return nil
}

// holds reports whether e belongs to g.
func (g *compactGroup) holds(e Envelope) bool {
	return g.Topic == e.Topic && g.TopicID == e.TopicID && g.Partition == e.Partition && g.Key == e.Key &&
		bytes.Equal(g.KeyBytes, e.KeyBytes) && g.KeyNull == e.KeyNull
}

// compactOf is e without the fields its group holds.
func compactOf(e Envelope) compactRecord {
	r := compactRecord{Offset: e.Offset, Type: e.Type, Headers: e.Headers, Value: e.Value, Raw: e.Raw, ValueEmpty: e.ValueEmpty}
	switch t := e.Timestamp; {
	case t.IsZero():
	case t.Equal(time.UnixMilli(t.UnixMilli())):
		ms := t.UnixMilli()
		r.Ms = &ms
	default:
		r.Timestamp = &t
	}
	return r
}
