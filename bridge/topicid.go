package bridge

import (
	"maps"
	"slices"
	"sync"

	"github.com/IBM/sarama"
	"github.com/sagabridge/sagabridge/internal/topicid"
)

// Topic IDs. A record's position is its topic, partition and offset; a
// topic deleted and created again under the same name (or a consumer
// pointed at a mirror with other offsets) reuses offsets, and a workflow
// that remembers offset 41 as applied would skip the new record at 41. So
// the bridge reads each claimed topic's Kafka ID (KIP-516, Metadata v10+) in
// every group generation that claims one of its partitions (a cooperative
// rebalance adds claims to a session without a new Setup) and sends it
// with each record (event.Envelope.TopicID);
// watermarks are kept per topic ID. Brokers that serve no IDs (older than
// Kafka 2.8, or kafka.version set below it) leave it empty, and watermarks
// are kept per name as before.

// topicIDs remembers the IDs of the claimed topics, each as read in the
// group generation that last claimed one of its partitions. Safe for
// concurrent use.
type topicIDs struct {
	// lookup reads the IDs of topics; nil without a Kafka client (tests).
	lookup func(topics []string) (map[string]string, error)

	reading sync.Mutex // one lookup at a time: the claims of a new generation share it
	mu      sync.Mutex
	ids     map[string]string
	gens    map[string]int32 // the generation each topic's ID was read in
}

// refresh reads the IDs of the topics of claims, in generation; on failure
// the IDs read before stay, and err says why. changed lists the topics
// whose ID differs from the one read before (deleted and created again).
func (t *topicIDs) refresh(claims map[string][]int32, generation int32) (changed []string, err error) {
	if t.lookup == nil {
		return nil, nil
	}
	t.reading.Lock()
	defer t.reading.Unlock()
	var topics []string
	t.mu.Lock()
	for _, topic := range slices.Sorted(maps.Keys(claims)) {
		if gen, ok := t.gens[topic]; !ok || gen != generation {
			topics = append(topics, topic)
		}
	}
	t.mu.Unlock()
	if len(topics) == 0 {
		return nil, nil // read in this generation already
	}
	ids, err := t.lookup(topics)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ids == nil {
		t.ids, t.gens = map[string]string{}, map[string]int32{}
	}
	for topic, id := range ids {
		if old, ok := t.ids[topic]; ok && old != id {
			changed = append(changed, topic)
		}
		t.ids[topic], t.gens[topic] = id, generation
	}
	slices.Sort(changed)
	return changed, nil
}

// of is topic's ID, empty when unknown.
func (t *topicIDs) of(topic string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ids[topic]
}

// metadataTopicIDs reads topic IDs with client (topicid.Lookup).
func metadataTopicIDs(client sarama.Client) func(topics []string) (map[string]string, error) {
	return func(topics []string) (map[string]string, error) { return topicid.Lookup(client, topics) }
}
