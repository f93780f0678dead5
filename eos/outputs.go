package eos

// Outputs as sarama records, and what to do with records the broker or
// sarama refuses: the partition loop dead-letters the record whose outputs
// can never be sent, and reduces dead letters too large for the DLQ.

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
	"github.com/sagabridge/sagabridge/internal/topicname"
)

// message is o as a sarama record.
func (o Output) message() *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: o.Topic, Headers: o.Headers}
	if o.Key != nil {
		m.Key = sarama.ByteEncoder(o.Key)
	}
	if o.Value != nil {
		m.Value = sarama.ByteEncoder(o.Value)
	}
	return m
}

// checkOutputs returns outs as sarama records, or a permanent error that
// names the first one over the producer's Producer.MaxMessageBytes:
// sarama would refuse it, and the transaction with it, on every attempt.
// It measures a record as sarama does (ProducerMessage.ByteSize).
func (l *partitionLoop) checkOutputs(outs []Output) ([]*sarama.ProducerMessage, error) {
	msgs := make([]*sarama.ProducerMessage, len(outs))
	for i, o := range outs {
		if err := topicname.Check(o.Topic); err != nil { // sarama fails it locally, the transaction with it, on every try
			return nil, Permanent(fmt.Errorf("eos: output %d of %d: Output.Topic %w", i+1, len(outs), err))
		}
		msgs[i] = o.message()
		if size := msgs[i].ByteSize(2); l.maxBytes > 0 && size > l.maxBytes {
			return nil, Permanent(fmt.Errorf("eos: output %d of %d (topic %q) is %d bytes, over the producer's Producer.MaxMessageBytes %d",
				i+1, len(outs), o.Topic, size, l.maxBytes))
		}
	}
	return msgs, nil
}

// refusedRecord reports whether err, one record's error from a send, is
// the broker refusing that record for what it is, which no retry changes:
// too large (dlq.TooLarge), or invalid for its topic (INVALID_RECORD: say
// no key for a compacted topic; INVALID_TOPIC_EXCEPTION). Not
// INVALID_TIMESTAMP: sarama stamps every record with this host's clock,
// so a refused timestamp is the clock's fault, every record's alike.
func refusedRecord(err error) bool {
	return dlq.TooLarge(err) || errors.Is(err, sarama.ErrInvalidRecord) || errors.Is(err, sarama.ErrInvalidTopic)
}

// refused records, for the next attempt, what sendErr (from SendMessages)
// says the broker refused (refusedRecord): the input offsets of the dead
// letters too large, to reduce them, and of the records whose outputs the
// broker refused, as poison when they are one record's alone and as
// suspects otherwise.
func (t *txn) refused(sendErr error) {
	l := t.l
	refusedOutputs := map[int64]error{} // offset → why
	deadRefused := false
	var pes sarama.ProducerErrors
	errors.As(sendErr, &pes)
	for _, pe := range pes {
		if !refusedRecord(pe.Err) {
			continue
		}
		if off, ok := t.deadOf[pe.Msg]; ok && dlq.TooLarge(pe.Err) {
			if l.reduceAt == nil {
				l.reduceAt = map[int64]bool{}
			}
			l.reduceAt[off] = true
			deadRefused = true
		}
		if off, ok := t.outOf[pe.Msg]; ok {
			refusedOutputs[off] = pe.Err
		}
	}
	// Once the broker refuses one record, sarama fails the transaction's
	// other records with the same error, so a record named beside another
	// may be innocent; and the topic's max.message.bytes bounds a record
	// batch, in which sarama puts a send's records for one partition, so
	// outputs that fit one by one may be refused together. Only an output
	// refused in a send of its own is poison.
	if len(refusedOutputs) == 1 && !deadRefused && len(t.pending) == 1 {
		for off, cause := range refusedOutputs {
			if l.poison == nil {
				l.poison = map[int64]error{}
			}
			why := "the broker refused the record's outputs"
			if dlq.TooLarge(cause) {
				why += " as too large for their topic"
			}
			l.poison[off] = Permanent(fmt.Errorf("eos: %s: %w", why, kafkatxn.SendErrors(sendErr)))
		}
		return
	}
	for off := range refusedOutputs {
		if l.suspects == nil {
			l.suspects = map[int64]bool{}
		}
		l.suspects[off] = true
	}
}

// reduceTooLarge decides, after a transaction that failed with a record
// the broker refused (refusedRecord), what the next attempt does: it
// dead-letters or isolates the outputs named (txn.refused) and, for a
// record too large, reduces the dead letters named, or all of them when
// none was.
func (l *partitionLoop) reduceTooLarge(err error) {
	if len(l.poison) > 0 || len(l.suspects) > 0 {
		l.log.Warn("outputs refused by the broker; the next attempt dead-letters their record, or sends each suspect record's outputs one by one",
			"poison", len(l.poison), "suspects", len(l.suspects), "err", err)
		return
	}
	if !dlq.TooLarge(err) {
		return
	}
	if len(l.reduceAt) > 0 {
		l.log.Warn("dead letters too large for the DLQ; the next attempt sends them in reduced form", "offsets", len(l.reduceAt), "err", err)
		return
	}
	if !l.reduceAll {
		l.reduceAll = true
		l.log.Warn("a record was too large for its topic; the batch's dead letters go in reduced form", "err", err)
	}
}
