package eos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

// errLostPartition ends a claim whose offsets the group coordinator
// rejected because the member's generation is over.
var errLostPartition = errors.New("partition reassigned")

// partitionLoop is one claimed partition: its transactional producer and
// the records it holds. One goroutine (the claim's) owns it.
type partitionLoop struct {
	p     *Processor
	claim sarama.ConsumerGroupClaim
	txnID string
	prod  sarama.SyncProducer
	meta  *sarama.ConsumerGroupMetadata
	log   *slog.Logger
	retry *backoff.ExponentialBackOff
	// failures are the function's failures per held offset, cleared when
	// the offset commits.
	failures map[int64]int
	// reduceAt holds the offsets whose dead letters the next transaction
	// sends in reduced form (dlq.Failure.Reduced): the last one failed
	// because the producer or the broker refused them as too large.
	// reduceAll reduces every dead letter instead, when a record was too
	// large and sarama did not say which (a dead letter, which adds
	// headers and the error to the record, is the likely one). Both are
	// cleared when a transaction commits.
	reduceAt  map[int64]bool
	reduceAll bool
	// poison holds the offsets whose outputs the broker refused as too
	// large (the output topic's max.message.bytes), each with why: the
	// next attempt dead-letters them, since they never fit. suspects holds
	// the offsets of records whose outputs were refused together with
	// other outputs or beside a dead letter (the broker refuses a whole
	// batch, and sarama then fails the transaction's other records with
	// the same error): the next attempt sends each of their outputs in a
	// send of its own, so that a refusal names one output. Both are
	// cleared when a transaction commits.
	poison   map[int64]error
	suspects map[int64]bool
	// maxBytes is the producer's Producer.MaxMessageBytes: a dead letter
	// over it is reduced before it is sent (dlq.Failure.Within), and a
	// record with an output over it is dead-lettered (checkOutputs).
	maxBytes int
	// txnTimeout is the producer's Producer.Transaction.Timeout: a
	// transaction open half as long commits what it holds (step).
	txnTimeout time.Duration
}

// producerStart is a transactional producer starting in the background:
// its InitProducerId bumps the epoch of the ID, fencing any earlier
// producer and aborting whatever transaction that one left open. done
// yields the producer or the error once; finished is closed when the
// start has ended, answered or not.
type producerStart struct {
	cfg      *sarama.Config
	done     chan producerStarted
	finished chan struct{}

	mu        sync.Mutex
	client    sarama.Client // the start's own, once connected
	abandoned bool
}

type producerStarted struct {
	prod sarama.SyncProducer
	err  error
}

func startProducer(brokers []string, cfg *sarama.Config) *producerStart {
	s := &producerStart{cfg: cfg, done: make(chan producerStarted, 1), finished: make(chan struct{})}
	go func() {
		defer close(s.finished)
		client, err := sarama.NewClient(brokers, cfg)
		if err != nil {
			s.done <- producerStarted{nil, err}
			return
		}
		s.mu.Lock()
		if s.abandoned {
			s.mu.Unlock()
			_ = client.Close()
			s.done <- producerStarted{nil, sarama.ErrClosedClient}
			return
		}
		s.client = client
		s.mu.Unlock()
		prod, err := kafkatxn.ProducerFromClient(client) // closes client on failure
		s.done <- producerStarted{prod, err}
	}()
	return s
}

// abandon closes the start's client at once, so that sarama sends no
// more InitProducerId (it retries one its coordinator answers is loading,
// and a late one that succeeds fences the partition's next owner), and
// closes the producer if it starts all the same.
func (s *producerStart) abandon() {
	s.mu.Lock()
	s.abandoned = true
	if s.client != nil {
		_ = s.client.Close()
	}
	s.mu.Unlock()
	go func() {
		if r := <-s.done; r.err == nil {
			_ = r.prod.Close()
		}
	}()
}

// newPartitionLoop is the partition's loop on the producer prod started
// with pc.
func newPartitionLoop(p *Processor, sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, txnID string, log *slog.Logger, prod sarama.SyncProducer, pc *sarama.Config) *partitionLoop {
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval = p.cfg.RetryInitial, p.cfg.RetryMax
	return &partitionLoop{
		p: p, claim: claim, txnID: txnID, prod: prod, log: log, retry: retry,
		meta:     sarama.NewConsumerGroupMetadataFromSession(sess, p.cfg.Group, nil),
		failures: map[int64]int{}, maxBytes: pc.Producer.MaxMessageBytes, txnTimeout: pc.Producer.Transaction.Timeout,
	}
}

