package bridge

import (
	"context"
	"fmt"

	"github.com/sagabridge/sagabridge/dlq"
)

// Dead letters: each partition's records for the DLQ wait in the
// partition's dead-letter queue and are written one at a time on the
// dispatcher's workers; a record is finished once the DLQ holds it.

// deadLetterQueue names the dispatcher queue of f's dead letters: one per
// partition, so they are written one at a time, in the order they were
// queued (a poison record as it is read, a record Temporal refused once
// its call is answered; offsets are committed in order either way). No
// workflow ID starts with a NUL byte (route.go refuses control characters).
func deadLetterQueue(f *flow) string {
	return fmt.Sprintf("\x00dlq %s/%d", f.topic, f.partition)
}

// queueDeadLetter queues fl, the failure of the record at offset of
// partition f, in f's dead-letter queue: the DLQ writes of a partition
// happen one at a time, in the order queued, on the dispatcher's workers
// (a write the DLQ refuses holds the queue, not the worker), and the
// record is finished once the DLQ holds it. bytes is what the record holds
// of the in-flight budget, released then.
func (b *Bridge) queueDeadLetter(f *flow, offset int64, bytes int, fl dlq.Failure) {
	u := &unit{flow: f, queue: deadLetterQueue(f), route: -1, records: []record{{offset: offset}}, bytes: bytes, dead: &fl}
	f.units.Add(1)
	b.dispatcher.submit(u)
}

// writeDeadLetter writes *dead to the DLQ for partition fl, once; a dead
// letter reduced to fit is left reduced in *dead for the next try. With
// dlq.transactional it queues it for the transaction that commits the
// offset past it.
//
// A record too large for the DLQ (the producer's dlq.max_message_bytes or
// the topic's max.message.bytes) is written in reduced form (dlq.Reduced:
// the value dropped, a header saying so), so the partition moves on. While
// writes keep failing otherwise, the partition is paused
// (dlq_unavailable), /readyz says so and the failures are counted.
//
// bytes is what the record holds of the in-flight budget: with
// dlq.transactional the committer keeps holding it until a transaction
// commits the dead letter (the caller must not release it).
func (b *Bridge) writeDeadLetter(fl *flow, dead *dlq.Failure, bytes int) error {
	if fl.committer != nil {
		fl.committer.enqueue(*dead, bytes)
		return nil
	}
	f := *dead
	for {
		// callCtx: a write in flight when the partition ends may finish
		// within dispatch.drain_timeout, as a call to Temporal may. And
		// like a call it is given up after dispatch.call_timeout: sarama
		// retries a leader out of reach for minutes, and a write that
		// hung held its worker with nothing paused or reported (given up
		// on, it may still land: the DLQ is at-least-once).
		ctx, cancel := context.WithTimeout(fl.callCtx, b.cfg.Dispatch.CallTimeout)
		err := b.deps.DeadLetters.Write(ctx, f)
		if err != nil && ctx.Err() == context.DeadlineExceeded && fl.callCtx.Err() == nil {
			err = fmt.Errorf("no answer within dispatch.call_timeout (%s): %w", b.cfg.Dispatch.CallTimeout, err)
		}
		cancel()
		if err == nil {
			b.pressure.setDLQFailing(fl, nil)
			b.committedDeadLetters([]dlq.Failure{f})
			return nil
		}
		if dlq.TooLarge(err) && !f.IsReduced() {
			b.reducedDeadLetters.Add(1)
			b.log.Warn("dead letter too large for the DLQ; writing it in reduced form (value dropped, headers trimmed)",
				"topic", f.Topic, "partition", f.Partition, "offset", f.Offset, "value_bytes", len(f.Value), "headers", len(f.Headers), "err", err)
			f = f.Reduced()
			*dead = f // a retry writes the reduced form, counted once
			continue
		}
		if fl.ctx.Err() != nil { // the partition ended: not the DLQ's fault
			return fmt.Errorf("dead-lettering %s/%d@%d: %w", f.Topic, f.Partition, f.Offset, errAbandoned)
		}
		b.dlqFailures.Add(1)
		b.pressure.setDLQFailing(fl, err)
		b.log.Error("DLQ write failed; retrying with the partition paused", "topic", f.Topic, "partition", f.Partition, "offset", f.Offset, "err", err)
		return fmt.Errorf("dead-lettering %s/%d@%d: %w", f.Topic, f.Partition, f.Offset, err)
	}
}

// committedDeadLetters counts and logs records now durably in the DLQ.
func (b *Bridge) committedDeadLetters(dead []dlq.Failure) {
	b.deadLettered.Add(uint64(len(dead)))
	for _, f := range dead {
		b.log.Warn("record dead-lettered", "topic", f.Topic, "partition", f.Partition, "offset", f.Offset,
			"class", f.Class, "err", f.Err, "workflow_id", f.WorkflowID)
	}
}
