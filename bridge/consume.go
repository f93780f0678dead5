package bridge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// claimHandler delivers each claimed partition in offset order.
type claimHandler struct{ b *Bridge }

// Setup logs the new assignment.
func (h claimHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.b.log.Info("partitions assigned", "member_id", s.MemberID(), "generation", s.GenerationID(), "claims", s.Claims())
	h.b.refreshTopicIDs(s.Claims(), s.GenerationID())
	h.b.marked.keepOnly(s.Claims())
	h.b.sessionErr.Store(nil)
	h.b.joined.Store(true)
	return nil
}

// refreshTopicIDs reads the IDs of the topics of claims in generation,
// unless read in it already, and logs a topic whose ID changed.
func (b *Bridge) refreshTopicIDs(claims map[string][]int32, generation int32) {
	changed, err := b.topicIDs.refresh(claims, generation)
	if err != nil {
		b.log.Warn("cannot read topic IDs at the join; each claimed partition reads its topic's ID before it is consumed",
			"generation", generation, "err", err)
	}
	b.logChangedTopicIDs(changed)
}

// logChangedTopicIDs logs each topic whose ID changed.
func (b *Bridge) logChangedTopicIDs(changed []string) {
	for _, topic := range changed {
		b.log.Warn("topic was deleted and created again (new topic ID): its offsets start again, and workflows treat its records as new",
			"topic", topic, "topic_id", b.topicIDs.of(topic))
	}
}

// Cleanup commits what was marked before the session ends.
func (h claimHandler) Cleanup(s sarama.ConsumerGroupSession) error {
	s.Commit()
	return nil
}

// ConsumeClaim batches the partition's records and dispatches them; see
// Bridge.consume. It returns when the claim is revoked or the session ends,
// after calls under way have finished (within Dispatch.DrainTimeout).
func (h claimHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	log := h.b.log.With("topic", claim.Topic(), "partition", claim.Partition())
	log.Info("partition claimed", "generation", s.GenerationID(), "from_offset", claim.InitialOffset())
	w := &claimWait{msgs: claim.Messages()}
	f, err := h.b.newFlow(s, claim, w)
	if errors.Is(err, errRevoked) {
		log.Info("partition revoked before it could be consumed", "generation", s.GenerationID())
		return nil
	}
	if err != nil && s.Context().Err() != nil {
		log.Info("partition released before it could be consumed", "generation", s.GenerationID(), "err", err)
		return nil
	}
	if err != nil {
		log.Error("cannot consume the partition", "err", err)
		return err
	}
	h.b.consume(f, withEarly(f.ctx, w.early, claim.Messages()))
	if s.Context().Err() == nil { // revoked while the session goes on
		h.b.marked.forget(f.topic, f.partition)
	}
	log.Info("partition released", "generation", s.GenerationID(), "abandoned_records", f.tracker.pending())
	return nil
}

// flow is one claimed partition: its records in flight and its watermark.
type flow struct {
	topic     string
	partition int32
	topicID   string // the topic's Kafka ID, empty when unknown (topicid.go)
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
	settled    atomic.Pointer[settledRange]
	pressure   *pressure
	// held counts the records (and their bytes) this partition holds in the
	// bridge's in-flight budget; what is left when it ends is released.
	heldRecords, heldBytes atomic.Int64
	// committer commits the offset and the DLQ records in transactions
	// (dlq.transactional); nil when sarama's offset manager commits.
	committer *txnCommitter
	// gone is set when the partition's topic was deleted (and perhaps
	// created again) under the claim (topicGone): nothing it reads or
	// finishes from then on is marked, and the claim ends.
	gone *atomic.Bool
	// moveBack sets the partition's offset back to o, however far it was
	// marked (a topic created again: topicGone); nil with
	// dlq.transactional, whose committer commits its own.
	moveBack func(o int64)
}

