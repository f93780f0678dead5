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

// checkClaimedTopicIDs reads the IDs of the topics flows read and ends
// the claims that read one under another ID.
func (b *Bridge) checkClaimedTopicIDs(flows []*flow) {
	var topics []string
	for _, f := range flows {
		if f.topicID != "" && !slices.Contains(topics, f.topic) {
			topics = append(topics, f.topic)
		}
	}
	if len(topics) == 0 {
		return
	}
	// A topic it cannot read now (deleted, and not yet created again) is
	// left out and read again in 2 s; its claims go on (ending them would
	// end the session, and a new one cannot start while a routed topic is
	// missing: every route would stop).
	now, err := topicid.Lookup(b.client, topics)
	if err != nil {
		b.log.Debug("cannot read the claimed topics' IDs; reading them again in 2 s", "topics", topics, "err", err)
	}
	for _, f := range flows {
		if cur, ok := now[f.topic]; ok && f.topicID != "" && cur != f.topicID {
			b.topicGone(f, "its topic ID changed")
		}
	}
}

// topicGone ends f's claim: its topic was deleted and created again under
// it. A claim reads on at its offset once the partition is back, which in
// the new topic skips the records below it and sends the others under the
// old topic's ID; nothing it finishes from now on is marked, its offset is
// set back to the new log's start (moveBackToStart), and ending the claim
// ends the session (sarama), so that the next reads the topic's new ID.
func (b *Bridge) topicGone(f *flow, why string) {
	if f.gone.Load() {
		return
	}
	b.log.Warn("the topic was deleted under a claim of it: the claim ends without marking more, and the group joins again",
		"topic", f.topic, "partition", f.partition, "topic_id", f.topicID, "why", why)
	b.moveBackToStart(f)
	f.cancel()
}

// moveBackToStart stops f's marks and sets its offset back to its
// partition's log start (the new topic's), under the tracker's lock, so
// that no mark made meanwhile moves it forward again: what f marked of the
// old topic, and not yet committed, would be committed to the new topic,
// skipping its records below it. The new topic's records f already sent
// under the old topic's ID are then sent again under the new one.
func (b *Bridge) moveBackToStart(f *flow) {
	f.tracker.mu.Lock()
	defer f.tracker.mu.Unlock()
	f.gone.Store(true)
	if f.moveBack == nil || b.client == nil {
		return
	}
	start, err := b.client.GetOffset(f.topic, f.partition, sarama.OffsetOldest)
	if err != nil {
		b.log.Warn("cannot read the log start of a topic created again; its offset may stay where the claim marked it", "topic", f.topic, "partition", f.partition, "err", err)
		return
	}
	f.moveBack(start)
}
