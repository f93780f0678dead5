package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/dlq"
)

// flow is one claimed partition: its records in flight and its watermark.
type flow struct {
	topic     string
	partition int32
	// ctx ends when the partition is revoked or the session ends: stop
	// reading, stop retrying, abandon queued units.
	ctx    context.Context
	cancel context.CancelFunc
	// callCtx outlives ctx by Dispatch.DrainTimeout, so calls under way can finish.
	callCtx    context.Context
	cancelCall context.CancelFunc
	tracker    *tracker
	units      sync.WaitGroup // units submitted and not yet finished or abandoned
	hwm        func() int64   // the partition's high-water mark as of the last fetch
	logEnd     atomic.Int64   // the log-end offset as last read by watchLogEnds
	pressure   *pressure
	// held counts the records (and their bytes) this partition holds in the
	// bridge's in-flight budget; what is left when it ends is released.
	heldRecords, heldBytes atomic.Int64
	// committer commits the offset and the DLQ records in transactions
	// (dlq.transactional); nil when sarama's offset manager commits.
	committer *txnCommitter
}

// newFlow sets up a claimed partition; with dlq.transactional it starts
// the partition's transactional committer.
func (b *Bridge) newFlow(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) (*flow, error) {
	topic, partition := claim.Topic(), claim.Partition()
	ctx, cancel := context.WithCancel(s.Context())
	mark := func(next int64) { s.MarkOffset(topic, partition, next, "") }
	var committer *txnCommitter
	if b.cfg.DLQ.Transactional {
		var err error
		if committer, err = b.newTxnCommitter(s, topic, partition, claim.InitialOffset(), cancel); err != nil {
			cancel()
			return nil, err
		}
		mark = committer.advance
	}
	callCtx, cancelCall := drainContext(ctx, b.cfg.Dispatch.DrainTimeout)
	return &flow{
		topic: topic, partition: partition, ctx: ctx, cancel: cancel, callCtx: callCtx, cancelCall: cancelCall,
		tracker:   newTracker(claim.InitialOffset(), mark),
		hwm:       claim.HighWaterMarkOffset,
		pressure:  b.pressure,
		committer: committer,
	}, nil
}

// hold counts a record just read against the in-flight budget.
func (f *flow) hold(bytes int) {
	f.heldRecords.Add(1)
	f.heldBytes.Add(int64(bytes))
	f.pressure.hold(1, bytes)
}

// release returns records to the in-flight budget.
func (f *flow) release(records, bytes int) {
	f.heldRecords.Add(-int64(records))
	f.heldBytes.Add(-int64(bytes))
	f.pressure.release(records, bytes)
}

// finish marks u's records safe to commit past.
func (f *flow) finish(u *unit) {
	offsets := make([]int64, len(u.records))
	for i, r := range u.records {
		offsets[i] = r.msg.Offset
	}
	f.tracker.finish(offsets...)
	f.release(len(u.records), u.bytes) // u.bytes sums heldSize of its records
	f.units.Done()
}

// lag is the partition's high-water mark minus the offset a commit would
// resume from; false while either is unknown.
func (f *flow) lag() (int64, bool) {
	pos, ok := f.tracker.position()
	hwm := max(f.hwm(), f.logEnd.Load())
	if !ok || hwm <= 0 {
		return 0, false
	}
	return max(0, hwm-pos), true
}

// heldSize is what a record counts against the in-flight budget.
func heldSize(m *sarama.ConsumerMessage) int {
	n := len(m.Key) + len(m.Value) + envelopeOverhead
	for _, h := range m.Headers {
		if h != nil {
			n += len(h.Key) + len(h.Value)
		}
	}
	return n
}

