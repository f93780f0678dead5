package ledger

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Record is one ledger record to produce.
type Record struct {
	Key   string
	Value []byte
	// Time, when set, is the record's timestamp: the moment it was due to
	// be sent, which latencies are counted from (a late send's wait is
	// then counted). Zero: the moment it is sent.
	Time time.Time
}

// Stream makes events records over keys keys, each key chosen from a Zipf
// distribution with exponent s (s > 1; larger is more skewed), and each
// value numbered within its key with the key's total, so a ledger knows
// when it has seen everything. prefix makes keys unique to a run.
func Stream(prefix string, keys, events int, s float64, seed uint64) []Record {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	z := rand.NewZipf(rng, s, 1, uint64(keys-1))
	picks := make([]int, events)
	totals := make([]int, keys)
	for i := range picks {
		k := int(z.Uint64())
		picks[i] = k
		totals[k]++
	}
	seq := make([]int, keys)
	out := make([]Record, events)
	for i, k := range picks {
		seq[k]++
		v, _ := json.Marshal(Value{Seq: seq[k], Total: totals[k]})
		out[i] = Record{Key: fmt.Sprintf("%s%d", prefix, k), Value: v}
	}
	return out
}

// Pad rewrites each record's value with padding so it is size bytes long
// (or as short as it can be, if size is smaller).
func Pad(recs []Record, size int) {
	for i, r := range recs {
		var v Value
		_ = json.Unmarshal(r.Value, &v) // Stream made it
		v.Pad = strings.Repeat("x", max(0, size-len(r.Value)-len(`,"pad":""`)))
		recs[i].Value, _ = json.Marshal(v)
	}
}

// Keys returns the distinct keys of recs with their record counts.
func Keys(recs []Record) map[string]int {
	n := map[string]int{}
	for _, r := range recs {
		n[r.Key]++
	}
	return n
}

// Produce sends recs to topic in batches and returns each key's offsets in
// order. Records of one key share a partition, so those offsets increase.
func Produce(p sarama.SyncProducer, topic string, recs []Record) (map[string][]int64, error) {
	at := map[string][]int64{}
	const chunk = 1000
	for start := 0; start < len(recs); start += chunk {
		batch := recs[start:min(start+chunk, len(recs))]
		msgs := make([]*sarama.ProducerMessage, len(batch))
		for i, r := range batch {
			msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Key), Value: sarama.ByteEncoder(r.Value), Timestamp: r.Time}
		}
		if err := p.SendMessages(msgs); err != nil {
			return at, fmt.Errorf("produce to %s: %w", topic, err)
		}
		for i, m := range msgs {
			at[batch[i].Key] = append(at[batch[i].Key], m.Offset)
		}
	}
	return at, nil
}
