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
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/connect"
)

// Deps are the bridge's connections to the outside world. The bridge does
// not close them.
type Deps struct {
	// Temporal receives the events. Required.
	Temporal Temporal
	// DeadLetters receives records that cannot be delivered. Required.
	DeadLetters DeadLetters
	// Logger receives structured logs; with log.redact_keys, through
	// RedactKeys. Optional, default slog.Default().
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
	// ClosedWithoutMemo counts records for closed workflows that recorded
	// no watermarks (terminated, or not an entity workflow): they cannot be
	// told from redeliveries and follow dispatch.on_closed_workflow as new.
	ClosedWithoutMemo uint64
	// CommitFailures counts transactional offset commits that failed and
	// were retried (dlq.transactional).
	CommitFailures uint64
	// WindowWaits counts calls held back until their workflow had applied
	// enough of what it was sent (dispatch.workflow_window_*).
	WindowWaits uint64
}

// Bridge consumes the routed topics and delivers every record to the
// workflow that owns it. Create it with New and run it with Run.
type Bridge struct {
	cfg    config.Config
	router *Router
	deps   Deps
	log    *slog.Logger
	tracer trace.Tracer
	// tracing is false with a no-op TracerProvider: deliveries then skip
	// reading trace context from every record.
	tracing bool

	dispatcher *dispatcher
	windows    *windows // what each workflow was sent and not seen applied
	// asks bounds the questions of held calls in flight (windowRoom) to
	// dispatch.concurrency, as when each held call asked from its worker.
	asks chan struct{}
	// coalescers are the dispatch windows of the routed task queues (one
	// each); otherCoalescer serves a task queue no route names (none in
	// practice: a target takes its route's task queue, as circuits'
	// fallback) and, unwatched, stays closed.
	coalescers     map[string]*coalescer
	otherCoalescer *coalescer
	pressure       *pressure
	limiter        *limiter
	// circuits are the breakers around calls to each route target; fallback
	// serves a target no route names (none in practice).
	circuits map[circuitKey]*circuit
	fallback *circuit
	metrics  *metrics
	running  atomic.Bool // Run is running
	ran      atomic.Bool // Run was called
	// lastRetryWarn is when a failed call was last logged at warn level (Unix ns).
	lastRetryWarn atomic.Int64
	// newest reads a partition's log-end offset, so lag stays true while
	// the partition is paused and not fetching; nil without a Kafka client.
	newest func(topic string, partition int32) (int64, error)
	// client reads the group's committed offsets; nil without Kafka (tests).
	client sarama.Client
	// topicIDs are the claimed topics' Kafka IDs (topicid.go).
	topicIDs topicIDs
	joined   atomic.Bool // a consumer group session has started, and has not ended since
	// sessionErr says why the last consumer group session failed; nil
	// once one starts.
	sessionErr atomic.Pointer[string]
	// txnStarters holds a *connect.TxnStarter per transactional ID, for
	// the bridge's life: a start given up on in one claim is waited for by
	// the next claim of that partition, whose producer it would otherwise
	// fence when its InitProducerId is answered late.
	txnStarters sync.Map
	// claimFailures holds, by "topic/partition", why a claimed partition
	// cannot be consumed yet (retryClaim).
	claimFailures sync.Map
	// stuckCommits holds, by *flow, the error of the last transactional
	// commit of a partition whose commits fail (txnCommitter.stuck).
	stuckCommits sync.Map
	group        groupView     // the group's committed offsets, as last read
	marked       markedOffsets // where the current session marked each partition (finalcommit.go)

	delivered, deadLettered, closedRedeliveries, retries, calls, droppedClosed, closedWithoutMemo atomic.Uint64
	commitFailures, dlqFailures, reducedDeadLetters, windowWaits                                  atomic.Uint64
}

