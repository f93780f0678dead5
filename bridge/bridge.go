package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagabridge/sagabridge/dlq"
)

// Deps are the bridge's connections to the outside world. The bridge does
// not close them.
type Deps struct {
	// Temporal receives the events. Required.
	Temporal Temporal
	// DeadLetters receives records that cannot be delivered. Required.
	DeadLetters DeadLetters
	// Logger receives structured logs. Optional, default slog.Default().
	Logger *slog.Logger
	// Now tells the time. Optional, default time.Now.
	Now func() time.Time
	// TracerProvider receives a span per delivery to a workflow, continuing
	// the W3C trace context of the records (see TracingInterceptor for the
	// Temporal side). Optional, default no tracing.
	TracerProvider trace.TracerProvider
}

// Stats counts what the bridge has done since it started.
type Stats struct {
	// Delivered counts records Temporal accepted.
	Delivered uint64
	// DeadLettered counts records written to the DLQ.
	DeadLettered uint64
	// ClosedRedeliveries counts records skipped because the closed workflow
	// they target had already applied them.
	ClosedRedeliveries uint64
	// Retries counts Temporal calls retried after a retryable error.
	Retries uint64
	// Calls counts SignalWithStart calls Temporal accepted; Delivered/Calls
	// is how many records each call carried on average.
	Calls uint64
	// DroppedClosed counts new records for closed workflows dropped under
	// the "drop" policy.
	DroppedClosed uint64
}

// Bridge consumes the routed topics and delivers every record to the
// workflow that owns it. Create it with New and run it with Run.
type Bridge struct {
	cfg    Config
	router *Router
	deps   Deps
	log    *slog.Logger
	tracer trace.Tracer
	// tracing is false with a no-op TracerProvider: deliveries then skip
	// reading trace context from every record.
	tracing bool

	dispatcher *dispatcher
	pressure   *pressure
	limiter    *limiter
	breaker    *gobreaker.CircuitBreaker[struct{}]
	metrics    *metrics
	running    atomic.Bool // Run is running
	// lastRetryWarn is when a failed call was last logged at warn level (Unix ns).
	lastRetryWarn atomic.Int64
	// newest reads a partition's log-end offset, so lag stays true while
	// the partition is paused and not fetching; nil without a Kafka client.
	newest func(topic string, partition int32) (int64, error)
	joined atomic.Bool // a consumer group session has started

	delivered, deadLettered, closedRedeliveries, retries, calls, droppedClosed atomic.Uint64
}

// New checks cfg and deps and returns a bridge ready to Run.
func New(cfg Config, deps Deps) (*Bridge, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bridge config: %w", err)
	}
	if deps.Temporal == nil {
		return nil, errors.New("bridge: Deps.Temporal is required")
	}
	if deps.DeadLetters == nil {
		return nil, errors.New("bridge: Deps.DeadLetters is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	router, err := NewRouter(cfg.Routes, cfg.DLQ.Suffix)
	if err != nil {
		return nil, fmt.Errorf("bridge routes: %w", err)
	}
	if deps.TracerProvider == nil {
		deps.TracerProvider = noop.NewTracerProvider()
	}
	_, off := deps.TracerProvider.(noop.TracerProvider)
	b := &Bridge{cfg: cfg, router: router, deps: deps, log: deps.Logger,
		tracer: deps.TracerProvider.Tracer("sagabridge/bridge"), tracing: !off}
	if cfg.Kafka.TLS.InsecureSkipVerify {
		b.log.Warn("kafka.tls.insecure_skip_verify is on: the brokers' certificates are NOT verified, so anyone on the path can read and change the traffic; never use it in production")
	}
	b.dispatcher = newDispatcher(b)
	topicQueues := map[string][]string{}
	for _, r := range cfg.Routes {
		if !slices.Contains(topicQueues[r.Topic], r.TaskQueue) {
			topicQueues[r.Topic] = append(topicQueues[r.Topic], r.TaskQueue)
		}
	}
	bp := cfg.Backpressure
	b.pressure = newPressure(bp, topicQueues, b.log)
	b.limiter = newLimiter(bp.Adaptive.MinConcurrency, cfg.Dispatch.Concurrency, bp.Adaptive.LatencyTarget, deps.Now)
	b.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "temporal",
		MaxRequests: 1, // one probe call when half-open
		Timeout:     bp.Circuit.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(bp.Circuit.Failures) },
		// Only errors that say Temporal is unwell count; a rejected request
		// or a closed workflow means Temporal answered.
		IsSuccessful: func(err error) bool { return err == nil || classify(err) != kindRetryable },
		IsExcluded:   cancelled,
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				b.log.Warn("circuit to Temporal opened: pausing all partitions", "reason", ReasonCircuitOpen,
					"from", from.String(), "open_for", bp.Circuit.OpenFor)
			case gobreaker.StateHalfOpen:
				b.log.Info("circuit to Temporal half-open: probing with one call")
			default:
				b.log.Info("circuit to Temporal closed", "from", from.String())
			}
			b.pressure.setCircuitOpen(to == gobreaker.StateOpen)
		},
	})
	b.metrics = newMetrics(b)
	return b, nil
}

