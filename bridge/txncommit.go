package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

// commitInterval is how often a transactional partition commits its
// watermark when nothing else asks it to.
const commitInterval = time.Second

// txnCommitter commits one partition's offset in Kafka transactions, with
// the DLQ records of that partition in the same transaction as the offset
// that passes them (dlq.transactional). It replaces sarama's offset
// manager for the partition: the group's offset moves only here.
//
// A dead-lettered record is queued, not written: the record counts as
// finished, and its DLQ record goes out in the first transaction whose
// offset is past it. A crash before that transaction loses both, so the
// record is redelivered and dead-lettered again, once; after it, both are
// durable. Consumers of the DLQ topic must read read_committed.
//
// Safe for concurrent use; run owns the producer until close.
type txnCommitter struct {
	prod sarama.SyncProducer
	// newProducer starts a producer with the same transactional ID, to
	// replace one in sarama's fatal state.
	newProducer func() (sarama.SyncProducer, error)
	// starter starts them one at a time (the bridge's, for its ID).
	starter *connect.TxnStarter
	// failed counts failed commits (sagabridge_commit_failures_total);
	// reduced counts dead letters sent in reduced form
	// (sagabridge_dlq_reduced_total).
	failed, reduced *atomic.Uint64
	// maxBytes is the producer's Producer.MaxMessageBytes: a dead letter
	// over it is reduced when queued (dlq.Failure.Within), never sent to
	// fail its transaction.
	maxBytes  int
	meta      *sarama.ConsumerGroupMetadata
	topic     string
	partition int32
	txnID     string
	suffix    string
	log       *slog.Logger
	onCommit  func(dead []dlq.Failure)
	// lost ends the partition's flow when a newer owner fenced us.
	lost func()
	// failing is told, by run, the error of a commit that failed with dead
	// letters in it, and nil when a commit succeeds: the partition pauses
	// while its dead letters cannot be committed, as they wait in memory.
	failing func(error)
	// stuck is told, by run, the error of every commit that failed, dead
	// letters in it or not, and nil when one succeeds: /readyz names a
	// partition whose offsets do not commit.
	stuck func(error)
	// release returns what committed dead letters held of the partition's
	// in-flight budget (flow.release).
	release func(records, bytes int)
	started bool
	// fenced is set by run when a newer owner fenced us or the group
	// moved on; close then commits nothing (a new producer of our
	// transactional ID would fence that owner in turn).
	fenced bool

	// unsure is a transaction whose commit ran out of sarama's retries
	// after it may have reached the coordinator (the reply lost): its dead
	// letters and watermark, until committing it again settles it.
	unsure *unsureCommit

	mu        sync.Mutex
	next      int64         // the watermark: the offset to resume from
	committed int64         // the last committed watermark
	queued    []dlq.Failure // dead letters not yet committed
	held      map[int64]int // offset → the bytes its dead letter holds of the budget
	kick      chan struct{}
	stop      context.CancelFunc
	done      chan struct{}
	// closeTimeout bounds close (kafka.connect_timeout); abandoned is set
	// when close gave up on the final commit.
	closeTimeout time.Duration
	abandoned    bool
}

// newTxnCommitter starts the partition's transactional producer, which
// fences any earlier producer of the same ID (a previous owner). The
// caller starts its commits with start.
func (b *Bridge) newTxnCommitter(s sarama.ConsumerGroupSession, topic string, partition int32, start int64, lost func(), starter *connect.TxnStarter) (*txnCommitter, error) {
	txnID := kafkatxn.TransactionalID(b.cfg.DLQ.TransactionalIDPrefix, b.cfg.Kafka.Group, topic, partition)
	pc, err := connect.TransactionalProducerConfig(b.cfg.Kafka, b.cfg.DLQ.MaxMessageBytes, txnID)
	if err != nil {
		return nil, err
	}
	newProducer := func() (sarama.SyncProducer, error) {
		prod, err := starter.Start(b.cfg.Kafka, pc)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", errTxnStart, txnID, err)
		}
		return prod, nil
	}
	prod, err := newProducer()
	if err != nil {
		return nil, err
	}
	c := &txnCommitter{
		prod: prod, newProducer: newProducer, failed: &b.commitFailures, reduced: &b.reducedDeadLetters,
		maxBytes: pc.Producer.MaxMessageBytes,
		meta:     sarama.NewConsumerGroupMetadataFromSession(s, b.cfg.Kafka.Group, instanceID(b.cfg.Kafka.InstanceID)),
		topic:    topic, partition: partition, txnID: txnID, suffix: b.cfg.DLQ.Suffix,
		log:      b.log.With("topic", topic, "partition", partition, "txn_id", txnID),
		onCommit: b.committedDeadLetters, lost: lost, starter: starter,
		next: start, committed: start, held: map[int64]int{},
		kick: make(chan struct{}, 1), done: make(chan struct{}),
		closeTimeout: b.cfg.Kafka.ConnectTimeout,
	}
	return c, nil
}

