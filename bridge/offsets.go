package bridge

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// tracker is one partition's offset watermark. Records are added in offset
// order as they are read and finished in any order (accepted by Temporal,
// skipped, or held by the DLQ); mark is called with the offset after the
// longest finished prefix, so a commit never passes a record that is still
// in flight. Safe for concurrent use.
type tracker struct {
	mu      sync.Mutex
	offsets []int64 // read and not yet part of the finished prefix, ascending
	done    []bool
	mark    func(next int64)
	next    int64         // the offset a commit would resume from; -1 until known
	freed   chan struct{} // signalled when records leave the tracker
}

// newTracker returns a tracker that calls mark; start is the offset the
// partition resumes from, or negative if not yet known.
func newTracker(start int64, mark func(next int64)) *tracker {
	return &tracker{mark: mark, next: max(start, -1), freed: make(chan struct{}, 1)}
}

// add registers a record that was just read. The first record of a
// partition whose start was not known (the group had no offset for it,
// and kafka.initial_offset chose the log's end or start) is marked at
// once: should the claim end before Temporal accepts anything, its next
// owner resumes at this record, where "newest" would skip all that was
// read.
func (t *tracker) add(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.next < 0 {
		t.next = offset
		t.mark(offset)
	}
	t.offsets = append(t.offsets, offset)
	t.done = append(t.done, false)
}

// finish records that these offsets are safe to commit past, and advances
// the mark over the finished prefix.
func (t *tracker) finish(offsets ...int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range offsets {
		if i, ok := slices.BinarySearch(t.offsets, o); ok {
			t.done[i] = true
		}
	}
	n := 0
	for n < len(t.done) && t.done[n] {
		n++
	}
	if n == 0 {
		return
	}
	t.next = t.offsets[n-1] + 1
	t.mark(t.next)
	t.offsets = slices.Delete(t.offsets, 0, n)
	t.done = slices.Delete(t.done, 0, n)
	select {
	case t.freed <- struct{}{}:
	default:
	}
}

// pending is how many records are read but not yet committable.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.offsets)
}

// position is the offset a commit would resume from; false if not yet known.
func (t *tracker) position() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next, t.next >= 0
}

// groupOffsetsEvery is how often the group's committed offsets and the
// partitions' log ends are read.
const groupOffsetsEvery = 5 * time.Second

// partitionOffsets is one partition of a routed topic as the group sees it.
type partitionOffsets struct {
	topic     string
	partition int32
	committed int64 // the group's committed offset; -1 if none
	start     int64 // the log-start offset
	end       int64 // the log-end offset
}

// lag is how many records of the partition the group has not committed past.
func (p partitionOffsets) lag() int64 {
	from := p.committed
	if from < 0 {
		from = p.start
	}
	return max(0, p.end-from)
}

// groupView holds what readGroupOffsets last read, for the metrics.
type groupView struct {
	mu    sync.Mutex
	parts []partitionOffsets
}

func (g *groupView) set(parts []partitionOffsets) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.parts = parts
}

func (g *groupView) get() []partitionOffsets {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.parts)
}

// watchGroupOffsets reads, every few seconds, the committed offset and the
// log ends of every partition of every routed topic. Any member can read
// them, so a partition that no live member consumes (stranded by a member
// that never left) still shows its lag: sagabridge_group_lag.
func (b *Bridge) watchGroupOffsets(ctx context.Context, client sarama.Client) {
	read := func() {
		parts, err := b.readGroupOffsets(client)
		if err != nil {
			b.log.Debug("cannot read the group's committed offsets", "group", b.cfg.Kafka.Group, "err", err)
			return
		}
		b.group.set(parts)
	}
	read()
	every(ctx, groupOffsetsEvery, read)
}

// readGroupOffsets reads the routed topics' partitions, their log start and
// end, and the group's committed offsets (with require_stable when reading
// read_committed, so an offset committed by a transaction still open is
// not taken for the last one).
func (b *Bridge) readGroupOffsets(client sarama.Client) ([]partitionOffsets, error) {
	var parts []partitionOffsets
	byTopic := map[string][]int32{}
	for _, topic := range b.router.Topics() {
		ps, err := client.Partitions(topic)
		if err != nil {
			return nil, fmt.Errorf("partitions of %s: %w", topic, err)
		}
		byTopic[topic] = ps
		for _, p := range ps {
			start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
			if err != nil {
				return nil, fmt.Errorf("log start of %s/%d: %w", topic, p, err)
			}
			end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return nil, fmt.Errorf("log end of %s/%d: %w", topic, p, err)
			}
			parts = append(parts, partitionOffsets{topic: topic, partition: p, committed: -1, start: start, end: end})
		}
	}
	committed, _, err := fetchCommitted(client, b.cfg.Kafka, byTopic) // a partition unread shows no committed offset
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		if at, ok := committed[p.topic][p.partition]; ok {
			parts[i].committed = at
		}
	}
	return parts, nil
}