// New checks cfg, deps and opts and returns a bridge ready to Run.
func New(cfg config.Config, deps Deps, opts ...Option) (*Bridge, error) {
	if !cfg.Defaulted() {
		cfg = cfg.WithDefaults()
	}
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
	if cfg.Log.RedactKeys {
		deps.Logger = slog.New(RedactKeys(deps.Logger.Handler()))
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	router, err := NewRouter(cfg.Routes, cfg.DLQ.Suffix)
	if err != nil {
		return nil, fmt.Errorf("bridge routes: %w", err)
	}
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := router.setFuncs(o); err != nil {
		return nil, fmt.Errorf("bridge options: %w", err)
	}
	if deps.TracerProvider == nil {
		deps.TracerProvider = noop.NewTracerProvider()
	}
	_, off := deps.TracerProvider.(noop.TracerProvider)
	b := &Bridge{cfg: cfg, router: router, deps: deps, log: deps.Logger,
		tracer: deps.TracerProvider.Tracer("sagabridge/bridge"), tracing: !off}
	if cfg.Kafka.TLS.InsecureSkipVerify {
		b.log.Warn(connect.InsecureKafka)
	}
	for i, r := range cfg.Routes {
		if r.TypeHeader == "" && r.TypeField == "" {
			b.log.Warn(fmt.Sprintf("routes[%d] (topic %s) has no type_header or type_field: every record's event type is empty, so a workflows.Entity's On handlers match none of them and reject every record; set one, unless the workflow reads records without types", i, r.Topic))
		}
	}
	b.dispatcher = newDispatcher(b)
	b.windows = newWindows(cfg.Dispatch.WorkflowWindowRecords, cfg.Dispatch.WorkflowWindowBytes, b.deps.Now)
	b.asks = make(chan struct{}, cfg.Dispatch.Concurrency)
	b.coalescers = map[string]*coalescer{}
	for _, r := range cfg.Routes {
		if b.coalescers[r.TaskQueue] == nil {
			b.coalescers[r.TaskQueue] = newCoalescer(cfg.Dispatch.Coalesce, b.log.With("task_queue", r.TaskQueue))
		}
	}
	b.otherCoalescer = newCoalescer(cfg.Dispatch.Coalesce, b.log)
	topicQueues := map[string][]string{}
	topicCircuits := map[string][]circuitKey{}
	for _, r := range cfg.Routes {
		if !slices.Contains(topicQueues[r.Topic], r.TaskQueue) {
			topicQueues[r.Topic] = append(topicQueues[r.Topic], r.TaskQueue)
			topicCircuits[r.Topic] = append(topicCircuits[r.Topic], circuitKey{cfg.Temporal.Namespace, r.TaskQueue})
		}
	}
	bp := cfg.Backpressure
	b.pressure = newPressure(bp, topicQueues, topicCircuits, b.log)
	b.limiter = newLimiter(bp.Adaptive.MinConcurrency, cfg.Dispatch.Concurrency, bp.Adaptive.LatencyTarget, deps.Now)
	b.circuits = b.newCircuits()
	b.fallback = b.newCircuit(circuitKey{cfg.Temporal.Namespace, ""})
	b.metrics = newMetrics(b)
	return b, nil
}

// Stats returns the counters so far. Safe for concurrent use.
func (b *Bridge) Stats() Stats {
	return Stats{
		Delivered: b.delivered.Load(), DeadLettered: b.deadLettered.Load(),
		ClosedRedeliveries: b.closedRedeliveries.Load(), Retries: b.retries.Load(),
		Calls: b.calls.Load(), DroppedClosed: b.droppedClosed.Load(), CommitFailures: b.commitFailures.Load(),
		WindowWaits: b.windowWaits.Load(), ClosedWithoutMemo: b.closedWithoutMemo.Load(),
	}
}

// Run joins the consumer group and delivers records until ctx is done. It
// then stops fetching, lets in-flight calls finish within
// Dispatch.DrainTimeout, commits what was delivered and leaves the group.
// Run once per Bridge: a second call returns ErrAlreadyRun.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	if err := b.checkSearchAttributes(ctx); err != nil {
		return err
	}
	defer b.txnStarters.Range(func(_, s any) bool {
		s.(*connect.TxnStarter).Close()
		return true
	})
	sc, err := connect.SaramaConfig(b.cfg.Kafka)
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
	client, err := connect.Client(ctx, b.cfg.Kafka, sc)
	if err != nil {
		return err
	}
	defer client.Close()
	if err := b.checkTopics(client); err != nil {
		return err
	}
	group, err := sarama.NewConsumerGroupFromClient(b.cfg.Kafka.Group, client)
	if err != nil {
		return fmt.Errorf("join consumer group %q: %w", b.cfg.Kafka.Group, err)
	}
	b.client = client
	b.topicIDs.lookup = metadataTopicIDs(client)
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
	watchers.Go(func() { b.watchCircuits(wctx) })
	if r, ok := b.deps.Temporal.(WorkflowTaskLagReader); ok && b.cfg.Dispatch.Coalesce.MaxWindow > 0 {
		for q, c := range b.coalescers {
			watchers.Go(func() { c.watchLag(wctx, r, b.deps.Now, func() time.Duration { return b.pressure.backlogAge(q) }) })
		}
	}
	if b.newest != nil {
		watchers.Go(func() { b.watchLogEnds(wctx) })
	}
	if b.client != nil {
		watchers.Go(func() { b.watchGroupOffsets(wctx, b.client) })
	}
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range group.Errors() {
			b.log.Warn("consumer group error", "group", b.cfg.Kafka.Group, "err", err)
		}
	}()
	b.checkAccess(ctx)
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
		if err == nil {
			// A rebalance ended the session, or (cooperative) its
			// heartbeats failed and sarama ended it: out of the group
			// until the next session starts, however long joining takes.
			b.joined.Store(false)
			retry.Reset()
			continue
		}
		// Not in the group until a session starts again: /readyz says so.
		why := err.Error()
		b.sessionErr.Store(&why)
		b.joined.Store(false)
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
		err = fmt.Errorf("leave consumer group %q: %w", b.cfg.Kafka.Group, err)
	}
	if b.client != nil { // also when leaving failed: sarama's Close may report the commit's failure as its own
		if cerr := b.checkFinalCommit(b.client); cerr != nil {
			b.log.Error("the final offset commit did not reach Kafka", "group", b.cfg.Kafka.Group, "err", cerr)
			err = errors.Join(cerr, err)
		}
	}
	return err
}

// watchLogEnds refreshes each claimed partition's log-end offset every
// few seconds: sarama learns it only from fetches, and a paused partition
// does not fetch.
func (b *Bridge) watchLogEnds(ctx context.Context) {
	every(ctx, 2*time.Second, b.readLogEnds)
}

// readLogEnds reads each claimed partition's log-end offset and, for a
// partition at rest short of it, whether anything is left to deliver
// (flow.settle); and the claimed topics' IDs, ending the claims of one
// whose ID changed (topicGone): deleted and created again under them.
// (sarama's partition consumer retries a fetch that finds the topic
// gone in silence, every Consumer.Retry.Backoff, and reads on at its
// offset once the topic is back.)
func (b *Bridge) readLogEnds() {
	claimed := b.pressure.claimed()
	if b.client != nil {
		b.checkClaimedTopicIDs(claimed)
	}
	for _, f := range claimed {
		if end, err := b.newest(f.topic, f.partition); err == nil {
			f.logEnd.Store(end)
			if b.client != nil {
				f.settle(b.client, end)
			}
		}
	}
}

// every calls f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
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
