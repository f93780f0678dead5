package dlq

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
)

// The redrive record. The DLQ is append-only, and a header on the redriven
// record cannot say that an entry was redriven (the entry stays as it was),
// so the redrive tool records each redrive in a compacted topic beside the
// DLQ, keyed by the entry, and refuses to redrive an entry twice unless
// forced.

// RedrivesTopic names the compacted topic that records the redrives of
// entries of dlqTopic.
func RedrivesTopic(dlqTopic string) string { return dlqTopic + ".redrives" }

// RedrivesTopicConfig is the configuration RedrivesTopic is created with:
// compacted, so the last record per entry is kept for good.
func RedrivesTopicConfig() map[string]*string {
	compact := "compact"
	return map[string]*string{"cleanup.policy": &compact}
}

// Redrive records that the DLQ entry at Partition/Offset was produced
// again, when and where.
type Redrive struct {
	// TopicID is the DLQ topic's Kafka ID when the broker serves one: a
	// DLQ topic deleted and created again starts its offsets again, and
	// its new entries are not the old ones.
	TopicID   string    `json:"dlq_topic_id,omitempty"`
	Partition int32     `json:"dlq_partition"`
	Offset    int64     `json:"dlq_offset"`
	At        time.Time `json:"at"`
	// To is where the redriven record went: topic/partition@offset.
	To string `json:"to"`
	// Record identifies the original record (RecordID): the same record
	// dead-lettered twice is one redrive.
	Record string `json:"record,omitempty"`
}

// RecordID identifies the original record of a dead letter: where it was
// read (topic/partition@offset) and a digest of its key and value. Two
// dead letters with one RecordID are one record dead-lettered twice (the
// DLQ is at-least-once), and redriving both would apply it twice: the
// workflows' offset dedupe cannot catch that, since a redriven record has
// a new offset. A record redriven and dead-lettered again has the new
// offset, so another ID.
func RecordID(f Failure) string {
	h := sha256.New()
	for _, b := range [][]byte{f.Key, f.Value} {
		_ = binary.Write(h, binary.BigEndian, int64(len(b)))
		if b == nil {
			_ = binary.Write(h, binary.BigEndian, int8(-1)) // null apart from empty
		}
		h.Write(b)
	}
	return fmt.Sprintf("%s/%d@%d#%x", f.Topic, f.Partition, f.Offset, h.Sum(nil)[:12])
}

// RedriveKey keys an entry's redrive record: "partition@offset" of the
// entry. The DLQ topic's ID is in the record (Redrive.TopicID), not in the
// key, so that every version of the tool finds the record of an entry
// (one that looked up another key would redrive the entry again), and a
// DLQ topic created again overwrites the old topic's records as its own
// entries are redriven.
func RedriveKey(partition int32, offset int64) string {
	return strconv.FormatInt(int64(partition), 10) + "@" + strconv.FormatInt(offset, 10)
}

// Redrives are the redrive records of a DLQ topic (ReadRedrives), by
// entry and by original record. The zero value holds none.
type Redrives struct {
	byKey    map[string]Redrive // by RedriveKey
	byRecord map[string]Redrive // by Redrive.Record, when set
}

// add keeps r, read under key; a later record of a key replaces the
// earlier one, as compaction does.
func (rs *Redrives) add(key string, r Redrive) {
	if rs.byKey == nil {
		rs.byKey, rs.byRecord = map[string]Redrive{}, map[string]Redrive{}
	}
	rs.byKey[key] = r
	if r.Record != "" {
		rs.byRecord[r.Record] = r
	}
}

// remove forgets the redrive read under key, as compaction does for a
// tombstone (a null value) of that key.
func (rs *Redrives) remove(key string) {
	r, ok := rs.byKey[key]
	if !ok {
		return
	}
	delete(rs.byKey, key)
	if r.Record == "" {
		return
	}
	// Another entry's redrive of the same record still stands: compaction
	// keeps it, so the record counts as redriven still (the latest one).
	delete(rs.byRecord, r.Record)
	for _, other := range rs.byKey {
		if kept, ok := rs.byRecord[r.Record]; other.Record == r.Record && (!ok || other.At.After(kept.At)) {
			rs.byRecord[r.Record] = other
		}
	}
}