// Stats returns the counters so far. Safe for concurrent use.
func (b *Bridge) Stats() Stats {
	return Stats{
		Delivered: b.delivered.Load(), DeadLettered: b.deadLettered.Load(),
		ClosedRedeliveries: b.closedRedeliveries.Load(), Retries: b.retries.Load(),
		Calls: b.calls.Load(), DroppedClosed: b.droppedClosed.Load(),
	}
}

// Run joins the consumer group and delivers records until ctx is done. It
// then stops fetching, lets in-flight calls finish within
// Dispatch.DrainTimeout, commits what was delivered and leaves the group.
// Run once per Bridge.
func (b *Bridge) Run(ctx context.Context) error {
	sc, err := SaramaConfig(b.cfg.Kafka)
	if err != nil {
		return err
	}
	if b.cfg.DLQ.Transactional {
		// Offsets move only in the partitions' transactions, and eager
		// rebalancing starts a new session (with a new generation for
		// KIP-447 fencing) at every rebalance.
		sc.Consumer.Offsets.AutoCommit.Enable = false
		sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	}
	client, err := sarama.NewClient(b.cfg.Kafka.Brokers, sc)
	if err != nil {
		return b.cfg.Kafka.ConnectError(err)
	}
	defer client.Close()
	group, err := sarama.NewConsumerGroupFromClient(b.cfg.Kafka.Group, client)
	if err != nil {
		return fmt.Errorf("join consumer group %q: %w", b.cfg.Kafka.Group, err)
	}
	b.newest = func(topic string, partition int32) (int64, error) {
		return client.GetOffset(topic, partition, sarama.OffsetNewest)
	}
	return b.runGroup(ctx, group)
}

