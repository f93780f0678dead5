package dlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/IBM/sarama"
)

// HeaderReduced is set on a DLQ record written in reduced form, saying what
// was dropped; HeaderValueSize gives the original value's size.
const (
	HeaderReduced   = HeaderPrefix + "reduced"
	HeaderValueSize = HeaderPrefix + "value.size"
)

// The bounds of a reduced DLQ record; together far below any topic's
// max.message.bytes.
const (
	reducedKeyBytes     = 1 << 10
	reducedHeaderBytes  = 16 << 10
	reducedErrorBytes   = 4 << 10
	reducedHeaderValues = 256
)

// TooLarge reports whether err says a record is too large for the producer
// (Producer.MaxMessageBytes) or the broker (the topic's max.message.bytes).
func TooLarge(err error) bool {
	var cfgErr sarama.ConfigurationError
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrMessageSetSizeTooLarge) ||
		(errors.As(err, &cfgErr) && strings.Contains(string(cfgErr), "MaxMessageBytes"))
}

// TooLargeRecords returns the records that sendErr, what a SyncProducer's
// SendMessages returned, says were too large (TooLarge): sarama reports
// each record's error. A record over Producer.MaxMessageBytes fails alone;
// a batch the broker refuses (its max.message.bytes) fails every record in
// it. Nil when sendErr carries no per-record errors.
func TooLargeRecords(sendErr error) map[*sarama.ProducerMessage]bool {
	var pes sarama.ProducerErrors
	if !errors.As(sendErr, &pes) {
		return nil
	}
	var refused map[*sarama.ProducerMessage]bool
	for _, pe := range pes {
		if TooLarge(pe.Err) {
			if refused == nil {
				refused = map[*sarama.ProducerMessage]bool{}
			}
			refused[pe.Msg] = true
		}
	}
	return refused
}

// Reduced returns f in a form that always fits a DLQ topic, for a failure
// whose full record does not: the value is dropped (its size kept in
// HeaderValueSize), the key and the error are truncated, and the original
// headers are kept in order only while they fit a small budget. The
// coordinates, class and workflow stay, and HeaderReduced says what was
// dropped, so the record can still be found, understood and redriven from
// its source topic.
func (f Failure) Reduced() Failure {
	var dropped []string
	r := f
	r.Value = nil
	if f.Value != nil {
		dropped = append(dropped, fmt.Sprintf("value (%d bytes)", len(f.Value)))
	}
	if len(f.Key) > reducedKeyBytes {
		r.Key = f.Key[:reducedKeyBytes]
		dropped = append(dropped, fmt.Sprintf("key truncated from %d bytes", len(f.Key)))
	}
	if len(f.Err) > reducedErrorBytes {
		r.Err = f.Err[:reducedErrorBytes]
	}
	r.Headers = nil
	size := 0
	for _, h := range f.Headers {
		size += len(h.Key) + len(h.Value)
		if size > reducedHeaderBytes || len(r.Headers) == reducedHeaderValues {
			break
		}
		r.Headers = append(r.Headers, h)
	}
	if n := len(f.Headers) - len(r.Headers); n > 0 {
		dropped = append(dropped, fmt.Sprintf("%d of %d headers", n, len(f.Headers)))
	}
	r.reduced = "dropped: " + strings.Join(dropped, ", ")
	r.valueSize = len(f.Value)
	return r
}

// IsReduced reports whether f is a Reduced form.
func (f Failure) IsReduced() bool { return f.reduced != "" }

// Dropped says what the Reduced form f dropped (HeaderReduced, e.g.
// "dropped: value, key beyond 1024 bytes"), and the size in bytes of the
// value the original record had (HeaderValueSize); "" and 0 for a dead
// letter that is whole.
func (f Failure) Dropped() (what string, valueSize int) { return f.reduced, f.valueSize }

// reducedHeaders are the headers that mark a reduced form.
func (f Failure) reducedHeaders() []sarama.RecordHeader {
	if f.reduced == "" {
		return nil
	}
	return []sarama.RecordHeader{
		{Key: []byte(HeaderReduced), Value: []byte(f.reduced)},
		{Key: []byte(HeaderValueSize), Value: []byte(strconv.Itoa(f.valueSize))},
	}
}

// Within returns f, or its Reduced form when f's DLQ record on the topic
// named by suffix would be over maxBytes as sarama measures it against
// Producer.MaxMessageBytes (ProducerMessage.ByteSize, record format v2).
// Reducing before the send keeps the producer out of its error path: a
// transactional producer that refuses a record fails the whole
// transaction, which then has to be aborted and tried again (and sarama
// v1.61.1 races on that path: cmd/saramarace). A record the broker
// refuses (the topic's max.message.bytes) is still found only by sending
// it (TooLarge). maxBytes ≤ 0 means no limit.
func (f Failure) Within(suffix string, maxBytes int) Failure {
	if f.IsReduced() || maxBytes <= 0 || f.Message(suffix).ByteSize(2) <= maxBytes {
		return f
	}
	return f.Reduced()
}