// consume reads the partition, batches its records and dispatches them,
// until the claim is revoked or the session ends. It then abandons what
// has not started, waits for calls under way (at most DrainTimeout) and
// returns; what finished is marked, the rest will be redelivered.
func (b *Bridge) consume(f *flow, msgs <-chan *sarama.ConsumerMessage) {
	b.pressure.register(f)
	defer func() {
		f.cancel()
		b.dispatcher.cancelFlow(f)
		f.units.Wait()
		f.cancelCall()
		if f.committer != nil { // the watermark is final now
			if err := f.committer.close(); err != nil {
				b.log.Warn("final transactional commit failed; the partition's next owner redelivers from the last commit",
					"topic", f.topic, "partition", f.partition, "err", err)
			}
		}
		b.pressure.unregister(f)
		f.release(int(f.heldRecords.Load()), int(f.heldBytes.Load())) // unflushed and abandoned records
	}()
	var (
		batch   []record
		bytes   int
		linger  = time.NewTimer(time.Hour)
		lingerC <-chan time.Time
	)
	linger.Stop()
	defer linger.Stop()
	flush := func() {
		if len(batch) > 0 {
			b.dispatch(f, batch)
		}
		batch, bytes, lingerC = nil, 0, nil
		linger.Stop()
	}
	for {
		if f.tracker.pending() >= b.cfg.Batch.MaxInFlight {
			flush() // the batch counts as in flight; send it before waiting
			if !f.tracker.waitBelow(f.ctx, b.cfg.Batch.MaxInFlight) {
				return
			}
		}
		if reason, _ := b.pressure.reason(f.topic); reason != "" {
			flush() // held records must keep moving, or the budget never frees
			if !b.pressure.await(f.ctx, f.topic) {
				return
			}
		}
		select {
		case <-f.ctx.Done():
			return
		case <-lingerC:
			flush()
		case m, ok := <-msgs:
			if !ok || f.ctx.Err() != nil {
				return // revoked: the unflushed batch is never marked and will be redelivered
			}
			f.tracker.add(m.Offset)
			f.hold(heldSize(m))
			r, err := b.route(m)
			if err != nil {
				if b.poison(f, m, err) != nil {
					return
				}
				continue
			}
			batch = append(batch, r)
			bytes += len(m.Key) + len(m.Value)
			if len(batch) == 1 {
				linger.Reset(b.cfg.Batch.Linger)
				lingerC = linger.C
			}
			if len(batch) >= b.cfg.Batch.MaxRecords || bytes >= b.cfg.Batch.MaxBytes {
				flush()
			}
		}
	}
}

// route decodes and routes m; a record too large for one Temporal payload
// is poison too.
func (b *Bridge) route(m *sarama.ConsumerMessage) (record, error) {
	target, env, err := b.router.Route(m)
	if err != nil {
		return record{}, err
	}
	size := heldSize(m)
	if size > b.cfg.Dispatch.MaxCallBytes {
		return record{}, &PoisonError{Class: dlq.ClassRejected, Err: fmt.Errorf(
			"record %s/%d@%d is about %d bytes, over dispatch.max_call_bytes (%d)", m.Topic, m.Partition, m.Offset, size, b.cfg.Dispatch.MaxCallBytes)}
	}
	return record{msg: m, env: env, target: target, size: size}, nil
}

// poison dead-letters m and finishes it; an error means the partition's
// context ended first.
func (b *Bridge) poison(f *flow, m *sarama.ConsumerMessage, err error) error {
	var p *PoisonError
	if !errors.As(err, &p) {
		p = &PoisonError{Class: dlq.ClassDecode, Err: err}
	}
	if err := b.deadLetter(f, dlq.FromMessage(m, p.Class, err, 1, b.deps.Now())); err != nil {
		return err
	}
	f.tracker.finish(m.Offset)
	f.release(1, heldSize(m))
	return nil
}

// dispatch groups a batch by workflow ID, keeping offset order within each
// group, splits groups over Dispatch.MaxCallBytes, and submits them.
func (b *Bridge) dispatch(f *flow, batch []record) {
	groups := map[string]*unit{}
	var units []*unit
	for _, r := range batch {
		u := groups[r.target.WorkflowID]
		if u == nil || u.bytes+r.size > b.cfg.Dispatch.MaxCallBytes {
			u = &unit{flow: f, target: r.target}
			groups[r.target.WorkflowID] = u
			units = append(units, u)
		}
		u.records = append(u.records, r)
		u.bytes += r.size
	}
	for _, u := range units {
		if u.bytes > warnPayloadBytes {
			b.log.Warn("large signal payload", "workflow_id", u.target.WorkflowID, "bytes", u.bytes, "records", len(u.records))
		}
		f.units.Add(1)
		b.dispatcher.submit(u)
	}
}