// runGroup runs group until ctx is done and closes it. Shutdown order:
// stop the sessions (each partition abandons queued work and drains calls
// under way), commit and leave the group, then stop the dispatch workers.
func (b *Bridge) runGroup(ctx context.Context, group sarama.ConsumerGroup) error {
	b.running.Store(true)
	defer b.running.Store(false)
	b.pressure.setPauser(group)
	b.dispatcher.start(b.cfg.Dispatch.Concurrency)
	defer b.dispatcher.stop()
	wctx, stopWatching := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	defer watchers.Wait()
	defer stopWatching()
	if !b.cfg.Backpressure.Backlog.Disabled {
		watchers.Go(func() { b.pressure.watchBacklogs(wctx, b.deps.Temporal) })
	}
	watchers.Go(func() { b.watchCircuit(wctx) })
	if b.newest != nil {
		watchers.Go(func() { b.watchLogEnds(wctx) })
	}
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range group.Errors() {
			b.log.Warn("consumer group error", "group", b.cfg.Kafka.Group, "err", err)
		}
	}()
	topics := b.router.Topics()
	b.log.Info("bridge started", "group", b.cfg.Kafka.Group, "topics", topics)
	handler := claimHandler{b: b}
	retry := backoff.NewExponentialBackOff()
	retry.MaxInterval = 5 * time.Second
	for {
		err := group.Consume(ctx, topics, handler)
		if ctx.Err() != nil || errors.Is(err, sarama.ErrClosedConsumerGroup) {
			break
		}
		if err == nil { // a rebalance ended the session; join the next one
			retry.Reset()
			continue
		}
		wait := retry.NextBackOff()
		b.log.Warn("consumer group session failed; rejoining", "group", b.cfg.Kafka.Group, "err", err, "retry_in", wait)
		if sleep(ctx, wait) != nil {
			break
		}
	}
	err := group.Close()
	<-errsDone
	st := b.Stats()
	b.log.Info("bridge stopped; left the group", "group", b.cfg.Kafka.Group,
		"delivered", st.Delivered, "calls", st.Calls, "dead_lettered", st.DeadLettered,
		"closed_redeliveries", st.ClosedRedeliveries, "dropped_closed", st.DroppedClosed)
	if err != nil {
		return fmt.Errorf("leave consumer group %q: %w", b.cfg.Kafka.Group, err)
	}
	return nil
}

// watchCircuit reads the breaker's state now and then, so an open circuit
// turns half-open (and partitions resume) even when no call is waiting.
func (b *Bridge) watchCircuit(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.breaker.State()
		}
	}
}

// watchLogEnds refreshes each claimed partition's log-end offset every
// few seconds: sarama learns it only from fetches, and a paused partition
// does not fetch.
func (b *Bridge) watchLogEnds(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, f := range b.pressure.claimed() {
				if end, err := b.newest(f.topic, f.partition); err == nil {
					f.logEnd.Store(end)
				}
			}
		}
	}
}

// claimHandler delivers each claimed partition in offset order.
type claimHandler struct{ b *Bridge }

// Setup logs the new assignment.
func (h claimHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.b.log.Info("partitions assigned", "generation", s.GenerationID(), "claims", s.Claims())
	h.b.joined.Store(true)
	return nil
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
	f, err := h.b.newFlow(s, claim)
	if err != nil {
		log.Error("cannot consume the partition", "err", err)
		return err
	}
	h.b.consume(f, claim.Messages())
	log.Info("partition released", "generation", s.GenerationID(), "abandoned_records", f.tracker.pending())
	return nil
}

// deadLetter writes fail to the DLQ for partition fl, retrying until the
// DLQ holds it or the partition's context ends. With dlq.transactional it
// queues fail for the transaction that commits the offset past it.
func (b *Bridge) deadLetter(fl *flow, f dlq.Failure) error {
	if fl.committer != nil {
		fl.committer.enqueue(f)
		return nil
	}
	ctx := fl.ctx
	retry := b.newBackoff()
	for {
		err := b.deps.DeadLetters.Write(ctx, f)
		if err == nil {
			b.committedDeadLetters([]dlq.Failure{f})
			return nil
		}
		b.log.Error("DLQ write failed; retrying", "topic", f.Topic, "partition", f.Partition, "offset", f.Offset, "err", err)
		if err := sleep(ctx, retry.NextBackOff()); err != nil {
			return fmt.Errorf("dead-lettering %s/%d@%d: %w", f.Topic, f.Partition, f.Offset, err)
		}
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

func (b *Bridge) newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = b.cfg.Dispatch.RetryInitial
	bo.MaxInterval = b.cfg.Dispatch.RetryMax
	return bo
}

// drainContext returns a context that outlives ctx by grace: calls already
// under way when shutdown begins may finish, but not forever.
func drainContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return dctx, func() { stop(); cancel() }
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