// instanceID is the group instance ID of static membership for a
// transaction's group metadata: nil without one.
func instanceID(id string) *string {
	if id == "" {
		return nil
	}
	return &id
}

// errTxnStart wraps the failure to start a transactional producer.
var errTxnStart = errors.New("start transactional producer")

// startTxnCommitter is newTxnCommitter, retried while the producer cannot
// start (InitProducerId refused: its coordinator loading, the
// transactional ID's ACL missing) until the session ends (retryClaim):
// with dlq.transactional rebalancing is eager, so the session ends when the
// partition is revoked, and a retry never fences the partition's next
// owner.
func (b *Bridge) startTxnCommitter(s sarama.ConsumerGroupSession, topic string, partition int32, start int64, lost func()) (*txnCommitter, error) {
	var c *txnCommitter
	// One starter per transactional ID, for every try and every claim: a
	// start given up on must not fence the next.
	txnID := kafkatxn.TransactionalID(b.cfg.DLQ.TransactionalIDPrefix, b.cfg.Kafka.Group, topic, partition)
	st, _ := b.txnStarters.LoadOrStore(txnID, &connect.TxnStarter{})
	starter := st.(*connect.TxnStarter)
	err := b.retryClaim(s, topic, partition, "the transactional producer cannot start", nil, func() (bool, error) {
		var err error
		c, err = b.newTxnCommitter(s, topic, partition, start, lost, starter)
		var config sarama.ConfigurationError
		return err == nil || !errors.Is(err, errTxnStart) || errors.As(err, &config), err
	})
	return c, err
}

// start starts committing, telling failing and stuck (see
// txnCommitter.failing) whether dead letters and offsets can be committed. It is called once, before close,
// on the goroutine that calls close.
//
// release returns what committed dead letters held of the partition's
// in-flight budget.
func (c *txnCommitter) start(failing, stuck func(error), release func(records, bytes int)) {
	ctx, stop := context.WithCancel(context.Background())
	c.failing, c.stuck, c.release, c.stop, c.started = failing, stuck, release, stop, true
	go c.run(ctx)
}

// advance records a new watermark.
func (c *txnCommitter) advance(next int64) {
	c.mu.Lock()
	c.next = max(c.next, next)
	c.mu.Unlock()
}

// enqueue holds f until a transaction commits it with an offset past it;
// bytes is what its record holds of the in-flight budget, released then.
func (c *txnCommitter) enqueue(f dlq.Failure, bytes int) {
	if r := f.Within(c.suffix, c.maxBytes); r.IsReduced() && !f.IsReduced() {
		c.reduced.Add(1)
		c.log.Warn("dead letter too large for dlq.max_message_bytes; it goes in reduced form (value dropped, headers trimmed)",
			"offset", f.Offset, "value_bytes", len(f.Value), "headers", len(f.Headers), "max_message_bytes", c.maxBytes)
		f = r
	}
	c.mu.Lock()
	c.queued = append(c.queued, f)
	c.held[f.Offset] += bytes
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *txnCommitter) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(commitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		if ctx.Err() != nil { // stopped while the ticker fired: finish commits
			return
		}
		dead, err := c.commit()
		if err != nil {
			c.failed.Add(1)
		}
		if ctx.Err() != nil && !kafkatxn.Fenced(err) && !kafkatxn.StaleMember(err) {
			// Stopped during the commit: the flow may be gone (close gave
			// up on it), and its reasons with it; tell nobody.
			return
		}
		switch {
		case err == nil:
			c.failing(nil)
			c.stuck(nil)
		case kafkatxn.Fenced(err) || kafkatxn.StaleMember(err):
			// A newer owner initialised our transactional ID or the group
			// moved on: stop this partition; nothing more is committed.
			c.log.Error("fenced: the partition has a newer owner; releasing it", "err", err)
			c.fenced = true
			c.lost()
			return
		default:
			c.log.Warn("transactional offset commit failed; retrying", "dead_letters", dead, "err", err)
			c.stuck(err)
			if dead > 0 {
				c.failing(fmt.Errorf("transactional commit of %d dead letters: %w", dead, err))
			}
		}
	}
}

