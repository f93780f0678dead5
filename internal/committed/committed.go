// Package committed tells what a read_committed consumer of a partition
// still has to deliver, from the partition's leader, without consuming: a
// partition written in transactions ends in markers, which the consumer
// never delivers, so the high-water mark does not say where a read ends.
package committed

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/IBM/sarama"
)

// Deliverable reports whether a read_committed consumer of topic/partition
// still has a record to deliver in [from, end): a data record that is not
// part of an aborted transaction. A reader asks it when the partition has
// gone silent, instead of taking the silence for the end: the silence may
// equally be the client backing off after an error it does not report (a
// leader moving: NOT_LEADER, FENCED_LEADER_EPOCH) or a quota's throttle.
// It fetches from the partition's leader directly, read_committed, walking
// the batches from from up to end.
func Deliverable(client sarama.Client, topic string, partition int32, from, end int64) (bool, error) {
	found, _, err := walk(client, topic, partition, from, end, 1<<20)
	return found, err
}

// Settled reports whether a read_committed consumer of topic/partition
// has nothing to deliver in [from, end) and can read to end: only
// transaction markers and aborted records lie there. A transaction still
// open holds a read_committed consumer back (its records, and every record
// after them, are not delivered yet), so a partition that stops at one
// below end is not settled, however little it would deliver now. Each
// fetch asks for at most maxBytes (the first batch comes whole even if
// larger).
func Settled(client sarama.Client, topic string, partition int32, from, end int64, maxBytes int32) (bool, error) {
	found, reached, err := walk(client, topic, partition, from, end, maxBytes)
	return err == nil && !found && reached >= end, err
}

// walk fetches [from, end) of topic/partition from its leader,
// read_committed, maxBytes at a time: found is true at the first data
// record not aborted; reached is how far it read (below end when it
// stopped at the last stable offset, a transaction still open). The
// metadata is refreshed only when the leader is unknown or moved.
func walk(client sarama.Client, topic string, partition int32, from, end int64, maxBytes int32) (found bool, reached int64, err error) {
	refreshed := false
	for from < end {
		leader, err := client.Leader(topic, partition)
		if err != nil && !refreshed {
			refreshed = true
			if err := client.RefreshMetadata(topic); err != nil {
				return false, from, fmt.Errorf("refresh the metadata of %s: %w", topic, err)
			}
			leader, err = client.Leader(topic, partition)
		}
		if err != nil {
			return false, from, fmt.Errorf("leader of %s/%d: %w", topic, partition, err)
		}
		req := &sarama.FetchRequest{Version: 4, MaxWaitTime: 0, MinBytes: 1, MaxBytes: maxBytes, Isolation: sarama.ReadCommitted}
		req.AddBlock(topic, partition, from, maxBytes, -1)
		resp, err := leader.Fetch(req)
		if err != nil {
			return false, from, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, from, err)
		}
		block := resp.GetBlock(topic, partition)
		if block == nil {
			return false, from, fmt.Errorf("fetch %s/%d@%d: no answer for the partition", topic, partition, from)
		}
		if block.Err != sarama.ErrNoError {
			if !refreshed && (block.Err == sarama.ErrNotLeaderForPartition || block.Err == sarama.ErrLeaderNotAvailable) {
				refreshed = true
				if err := client.RefreshMetadata(topic); err != nil {
					return false, from, fmt.Errorf("refresh the metadata of %s: %w", topic, err)
				}
				continue
			}
			return false, from, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, from, block.Err)
		}
		next, found := scanBatches(block, from, end)
		if found {
			return true, from, nil
		}
		if next <= from { // nothing below the LSO past from
			return false, from, nil
		}
		from = next
	}
	return false, from, nil
}

// scanBatches walks a read_committed fetch response's batches: found is
// true if one holds a data record in [from, end) that is not part of an
// aborted transaction; next is the offset after the last batch.
func scanBatches(block *sarama.FetchResponseBlock, from, end int64) (next int64, found bool) {
	aborted := slices.Clone(block.AbortedTransactions)
	slices.SortFunc(aborted, func(a, b *sarama.AbortedTransaction) int { return int(a.FirstOffset - b.FirstOffset) })
	open := map[int64]bool{} // producers whose records are aborted from here on
	next = from
	for _, recs := range block.RecordsSet {
		b := recs.RecordBatch
		if b == nil {
			if recs.MsgSet != nil && len(recs.MsgSet.Messages) > 0 { // a legacy message set: no transactions
				for _, m := range recs.MsgSet.Messages {
					if m.Offset >= from && m.Offset < end {
						return next, true
					}
					next = max(next, m.Offset+1)
				}
			}
			continue
		}
		for len(aborted) > 0 && aborted[0].FirstOffset <= b.FirstOffset {
			open[aborted[0].ProducerID] = true
			aborted = aborted[1:]
		}
		last := b.FirstOffset + int64(b.LastOffsetDelta)
		switch {
		case b.Control:
			if isAbortMarker(b) {
				delete(open, b.ProducerID)
			}
		case b.IsTransactional && open[b.ProducerID]:
		default:
			for _, r := range b.Records {
				if o := b.FirstOffset + r.OffsetDelta; o >= from && o < end {
					return next, true
				}
			}
		}
		next = max(next, last+1)
	}
	return next, false
}

// isAbortMarker reports whether control batch b is an abort marker: its
// record's key is a version and a type, 0 for abort.
func isAbortMarker(b *sarama.RecordBatch) bool {
	if len(b.Records) == 0 || len(b.Records[0].Key) < 4 {
		return false
	}
	return binary.BigEndian.Uint16(b.Records[0].Key[2:4]) == 0
}
