package dlq

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/IBM/sarama"
)

// ErrRedriveLimit matches (with errors.Is) the *LimitError RedriveMessage
// returns for an entry that has been redriven the maximum number of times.
var ErrRedriveLimit = errors.New("redrive limit reached")

// LimitError is RedriveMessage's refusal of an entry redriven max times
// or more already.
type LimitError struct {
	// Partition and Offset are the DLQ record's position.
	Partition int32
	Offset    int64
	// Redrives is the entry's redrive count, Max the limit.
	Redrives, Max int
}

// Error names the DLQ record, its count and the maximum.
func (e *LimitError) Error() string {
	return fmt.Sprintf("DLQ record %d@%d has been redriven %d times, the maximum is %d", e.Partition, e.Offset, e.Redrives, e.Max)
}

// Is makes errors.Is(err, ErrRedriveLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrRedriveLimit }

// ErrReduced matches (with errors.Is) the *ReducedError RedriveMessage
// returns for an entry written in reduced form.
var ErrReduced = errors.New("dead letter in reduced form")

// ReducedError is RedriveMessage's refusal of an entry written in reduced
// form (Failure.Reduced): its value was dropped and its key or headers may
// have been cut, so it is not the original record, and sending it would
// write a null value (on a compacted topic, the key's deletion).
type ReducedError struct {
	// Partition and Offset are the DLQ record's position.
	Partition int32
	Offset    int64
	// Dropped says what the reduced form dropped (HeaderReduced).
	Dropped string
	// Topic, OriginalPartition and OriginalOffset are where the original
	// record was read.
	Topic             string
	OriginalPartition int32
	OriginalOffset    int64
}

// Error names the DLQ record, what it dropped and where the original is.
func (e *ReducedError) Error() string {
	return fmt.Sprintf("DLQ record %d@%d was written in reduced form (%s) and is not the original record; redrive the original from %s/%d@%d while the topic retains it",
		e.Partition, e.Offset, e.Dropped, e.Topic, e.OriginalPartition, e.OriginalOffset)
}

// Is makes errors.Is(err, ErrReduced) true.
func (e *ReducedError) Is(target error) bool { return target == ErrReduced }

// RedriveMessage builds the record that redrives e: sent to the original
// topic (e.Failure.Topic) with the original key and value byte for byte and
// the original headers, minus any DLQ header, with HeaderRedriveCount set to
// e.Redrives+1 (in place of the existing one, if any, else last), the
// original timestamp (when the dead letter kept it), and Partition set to
// the original partition. A producer built with
// RedrivePartitioner sends it there while the topic still has that
// partition (producers other than sarama hash keys differently, so hashing
// again could move a key to another partition, behind or ahead of its
// other records), and hashes the key otherwise.
//
// It refuses, with a *LimitError (which is ErrRedriveLimit) naming the DLQ
// record, its count and max, when e has been redriven max times or more
// already, and with a *ReducedError (which is ErrReduced) when e was
// written in reduced form.
func RedriveMessage(e Entry, max int) (*sarama.ProducerMessage, error) {
	if e.Redrives >= max {
		return nil, &LimitError{Partition: e.Partition, Offset: e.Offset, Redrives: e.Redrives, Max: max}
	}
	if e.Failure.IsReduced() {
		return nil, &ReducedError{Partition: e.Partition, Offset: e.Offset, Dropped: e.Failure.reduced,
			Topic: e.Failure.Topic, OriginalPartition: e.Failure.Partition, OriginalOffset: e.Failure.Offset}
	}
	if e.Failure.Topic == "" {
		return nil, fmt.Errorf("DLQ record %d@%d names no original topic", e.Partition, e.Offset)
	}
	count := sarama.RecordHeader{Key: []byte(HeaderRedriveCount), Value: []byte(strconv.Itoa(e.Redrives + 1))}
	hs := make([]sarama.RecordHeader, 0, len(e.Failure.Headers)+1)
	placed := false
	for _, h := range e.Failure.Headers {
		k := string(h.Key)
		if orig, ok := strings.CutPrefix(k, OriginalPrefix); ok && orig == HeaderRedriveCount {
			k = orig // a producer's count that was no count (Failure.Message): replaced by this one
		} else if ok && renamed(orig) {
			// The producer's own header, renamed by Failure.Message: restore it.
			hs = append(hs, sarama.RecordHeader{Key: []byte(orig), Value: bytes.Clone(h.Value)})
			continue
		}
		switch {
		case reserved(k):
			continue // the DLQ's own (the producer's were renamed): sagabridge.dlq.*, an activity's event ID
		case k == HeaderRedriveCount:
			if !placed {
				hs = append(hs, count)
				placed = true
			}
			continue
		}
		hs = append(hs, sarama.RecordHeader{Key: bytes.Clone(h.Key), Value: bytes.Clone(h.Value)})
	}
	if !placed {
		hs = append(hs, count)
	}
	msg := &sarama.ProducerMessage{Topic: e.Failure.Topic, Partition: e.Failure.Partition, Headers: hs, Timestamp: e.Failure.Timestamp}
	if e.Failure.Key != nil {
		msg.Key = sarama.ByteEncoder(bytes.Clone(e.Failure.Key))
	}
	if e.Failure.Value != nil {
		msg.Value = sarama.ByteEncoder(bytes.Clone(e.Failure.Value))
	}
	return msg, nil
}

// RedrivePartitioner is a sarama.PartitionerConstructor for redriving:
// a record goes to the partition RedriveMessage set (its original one) when
// the topic has it, else to the partition sarama's hash of its key picks.
func RedrivePartitioner(topic string) sarama.Partitioner {
	return keepPartition{hash: sarama.NewHashPartitioner(topic)}
}

type keepPartition struct{ hash sarama.Partitioner }

func (p keepPartition) Partition(msg *sarama.ProducerMessage, partitions int32) (int32, error) {
	if msg.Partition >= 0 && msg.Partition < partitions {
		return msg.Partition, nil
	}
	return p.hash.Partition(msg, partitions)
}

func (keepPartition) RequiresConsistency() bool { return true }
