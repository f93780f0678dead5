package eos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"

	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

// Output is one record a Func produces.
type Output struct {
	Topic   string
	Key     []byte // nil for no key
	Value   []byte
	Headers []sarama.RecordHeader
}

// Func turns one input record into its outputs. It may be called more than
// once for the same record (after an abort, a crash or a rebalance); only
// the outputs of the call whose transaction committed are ever visible to
// read_committed consumers. Return an error wrapped by Permanent for a
// record that can never succeed. Its error is its record's whatever it
// wraps (a Kafka error of the function's own client included): retried up
// to MaxAttempts and dead-lettered, or retried for ever for an outage
// (IsOutage). A panic is a Permanent error with its stack: the record is
// dead-lettered. Func is called from one goroutine per claimed partition,
// so calls for different partitions run concurrently.
type Func func(ctx context.Context, rec *sarama.ConsumerMessage) ([]Output, error)

// Stats counts what a Processor did. All fields are totals since New.
type Stats struct {
	// Records is input records whose offsets committed (processed or
	// dead-lettered).
	Records int64
	// Outputs is output records committed.
	Outputs int64
	// DeadLettered is input records committed to a dead-letter topic.
	DeadLettered int64
	// Commits and Aborts count transactions.
	Commits, Aborts int64
}

// Processor runs Func over a consumer group with exactly-once output; see
// the package documentation. Create it with New and call Run once.
type Processor struct {
	cfg Config
	fn  Func
	log *slog.Logger

	records, outputs, deadLettered, commits, aborts atomic.Int64
	ran                                             atomic.Bool // Run was called

	// fatal holds the first error that must stop Run (fencing, a producer
	// in sarama's fatal state); stop cancels Run's context.
	mu    sync.Mutex
	fatal error
	stop  context.CancelFunc
	// starts holds, by transactional ID, producer starts a session ended
	// before they answered: the partition's next claim takes its start
	// over rather than begin another beside it, whose InitProducerId the
	// late one could follow and fence. A session that does not claim the
	// partition abandons its start (Setup), and so does Run when it
	// returns.
	starts map[string]*producerStart
}

// New checks cfg (after defaults) and returns a Processor. log may be nil
// for slog.Default().
func New(cfg Config, fn Func, log *slog.Logger) (*Processor, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, errors.New("eos: the Func is nil")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Processor{cfg: cfg, fn: fn, log: log.With("group", cfg.Group)}, nil
}

// Stats returns what the Processor did so far. Safe for concurrent use.
func (p *Processor) Stats() Stats {
	return Stats{
		Records: p.records.Load(), Outputs: p.outputs.Load(), DeadLettered: p.deadLettered.Load(),
		Commits: p.commits.Load(), Aborts: p.aborts.Load(),
	}
}

// Run joins the consumer group and processes until ctx is cancelled, when
// it finishes the batches in progress (committing or aborting each), leaves
// the group and returns nil. It returns an error matching ErrFenced when a
// newer instance took over one of its partitions, and any other error that
// makes going on unsafe; in both cases it stops: the partition at fault
// commits nothing more, and the others finish their batches in progress
// as on cancellation (each commit still fenced by its own epoch and
// generation).
//
// Run once per Processor: a second call returns ErrAlreadyRun.
func (p *Processor) Run(ctx context.Context) error {
	if !p.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	group, err := sarama.NewConsumerGroup(p.cfg.Brokers, p.cfg.Group, p.cfg.consumerConfig())
	if err != nil {
		return fmt.Errorf("eos: join group %s: %w", p.cfg.Group, err)
	}
	defer group.Close()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	p.mu.Lock()
	p.stop = stop
	p.mu.Unlock()
	go func() {
		for err := range group.Errors() {
			p.log.Warn("consumer group error", "err", err)
		}
	}()
	p.log.Info("processor started", "topics", p.cfg.Topics, "txn_id_prefix", p.cfg.TransactionalIDPrefix)
	retry := backoff.NewExponentialBackOff()
	retry.MaxInterval = 5 * time.Second
	for ctx.Err() == nil {
		err := group.Consume(ctx, p.cfg.Topics, handler{p})
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			break
		}
		if err == nil || ctx.Err() != nil { // a rebalance ended the session; join the next
			retry.Reset()
			continue
		}
		if errors.Is(err, sarama.ErrInvalidSessionTimeout) { // refused at every join: retrying cannot help
			err = fmt.Errorf("eos: SessionTimeout %s is outside the broker's group.min.session.timeout.ms and group.max.session.timeout.ms: %w",
				p.cfg.consumerConfig().Consumer.Group.Session.Timeout, err) // as the Sarama hook left it
			p.log.Error("processor stopping", "err", err)
			p.fail(err)
			break
		}
		wait := retry.NextBackOff()
		p.log.Warn("consumer group session failed; rejoining", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, s := range p.starts {
		s.abandon()
		delete(p.starts, id)
	}
	if p.fatal != nil {
		return p.fatal
	}
	p.log.Info("processor stopped", "records", p.records.Load(), "commits", p.commits.Load())
	return nil
}

// fail records err as the reason Run stops, and stops it. The first error
// wins.
func (p *Processor) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fatal == nil {
		p.fatal = err
	}
	if p.stop != nil {
		p.stop()
	}
}