// newFlow sets up a claimed partition; with dlq.transactional it creates
// the partition's transactional committer (consume starts it).
func (b *Bridge) newFlow(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, w *claimWait) (*flow, error) {
	topic, partition := claim.Topic(), claim.Partition()
	// A cooperative rebalance claims partitions without a new Setup: the
	// topic's ID is read again if this generation has not read it yet.
	if err := b.claimTopicID(s, topic, partition, w); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(s.Context())
	// sarama started the claim at kafka.initial_offset (InitialOffset is
	// negative): the group had no offset for it, or one outside the log
	// that sarama reset (a truncated log, a topic created again). Its
	// MarkOffset only moves an offset forward and ResetOffset only back,
	// so the first mark does both: with MarkOffset alone every mark below
	// a stale offset past the log end was dropped, and the next start
	// resumed there, skipping the records before it; with ResetOffset
	// alone a group with no offset (-1) committed nothing. Marks come from
	// the tracker under its lock, one at a time.
	reset := claim.InitialOffset() < 0
	mark := func(next int64) {
		if reset {
			reset = false
			s.ResetOffset(topic, partition, next, "")
		}
		s.MarkOffset(topic, partition, next, "")
	}
	moveBack := func(o int64) { s.ResetOffset(topic, partition, o, "") }
	var committer *txnCommitter
	if b.cfg.DLQ.Transactional {
		moveBack = nil
		var err error
		if committer, err = b.startTxnCommitter(s, topic, partition, claim.InitialOffset(), cancel); err != nil {
			cancel()
			return nil, err
		}
		mark = committer.advance
	}
	commit := mark
	gone := new(atomic.Bool)
	mark = func(next int64) {
		if gone.Load() {
			return
		}
		b.marked.mark(topic, partition, next)
		commit(next)
	}
	start := claim.InitialOffset()
	if start == sarama.OffsetOldest && b.client != nil {
		start = b.replaceStaleOffset(topic, partition, mark)
	}
	callCtx, cancelCall := drainContext(ctx, b.cfg.Dispatch.DrainTimeout)
	return &flow{
		topic: topic, partition: partition, topicID: b.topicIDs.of(topic), ctx: ctx, cancel: cancel, callCtx: callCtx, cancelCall: cancelCall,
		tracker:   newTracker(start, mark),
		hwm:       claim.HighWaterMarkOffset,
		pressure:  b.pressure,
		committer: committer,
		gone:      gone,
		moveBack:  moveBack,
	}, nil
}

// replaceStaleOffset is for a claim sarama started at the log start: when
// the group has an offset for the partition (so sarama reset it, being
// outside the log), it marks the log start at once and returns it, so a
// stale offset past the end of an emptied log is replaced even when the
// claim reads nothing; the next start would resume at the stale offset and
// skip what is produced below it meanwhile. Marking the log start skips
// nothing: every record the claim reads is at or past it. A group with no
// offset keeps committing at its first record. It returns
// sarama.OffsetOldest when it marks nothing.
func (b *Bridge) replaceStaleOffset(topic string, partition int32, mark func(int64)) int64 {
	committed, _, err := fetchCommitted(b.client, b.cfg.Kafka, map[string][]int32{topic: {partition}})
	if _, stale := committed[topic][partition]; err != nil || !stale {
		return sarama.OffsetOldest
	}
	logStart, err := b.client.GetOffset(topic, partition, sarama.OffsetOldest)
	if err != nil {
		b.log.Warn("cannot read the log start of a partition whose offset was outside the log; its offset is moved back at its first record", "topic", topic, "partition", partition, "err", err)
		return sarama.OffsetOldest
	}
	mark(logStart)
	return logStart
}

// hold counts a record just read against the in-flight budget.
func (f *flow) hold(bytes int) {
	f.heldRecords.Add(1)
	f.heldBytes.Add(int64(bytes))
	f.pressure.hold(f.topic, 1, bytes)
}

// release returns records to the in-flight budget.
func (f *flow) release(records, bytes int) {
	f.heldRecords.Add(-int64(records))
	f.heldBytes.Add(-int64(bytes))
	f.pressure.release(f.topic, records, bytes)
}

// finish marks u's records safe to commit past.
func (f *flow) finish(u *unit) { f.finishExcept(u, nil) }

// finishExcept marks u's records safe to commit past but for those at the
// offsets in queued, which were queued for the DLQ (queueDeadLetter) and
// are finished once it holds them. What u holds of the in-flight budget is
// released but for those records and the bytes queued gives, which their
// dead letters hold.
func (f *flow) finishExcept(u *unit, queued map[int64]int) {
	offsets := make([]int64, 0, len(u.records))
	bytes := u.bytes // the sum of heldSize of its records
	for _, r := range u.records {
		if n, ok := queued[r.offset]; ok {
			bytes -= n
			continue
		}
		offsets = append(offsets, r.offset)
	}
	f.tracker.finish(offsets...)
	f.release(len(offsets), bytes)
	f.units.Done()
}

// finishHolding marks u's records safe to commit past, keeping what they
// hold of the in-flight budget: a dead letter queued for a transaction
// holds it until the transaction commits (txnCommitter.enqueue).
func (f *flow) finishHolding(u *unit) {
	offsets := make([]int64, 0, len(u.records))
	for _, r := range u.records {
		offsets = append(offsets, r.offset)
	}
	f.tracker.finish(offsets...)
	f.units.Done()
}