func (l *partitionLoop) close() {
	if err := l.prod.Close(); err != nil {
		l.log.Debug("closing transactional producer", "err", err)
	}
}

// run processes batches until the claim ends. It returns nil when the
// claim or ctx ended, errLostPartition (wrapped) when the generation is
// over, and any other error when the Processor must stop.
func (l *partitionLoop) run(ctx context.Context) error {
	for {
		batch := l.gather(ctx)
		if len(batch) == 0 {
			return nil
		}
		// Rewind: until the whole batch is committed, what remains of it is
		// exactly the records after the last committed offset.
		for len(batch) > 0 {
			if ctx.Err() != nil {
				return nil // what is left is the partition's next owner's
			}
			n, err := l.step(ctx, batch)
			batch = batch[n:]
			if err == nil {
				l.retry.Reset()
				continue
			}
			// A function's failure is its record's, whatever Kafka error
			// it wraps (the function may talk to Kafka itself): only the
			// transaction's errors say what the producer or the group did.
			var ff *funcFailure
			if !errors.As(err, &ff) {
				if refusedRecord(err) {
					l.reduceTooLarge(err)
				}
				if err := l.classify(err); err != nil {
					return err
				}
			}
			wait := l.retry.NextBackOff()
			l.log.Warn("batch failed; retrying from the first uncommitted record",
				"offset", batch[0].Offset, "records", len(batch), "retry_in", wait, "err", err)
			select {
			case <-ctx.Done():
				return nil // uncommitted: the partition's next owner processes them
			case <-time.After(wait):
			}
		}
	}
}

// classify returns nil for an error worth retrying with the same producer,
// and the error that ends the claim otherwise.
func (l *partitionLoop) classify(err error) error {
	switch {
	case isFenced(err):
		return fmt.Errorf("%w: %s: %w", ErrFenced, l.txnID, err)
	case isStaleMember(err):
		return fmt.Errorf("%w: %s/%d: %w", errLostPartition, l.claim.Topic(), l.claim.Partition(), err)
	case l.prod.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0:
		return fmt.Errorf("eos: transactional producer %s is unusable: %w", l.txnID, err)
	}
	return nil
}

// gather reads up to MaxBatch records, waiting at most Linger after the
// first. It returns nothing when the claim or ctx ends; records gathered
// then are not committed, so the partition's next owner gets them.
func (l *partitionLoop) gather(ctx context.Context) []*sarama.ConsumerMessage {
	var batch []*sarama.ConsumerMessage
	var linger <-chan time.Time
	for len(batch) < l.p.cfg.MaxBatch {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-l.claim.Messages():
			if !ok {
				return nil
			}
			batch = append(batch, msg)
			if linger == nil {
				t := time.NewTimer(l.p.cfg.Linger)
				defer t.Stop()
				linger = t.C
			}
		case <-linger:
			return batch
		}
	}
	return batch
}

// sendChunk is how many records a transaction buffers before sending them:
// outputs go to the broker while later records are processed, not all at
// the commit.
const sendChunk = 100

