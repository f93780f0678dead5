package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/committed"
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
	// settled: a read_committed consumer has nothing to deliver between
	// committed and end, only transaction markers and aborted records;
	// asked: that was asked of the partition's leader for this committed
	// offset and end (see settled).
	settled, asked bool
}

// lag is how many records of the partition the group has not committed
// past: 0 when settled.
func (p partitionOffsets) lag() int64 {
	if p.settled {
		return 0
	}
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
	failing := false
	read := func() {
		parts, err := b.readGroupOffsets(client)
		if parts != nil {
			b.group.set(parts)
		}
		switch {
		case err != nil && !failing:
			b.log.Warn("cannot read some of the group's offsets; their metrics keep their last values until they can be read",
				"group", b.cfg.Kafka.Group, "err", err)
		case err == nil && failing:
			b.log.Info("reading the group's offsets again", "group", b.cfg.Kafka.Group)
		}
		failing = err != nil
	}
	read()
	every(ctx, groupOffsetsEvery, read)
}

// readGroupOffsets reads the routed topics' partitions, their log start and
// end, and the group's committed offsets (with require_stable when reading
// read_committed, so an offset committed by a transaction still open is
// not taken for the last one). A partition whose offsets cannot be read
// keeps the values last read (in b.group), and err says why: one leader
// out, or one transactional commit pending, must neither freeze every
// partition's metrics nor show one's lag as the whole log. parts is nil
// only when nothing could be read.
func (b *Bridge) readGroupOffsets(client sarama.Client) (parts []partitionOffsets, err error) {
	last := map[event.Position]partitionOffsets{}
	for _, p := range b.group.get() {
		last[event.Position{Topic: p.topic, Partition: p.partition}] = p
	}
	keep := func(p partitionOffsets) partitionOffsets {
		if was, ok := last[event.Position{Topic: p.topic, Partition: p.partition}]; ok {
			return was
		}
		return p
	}
	var errs []error
	byTopic := map[string][]int32{}
	unread := map[int]bool{} // indexes into parts whose log offsets could not be read
	for _, topic := range b.router.Topics() {
		ps, err := client.Partitions(topic)
		if err != nil {
			errs = append(errs, fmt.Errorf("partitions of %s: %w", topic, err))
			for _, p := range b.group.get() {
				if p.topic == topic {
					parts = append(parts, p)
				}
			}
			continue
		}
		byTopic[topic] = ps
		for _, p := range ps {
			po := partitionOffsets{topic: topic, partition: p, committed: -1}
			start, serr := client.GetOffset(topic, p, sarama.OffsetOldest)
			end, eerr := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err := errors.Join(serr, eerr); err != nil {
				errs = append(errs, fmt.Errorf("log start and end of %s/%d: %w", topic, p, err))
				unread[len(parts)] = true
				parts = append(parts, keep(po))
				continue
			}
			po.start, po.end = start, end
			parts = append(parts, po)
		}
	}
	if len(byTopic) == 0 {
		return parts, errors.Join(errs...)
	}
	committed, notRead, err := fetchCommitted(client, b.cfg.Kafka, byTopic)
	errs = append(errs, err)
	pending := map[event.Position]bool{}
	for k, e := range notRead {
		if errors.Is(e, sarama.ErrUnstableOffsetCommit) {
			// A transactional commit pending: routine with
			// dlq.transactional (one a second per partition), not a
			// failure to report; the last value stays.
			delete(notRead, k)
			pending[k] = true
		}
	}
	errs = append(errs, joinUnread(notRead))
	for i, p := range parts {
		if unread[i] {
			continue // kept as last read, committed offset too
		}
		if at, ok := committed[p.topic][p.partition]; ok {
			parts[i].committed = at
		} else if pos := (event.Position{Topic: p.topic, Partition: p.partition}); notRead[pos] != nil || pending[pos] || err != nil {
			parts[i].committed = keep(p).committed // not read: as last read
		}
	}
	if b.cfg.Kafka.IsolationLevel == config.ReadCommitted {
		for i := range parts {
			if !unread[i] {
				parts[i].settled, parts[i].asked = settled(client, parts[i], last[event.Position{Topic: parts[i].topic, Partition: parts[i].partition}])
			}
		}
	}
	return parts, errors.Join(errs...)
}

// settled reports whether p, read now, has nothing left to deliver to a
// read_committed consumer between its committed offset and its end, and
// can read to the end (a transaction still open holds back what follows
// it: that is lag). A
// partition written in transactions ends in a commit marker, and may hold
// aborted records, that no consumer delivers: at rest its lag by offsets
// stays at 1 or more for ever, and "commits stalled" would fire on an
// idle, healthy partition. Asked only once the committed offset has not
// moved since the read before (was), and once per committed offset and
// end (one fetch from the partition's leader, committed.Deliverable).
func settled(client sarama.Client, p, was partitionOffsets) (settled, asked bool) {
	switch {
	case p.committed < 0 || p.end <= p.committed:
		return false, false
	case was.committed != p.committed:
		return false, false // moving: the lag is what it says
	case was.asked && was.end == p.end:
		return was.settled, true
	}
	return askSettled(client, p.topic, p.partition, p.committed, p.end)
}

// askSettled asks topic/partition's leader whether [from, end) holds
// nothing a read_committed consumer delivers. asked is false when it was
// not asked (a lag over settledMaxLag: a backlog, not a few markers; the
// lag stands) or the answer could not be read (asked again next time).
func askSettled(client sarama.Client, topic string, partition int32, from, end int64) (settled, asked bool) {
	if end-from > settledMaxLag {
		return false, false
	}
	ok, err := committed.Settled(client, topic, partition, from, end, settledFetchBytes)
	if err != nil {
		return false, false
	}
	return ok, true
}

// settledMaxLag bounds the lag settled asks about: markers and aborted
// records a few transactions leave, not a stalled partition's backlog,
// which would cost a fetch every read; settledFetchBytes bounds each of
// its fetches.
const (
	settledMaxLag     = 10000
	settledFetchBytes = 64 << 10
)