// lag is the partition's high-water mark minus the offset a commit would
// resume from, 0 when settle found nothing left to deliver between them;
// false while either is unknown.
func (f *flow) lag() (int64, bool) {
	pos, ok := f.tracker.position()
	hwm := max(f.hwm(), f.logEnd.Load())
	if !ok || hwm <= 0 {
		return 0, false
	}
	if s := f.settled.Load(); s != nil && s.from == pos && s.end == hwm && s.settled {
		return 0, true
	}
	return max(0, hwm-pos), true
}

// settledRange is what settle found: whether [from, end) holds nothing a
// read_committed consumer delivers.
type settledRange struct {
	from, end int64
	settled   bool
}

// settle asks the partition's leader, once per resume offset and end,
// whether a partition at rest short of its end has anything left to
// deliver. A transactional topic ends in a commit marker, and may hold
// aborted records, that no consumer is given: by offsets its lag stayed 1
// at rest for ever. Lags over settledMaxLag are not asked about.
func (f *flow) settle(client sarama.Client, end int64) {
	pos, ok := f.tracker.position()
	if !ok || f.tracker.pending() > 0 || pos >= end {
		return
	}
	if s := f.settled.Load(); s != nil && s.from == pos && s.end == end {
		return // asked already
	}
	if settled, asked := askSettled(client, f.topic, f.partition, pos, end); asked {
		f.settled.Store(&settledRange{from: pos, end: end, settled: settled})
	}
}

// detach copies m's key, value and headers out of the fetch response
// sarama decoded them from (they are slices of it, up to
// Consumer.Fetch.Default bytes per partition), in one allocation, so that
// a held record holds only its own bytes: while a backlog drains, a rare
// key's record may be held for seconds, and each would otherwise keep its
// whole response alive, unseen by the in-flight budget. Nil stays nil.
func detach(m *sarama.ConsumerMessage) {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		if h != nil {
			n += len(h.Key) + len(h.Value)
		}
	}
	buf := make([]byte, 0, n)
	own := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		at := len(buf)
		buf = append(buf, b...)
		return buf[at:len(buf):len(buf)]
	}
	m.Key, m.Value = own(m.Key), own(m.Value)
	for _, h := range m.Headers {
		if h != nil {
			h.Key, h.Value = own(h.Key), own(h.Value)
		}
	}
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
//
// It blocks nowhere but in its one select, which always reads the claim:
// in cooperative rebalancing a revocation only closes Messages() (the
// session lives on), so the partition must let go whatever it is waiting
// for. A pause therefore stops fetching in sarama (pressure) rather than
// reading here: what sarama had already fetched (at most its channel
// buffer per partition) still arrives, is counted in the in-flight budget
// and moves on like the rest, so what is held always drains.
func (b *Bridge) consume(f *flow, msgs <-chan *sarama.ConsumerMessage) {
	b.pressure.register(f)
	if f.committer != nil {
		f.committer.start(func(err error) { b.pressure.setDLQFailing(f, err) }, func(err error) {
			if err != nil {
				b.stuckCommits.Store(f, err.Error())
			} else {
				b.stuckCommits.Delete(f)
			}
		}, f.release)
		defer b.stuckCommits.Delete(f)
	}
	defer func() {
		revoked := time.Now()
		f.cancel()
		b.dispatcher.cancelFlow(f)
		f.units.Wait()
		f.cancelCall()
		if f.committer != nil { // the watermark is final now
			if err := f.committer.close(finalCommitBound(time.Since(revoked))); err != nil {
				b.log.Warn("final transactional commit failed; the partition's next owner redelivers from the last commit",
					"topic", f.topic, "partition", f.partition, "err", err)
			}
		}
		b.pressure.unregister(f)
		f.release(int(f.heldRecords.Load()), int(f.heldBytes.Load())) // unflushed and abandoned records
	}()
	var (
		batch   []routed
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
		reason, changed := b.pressure.reason(f.topic)
		capped := f.tracker.pending() >= b.cfg.Batch.MaxInFlight
		b.pressure.setCapped(f, capped)
		if reason != "" || capped {
			flush() // paused: what is held must keep moving, or nothing frees
		}
		var freed <-chan struct{}
		if capped {
			freed = f.tracker.freed
		}
		select {
		case <-f.ctx.Done():
			return
		case <-lingerC:
			flush()
		case <-changed: // a pause began or ended: look again
		case <-freed: // below the cap again?
		case m, ok := <-msgs:
			if !ok || f.ctx.Err() != nil {
				return // revoked: what is not finished is never marked and will be redelivered
			}
			detach(m)
			f.tracker.add(m.Offset)
			f.hold(heldSize(m))
			r, err := b.route(f, m)
			if err != nil {
				b.poison(f, m, err)
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