// handler is the sarama consumer group handler.
type handler struct{ p *Processor }

// Setup abandons the starts kept for partitions this session did not
// claim (keepStart): another member owns them now, and a late
// InitProducerId of the start would fence it.
func (h handler) Setup(s sarama.ConsumerGroupSession) error {
	h.p.abandonStartsBut(s.Claims())
	return nil
}
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim runs one partition's transactional loop.
func (h handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := h.p
	txnID := kafkatxn.TransactionalID(p.cfg.TransactionalIDPrefix, p.cfg.Group, claim.Topic(), claim.Partition())
	log := p.log.With("topic", claim.Topic(), "partition", claim.Partition(), "txn_id", txnID)
	pl, err := startPartitionLoop(p, sess, claim, txnID, log)
	if err != nil {
		p.fail(err)
		return err
	}
	if pl == nil {
		return nil // the session ended first
	}
	defer pl.close()
	log.Info("partition claimed", "from_offset", claim.InitialOffset(), "generation", sess.GenerationID())
	err = pl.run(sess.Context())
	switch {
	case err == nil:
		log.Info("partition released")
		return nil
	case errors.Is(err, errLostPartition):
		log.Info("partition lost to a newer generation; its open batch was aborted", "err", err)
		return nil
	default:
		log.Error("processor stopping", "err", err)
		p.fail(err)
		return err
	}
}

// takeStart returns the start of txnID a session left, if it is still
// unanswered. One that has answered is closed instead: its producer's
// epoch may be stale by now (the partition may have had another owner
// since, whose InitProducerId fenced it), and only a start still pending
// could send a late InitProducerId.
func (p *Processor) takeStart(txnID string) *producerStart {
	p.mu.Lock()
	s := p.starts[txnID]
	delete(p.starts, txnID)
	p.mu.Unlock()
	if s == nil {
		return nil
	}
	select {
	case r := <-s.done:
		if r.err == nil {
			_ = r.prod.Close()
		}
		return nil
	default:
		return s
	}
}

// keepStart leaves s, still unanswered, to txnID's next claim.
func (p *Processor) keepStart(txnID string, s *producerStart) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.starts == nil {
		p.starts = map[string]*producerStart{}
	}
	p.starts[txnID] = s
}

// abandonStartsBut abandons the kept starts of every partition but
// claims'.
func (p *Processor) abandonStartsBut(claims map[string][]int32) {
	keep := map[string]bool{}
	for topic, partitions := range claims {
		for _, partition := range partitions {
			keep[kafkatxn.TransactionalID(p.cfg.TransactionalIDPrefix, p.cfg.Group, topic, partition)] = true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, s := range p.starts {
		if !keep[id] {
			s.abandon()
			delete(p.starts, id)
		}
	}
}

// startPartitionLoop starts the claim's partition loop, retrying with
// backoff while its transactional producer cannot start for a reason that
// may pass (its coordinator loading or out of reach, after sarama's own
// retries). A start that has no answer after Config.StartWarnAfter is
// logged, each time, and waited for on: sarama sends its InitProducerId
// again after a read timeout, and starting another producer beside it
// would pile up clients, and its late InitProducerId could fence the new
// one (so a start the session ends is kept for the partition's next claim,
// keepStart). It returns nil and no error when the session
// ends first, and an error that stops the Processor when a newer producer
// fenced the ID (ErrFenced) or the configuration is wrong.
func startPartitionLoop(p *Processor, sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, txnID string, log *slog.Logger) (*partitionLoop, error) {
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval = p.cfg.RetryInitial, p.cfg.RetryMax
	pc := p.cfg.producerConfig(txnID)
	for {
		start, began := p.takeStart(txnID), time.Now()
		if start == nil {
			start = startProducer(p.cfg.Brokers, pc)
		}
		var r producerStarted
		for waiting := true; waiting; {
			select {
			case r = <-start.done:
				waiting = false
			case <-sess.Context().Done():
				p.keepStart(txnID, start)
				return nil, nil
			case <-time.After(p.cfg.StartWarnAfter):
				log.Warn("the partition's transactional producer has not started; still waiting for its coordinator",
					"transactional_id", txnID, "waited", time.Since(began).Round(time.Millisecond))
			}
		}
		err := r.err
		var config sarama.ConfigurationError
		switch {
		case err == nil:
			return newPartitionLoop(p, sess, claim, txnID, log, r.prod, pc), nil
		case isFenced(err):
			return nil, fmt.Errorf("%w: %s: %w", ErrFenced, txnID, err)
		case errors.As(err, &config):
			return nil, fmt.Errorf("eos: start transactional producer %s: %w", txnID, err)
		case errors.Is(err, sarama.ErrInvalidTransactionTimeout):
			return nil, fmt.Errorf("eos: start transactional producer %s: TransactionTimeout %s is over the broker's transaction.max.timeout.ms: %w",
				txnID, p.cfg.TransactionTimeout, err)
		}
		wait := retry.NextBackOff()
		log.Warn("cannot start the partition's transactional producer; retrying", "retry_in", wait,
			"err", fmt.Errorf("eos: start transactional producer %s: %w", txnID, err))
		select {
		case <-sess.Context().Done():
			return nil, nil
		case <-time.After(wait):
		}
	}
}