// Len is how many entries have a redrive recorded.
func (rs Redrives) Len() int { return len(rs.byKey) }

// OfRecord is the redrive recorded for any dead letter of the original
// record id (RecordID), if any.
func (rs Redrives) OfRecord(id string) (Redrive, bool) {
	r, ok := rs.byRecord[id]
	return r, ok
}

// Of is the redrive recorded for the entry at partition/offset of the DLQ
// topic whose ID is topicID, if any. A record of another topic ID is the
// record of a topic of that name deleted since (its offsets started
// again), not this entry's; a record without an ID (written before IDs
// were kept, or on a broker that serves none) cannot tell and counts.
func (rs Redrives) Of(topicID string, partition int32, offset int64) (Redrive, bool) {
	r, ok := rs.byKey[RedriveKey(partition, offset)]
	if ok && r.TopicID != "" && topicID != "" && r.TopicID != topicID {
		return Redrive{}, false
	}
	return r, ok
}

// Message is the record of r on the redrives topic of dlqTopic.
func (r Redrive) Message(dlqTopic string) (*sarama.ProducerMessage, error) {
	v, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode the redrive of %s: %w", RedriveKey(r.Partition, r.Offset), err)
	}
	return &sarama.ProducerMessage{
		Topic: RedrivesTopic(dlqTopic), Key: sarama.StringEncoder(RedriveKey(r.Partition, r.Offset)), Value: sarama.ByteEncoder(v),
	}, nil
}

// BadRedriveRecord is a record of a redrives topic that is not a redrive
// record; ReadRedrives reads past it.
type BadRedriveRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

func (b *BadRedriveRecord) Error() string {
	return fmt.Sprintf("%s/%d@%d is not a redrive record: %v", b.Topic, b.Partition, b.Offset, b.Err)
}

// Unwrap returns the parse error.
func (b *BadRedriveRecord) Unwrap() error { return b.Err }

// ReadRedrives returns the redrives recorded for the entries of dlqTopic,
// none when the redrives topic does not exist yet. A tombstone (a null
// value) for an entry's key forgets its redrive, as compaction will.
// Records that are not redrive records are read past: the others are
// returned with every such record's *BadRedriveRecord, joined.
func ReadRedrives(ctx context.Context, client sarama.Client, dlqTopic string) (Redrives, error) {
	topic := RedrivesTopic(dlqTopic)
	if err := client.RefreshMetadata(topic); errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return Redrives{}, nil
	}
	parts, err := client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return Redrives{}, nil
	}
	if err != nil {
		return Redrives{}, fmt.Errorf("list the partitions of %s: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return Redrives{}, fmt.Errorf("start a consumer of %s: %w", topic, err)
	}
	defer func() { _ = consumer.Close() }()
	var out Redrives
	var bad []error
	for _, p := range parts {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return Redrives{}, fmt.Errorf("oldest offset of %s/%d: %w", topic, p, err)
		}
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return Redrives{}, fmt.Errorf("newest offset of %s/%d: %w", topic, p, err)
		}
		if oldest >= end {
			continue
		}
		err = readPartition(ctx, client, consumer, topic, p, oldest, end, func(msg *sarama.ConsumerMessage) bool {
			if msg.Value == nil { // a tombstone: the redrive of that entry is forgotten
				out.remove(string(msg.Key))
				return true
			}
			var r Redrive
			if err := json.Unmarshal(msg.Value, &r); err != nil {
				bad = append(bad, &BadRedriveRecord{Topic: topic, Partition: p, Offset: msg.Offset, Err: err})
				return true
			}
			out.add(string(msg.Key), r)
			return true
		})
		if err != nil {
			return Redrives{}, err
		}
	}
	return out, errors.Join(bad...)
}