// close stops the loop, commits the final watermark (unless a newer owner
// fenced us) and closes the producer. It gives up after closeTimeout
// (kafka.connect_timeout), or within if sooner (what the rebalance
// timeout leaves after the drain; finalCommitBound): a coordinator that takes EndTxn and never
// answers would hold it, and the partition's rebalance or the bridge's
// stop, for a read timeout per try, fifty tries. The partition's next owner
// then fences the producer and redelivers from the last commit, as after a
// crash; what the abandoned commit does later releases nothing of the
// budget (the caller releases all the flow holds).
func (c *txnCommitter) close(within time.Duration) error {
	finished := make(chan error, 1)
	go func() { finished <- c.finish() }()
	timeout := min(cmp.Or(c.closeTimeout, 15*time.Second), max(within, 0))
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-finished:
		return err
	case <-t.C:
		c.mu.Lock()
		c.abandoned = true
		c.mu.Unlock()
		return fmt.Errorf("final commit of %s: no answer within %s (kafka.connect_timeout, or what the rebalance timeout left); its partition's next owner fences it and redelivers from the last commit",
			c.txnID, timeout)
	}
}

// finalCommitBound is how long a released partition's final commit may
// take once the partition has drained for drained: what the rebalance
// timeout leaves, less a second for the handler to return, so the member
// is not dropped from the group (drain_timeout 10 s and connect_timeout
// 15 s, the defaults, made 25 s against its 20), and at least
// minFinalCommit.
func finalCommitBound(drained time.Duration) time.Duration {
	return max(config.RebalanceTimeout-time.Second-drained, minFinalCommit)
}

// minFinalCommit is the least a final commit is given, however long the
// drain took: with none it was given up before it was sent.
const minFinalCommit = 500 * time.Millisecond

// errCommitterAbandoned is a commit tried after close gave up.
var errCommitterAbandoned = errors.New("the partition's final commit was given up")

// isAbandoned reports whether close gave up on the final commit.
func (c *txnCommitter) isAbandoned() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.abandoned
}

// finish is close without its bound. Once close has given up, it commits
// nothing more: the partition may have a new owner by then.
func (c *txnCommitter) finish() error {
	if c.started {
		c.stop()
		<-c.done
	}
	var err error
	if !c.fenced && !c.isAbandoned() {
		_, err = c.commit()
	}
	if c.prod == nil { // closed by ready, and not replaced
		return err
	}
	if cerr := c.prod.Close(); cerr != nil {
		c.log.Debug("closing transactional producer", "err", cerr)
	}
	return err
}

// commit sends the dead letters below the watermark and the watermark in
// one transaction, and returns how many dead letters it tried. On failure
// it aborts and keeps them for the next try.
func (c *txnCommitter) commit() (int, error) {
	if c.unsure != nil {
		if n, err := c.settle(); err != nil {
			return n, err
		}
	}
	c.mu.Lock()
	next := c.next
	var take []dlq.Failure
	c.queued = slices.DeleteFunc(c.queued, func(f dlq.Failure) bool {
		if f.Offset < next {
			take = append(take, f)
			return true
		}
		return false
	})
	c.mu.Unlock()
	if next <= c.committed && len(take) == 0 {
		return 0, nil
	}
	slices.SortFunc(take, func(a, b dlq.Failure) int { return cmp.Compare(a.Offset, b.Offset) })
	if err := c.transact(take, next); err != nil {
		if errors.Is(err, errCommitUnsure) {
			c.unsure = &unsureCommit{dead: take, next: next}
			c.log.Warn("the transaction's commit ran out of retries, its outcome unknown; committing it again", "dead_letters", len(take), "err", err)
			return len(take), err
		}
		if dlq.TooLarge(err) { // the next transaction sends those that did not fit in reduced form
			var tl *tooLargeError
			named := errors.As(err, &tl) // all of them, unless the error names which
			reduced := 0
			for i, f := range take {
				if (!named || slices.Contains(tl.at, i)) && !f.IsReduced() {
					take[i] = f.Reduced()
					reduced++
					c.reduced.Add(1)
				}
			}
			c.log.Warn("dead letters too large for the DLQ; the next transaction sends them in reduced form", "records", reduced, "of", len(take), "err", err)
		}
		c.mu.Lock()
		c.queued = append(take, c.queued...)
		c.mu.Unlock()
		return len(take), err
	}
	c.committed = next
	if len(take) > 0 {
		c.committedDead(take)
	}
	return len(take), nil
}