// step runs the function over batch and commits, in one transaction, the
// longest prefix it could finish: records processed or dead-lettered, up
// to the first record whose function failed (and may be retried). It
// returns the length of that prefix, and the function's failure or the
// transaction's error. On a transaction error nothing was committed.
//
// The transaction begins with its first send; outputs are sent in chunks of
// sendChunk as the function produces them, so they belong to the prefix
// whatever happens next. Once it has been open half the transaction
// timeout it commits what it holds, without an error, and the caller goes
// on with the rest of the batch: the broker aborts a transaction that
// outlives its timeout and fences the producer, which a slow function
// (500 records at 150 ms each) would otherwise always do, on every retry.
func (l *partitionLoop) step(ctx context.Context, batch []*sarama.ConsumerMessage) (n int, err error) {
	t := txn{l: l}
	defer func() {
		if err != nil && t.open && isFenced(err) {
			if open := time.Since(t.began); open >= l.txnTimeout {
				err = fmt.Errorf("%w (the transaction had been open %s, past the transaction timeout of %s, so the broker may have aborted it itself: one record's function must take less than half of TransactionTimeout)",
					err, open.Round(time.Millisecond), l.txnTimeout)
			}
		}
	}()
	var outputs, dead int
	var failure error
	for _, rec := range batch {
		if t.open && time.Since(t.began) >= l.txnTimeout/2 {
			break // commit what is held; the rest goes in the next transaction
		}
		if ctx.Err() != nil {
			// The claim ended (a rebalance, or Run's context): commit what
			// is done, even if the function ignores ctx, and leave the rest
			// to the next owner, within the rebalance's timeout.
			break
		}
		var msgs []*sarama.ProducerMessage
		err := l.poison[rec.Offset]
		if err == nil {
			var outs []Output
			if outs, err = l.call(ctx, rec); err == nil {
				msgs, err = l.checkOutputs(outs)
			}
		}
		switch {
		case err == nil:
			alone := l.suspects[rec.Offset]
			if alone { // its outputs go in a send of their own
				if err := t.flush(1); err != nil {
					return 0, err
				}
			}
			for _, m := range msgs {
				t.addOutput(m, rec.Offset)
				if alone { // and one by one: the broker bounds a batch, not a record
					if err := t.flush(1); err != nil {
						return 0, err
					}
				}
			}
			outputs += len(msgs)
		case ctx.Err() != nil:
			failure = fmt.Errorf("%s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
		case IsOutage(err): // not the record's fault: retried, never counted
			failure = fmt.Errorf("%s/%d@%d: outage: %w", rec.Topic, rec.Partition, rec.Offset, err)
		default:
			l.failures[rec.Offset]++
			attempts := l.failures[rec.Offset]
			if !IsPermanent(err) && attempts < l.p.cfg.MaxAttempts {
				failure = fmt.Errorf("%s/%d@%d attempt %d of %d: %w", rec.Topic, rec.Partition, rec.Offset, attempts, l.p.cfg.MaxAttempts, err)
				break
			}
			// Dead-letter it inside the transaction that commits its offset.
			l.log.Warn("dead-lettering record", "offset", rec.Offset, "attempts", attempts, "permanent", IsPermanent(err), "err", err)
			f := dlq.FromMessage(rec, dlq.ClassProcess, err, attempts, time.Now())
			if l.reduceAll || l.reduceAt[rec.Offset] {
				f = f.Reduced()
			} else if f = f.Within(l.p.cfg.DLQSuffix, l.maxBytes); f.IsReduced() {
				l.log.Warn("dead letter too large for the producer's max message size; sending it in reduced form",
					"offset", rec.Offset, "value_bytes", len(rec.Value), "max_message_bytes", l.maxBytes)
			}
			t.addDead(f.Message(l.p.cfg.DLQSuffix), rec.Offset)
			dead++
		}
		if failure != nil {
			break
		}
		n++
		if err := t.flush(sendChunk); err != nil {
			return 0, err
		}
	}
	if failure != nil {
		failure = &funcFailure{failure}
	}
	if n == 0 {
		return 0, failure // nothing was added, so no transaction began
	}
	if err := t.commit(ctx, batch[n-1]); err != nil {
		return 0, err
	}
	l.forgetThrough(batch[n-1].Offset, n == len(batch))
	for _, rec := range batch[:n] {
		delete(l.failures, rec.Offset)
	}
	l.p.commits.Add(1)
	l.p.records.Add(int64(n))
	l.p.outputs.Add(int64(outputs))
	l.p.deadLettered.Add(int64(dead))
	return n, failure
}

// funcFailure is a record's function failing (step's failure), told
// apart from the transaction's errors.
type funcFailure struct{ err error }

func (f *funcFailure) Error() string { return f.err.Error() }
func (f *funcFailure) Unwrap() error { return f.err }

// call runs the function over rec. A panic fails the record for good (a
// Permanent error with the panic and its stack), so it is dead-lettered:
// it took the process down, and the next owner panicked on it again.
func (l *partitionLoop) call(ctx context.Context, rec *sarama.ConsumerMessage) (outs []Output, err error) {
	defer func() {
		if v := recover(); v != nil {
			outs, err = nil, Permanent(fmt.Errorf("the function panicked: %v\n%s", v, debug.Stack()))
		}
	}()
	return l.p.fn(ctx, rec)
}

// forgetThrough drops what the next attempts were to do differently for the
// records up to last, which have committed; reduceAll, which names no
// record, lasts until the whole batch has (all).
func (l *partitionLoop) forgetThrough(last int64, all bool) {
	done := func(offset int64) bool { return offset <= last }
	maps.DeleteFunc(l.reduceAt, func(o int64, _ bool) bool { return done(o) })
	maps.DeleteFunc(l.poison, func(o int64, _ error) bool { return done(o) })
	maps.DeleteFunc(l.suspects, func(o int64, _ bool) bool { return done(o) })
	if all {
		l.reduceAll = false
	}
}

// txn is one transaction of a partitionLoop: it begins with its first send.
type txn struct {
	l       *partitionLoop
	open    bool
	began   time.Time // when open became true
	pending []*sarama.ProducerMessage
	// deadOf is the input offset of each dead letter added, outOf of each
	// output.
	deadOf, outOf map[*sarama.ProducerMessage]int64
}

func (t *txn) add(m *sarama.ProducerMessage) { t.pending = append(t.pending, m) }

// addOutput adds an output of the record at offset.
func (t *txn) addOutput(m *sarama.ProducerMessage, offset int64) {
	if t.outOf == nil {
		t.outOf = map[*sarama.ProducerMessage]int64{}
	}
	t.outOf[m] = offset
	t.add(m)
}

// addDead adds the dead letter of the record at offset.
func (t *txn) addDead(m *sarama.ProducerMessage, offset int64) {
	if t.deadOf == nil {
		t.deadOf = map[*sarama.ProducerMessage]int64{}
	}
	t.deadOf[m] = offset
	t.add(m)
}

// flush sends the pending records once there are at least min of them,
// beginning the transaction first if needed; on failure it aborts.
func (t *txn) flush(min int) error {
	if len(t.pending) == 0 || len(t.pending) < min {
		return nil
	}
	if err := t.begin(); err != nil {
		return err
	}
	if err := t.l.prod.SendMessages(t.pending); err != nil {
		t.refused(err)
		return t.l.abort(fmt.Errorf("eos: send %d records in %s: %w", len(t.pending), t.l.txnID, kafkatxn.SendErrors(err)))
	}
	t.pending = t.pending[:0]
	return nil
}

func (t *txn) begin() error {
	if t.open {
		return nil
	}
	if err := kafkatxn.Ready(t.l.prod); err != nil { // after a failed transaction
		return fmt.Errorf("eos: %s: %w", t.l.txnID, err)
	}
	if err := t.l.prod.BeginTxn(); err != nil {
		return fmt.Errorf("eos: begin transaction %s: %w", t.l.txnID, err)
	}
	t.open, t.began = true, time.Now()
	return nil
}

// commit sends what is pending and commits it with the offset after last,
// or aborts. A commit whose outcome is unknown (kafkatxn.Committing: its
// EndTxn ran out of sarama's retries, perhaps after it reached the
// coordinator) is sent again until it is settled: aborting it would be
// refused by a coordinator that committed (and make the producer fatal),
// and processing the records again would write their outputs twice. If
// ctx ends first the claim is over, and the partition's next owner's
// producer settles it (its InitProducerId completes or aborts what the
// coordinator holds).
func (t *txn) commit(ctx context.Context, last *sarama.ConsumerMessage) error {
	if err := t.flush(1); err != nil {
		return err
	}
	if err := t.begin(); err != nil { // a batch with no outputs still moves its offset
		return err
	}
	l := t.l
	if err := l.prod.AddMessageToTxnWithGroupMetadata(last, l.meta, nil); err != nil {
		return l.abort(fmt.Errorf("eos: add offset %s/%d@%d to %s: %w", last.Topic, last.Partition, last.Offset+1, l.txnID, err))
	}
	err := l.prod.CommitTxn()
	for err != nil && kafkatxn.Committing(l.prod) {
		wait := l.retry.NextBackOff()
		l.log.Warn("the transaction's commit ran out of retries, its outcome unknown; committing it again", "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("eos: commit %s: outcome unknown when the claim ended: %w", l.txnID, err)
		case <-time.After(wait):
		}
		err = l.prod.CommitTxn()
	}
	if err != nil {
		return l.abort(fmt.Errorf("eos: commit %s: %w", l.txnID, err))
	}
	return nil
}

// abort aborts the open transaction after cause and counts it.
func (l *partitionLoop) abort(cause error) error {
	l.p.aborts.Add(1)
	return kafkatxn.Abort(l.prod, cause)
}