// ready readies the producer for a new transaction: it finishes what a
// failed commit left (kafkatxn.Ready: an open transaction, or an end of
// transaction that ran out of sarama's retries), and replaces a producer
// that sarama has put in its fatal state with a new one of the same
// transactional ID, which aborts that transaction at the broker. Without
// this, a partition's offsets would stop committing while delivery goes on.
// (After a fence run stops, and close commits nothing: ready never
// replaces a fenced producer.)
//
// A producer closed here whose replacement cannot start yet (its
// InitProducerId refused while the coordinator loads, or the ID's ACL is
// missing) leaves prod nil until a later ready starts one: sarama panics
// when a producer is closed twice.
func (c *txnCommitter) ready() error {
	if c.isAbandoned() {
		// A new producer of our transactional ID would fence the
		// partition's next owner.
		return fmt.Errorf("%s: %w", c.txnID, errCommitterAbandoned)
	}
	if c.prod != nil {
		if st := c.prod.TxnStatus(); st&sarama.ProducerTxnFlagFatalError != 0 {
			c.log.Warn("the transactional producer is in a fatal state; recreating it", "status", st.String())
			if err := c.prod.Close(); err != nil {
				c.log.Debug("closing the failed transactional producer", "err", err)
			}
			c.prod = nil
		}
	}
	switch {
	case c.prod == nil:
		prod, err := c.newProducer()
		if err != nil {
			return err
		}
		c.prod = prod
	default:
		if err := kafkatxn.Ready(c.prod); err != nil {
			return fmt.Errorf("%s: %w", c.txnID, err)
		}
	}
	return nil
}

func (c *txnCommitter) transact(dead []dlq.Failure, next int64) error {
	if err := c.ready(); err != nil {
		return err
	}
	if err := c.prod.BeginTxn(); err != nil {
		return fmt.Errorf("begin %s: %w", c.txnID, err)
	}
	abort := func(cause error) error { return kafkatxn.Abort(c.prod, cause) }
	if len(dead) > 0 {
		msgs := make([]*sarama.ProducerMessage, len(dead))
		for i, f := range dead {
			msgs[i] = f.Message(c.suffix)
		}
		if serr := c.prod.SendMessages(msgs); serr != nil {
			err := fmt.Errorf("send %d DLQ records in %s: %w", len(msgs), c.txnID, kafkatxn.SendErrors(serr))
			return abort(tooLargeAmong(err, serr, msgs))
		}
	}
	offsets := map[string][]*sarama.PartitionOffsetMetadata{c.topic: {{Partition: c.partition, Offset: next}}}
	if err := c.prod.AddOffsetsToTxnWithGroupMetadata(offsets, c.meta); err != nil {
		return abort(fmt.Errorf("add offset %d to %s: %w", next, c.txnID, err))
	}
	if err := c.prod.CommitTxn(); err != nil {
		if kafkatxn.Committing(c.prod) {
			return fmt.Errorf("commit %s: %w: %w", c.txnID, errCommitUnsure, err)
		}
		return abort(fmt.Errorf("commit %s: %w", c.txnID, err))
	}
	return nil
}

// committedDead reports dead letters a transaction committed and
// releases what they held of the in-flight budget.
func (c *txnCommitter) committedDead(dead []dlq.Failure) {
	c.mu.Lock()
	bytes := 0
	for _, f := range dead {
		bytes += c.held[f.Offset]
		delete(c.held, f.Offset)
	}
	if c.release != nil && !c.abandoned { // under mu: close gives them all back once abandoned
		c.release(len(dead), bytes)
	}
	c.mu.Unlock()
	c.onCommit(dead)
}

// tooLargeError is a failed send of dead letters, some of which the
// producer or the broker refused as too large for the DLQ topic: at holds
// their indexes among the transaction's dead letters.
type tooLargeError struct {
	err error
	at  []int
}

func (e *tooLargeError) Error() string { return e.err.Error() }
func (e *tooLargeError) Unwrap() error { return e.err }

// tooLargeAmong returns err, as a *tooLargeError when sendErr, what
// SendMessages(sent) returned, names records refused as too large
// (dlq.TooLargeRecords).
func tooLargeAmong(err, sendErr error, sent []*sarama.ProducerMessage) error {
	refused := dlq.TooLargeRecords(sendErr)
	var at []int
	for i, m := range sent {
		if refused[m] {
			at = append(at, i)
		}
	}
	if len(at) == 0 {
		return err
	}
	return &tooLargeError{err: err, at: at}
}
