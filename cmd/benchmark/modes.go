package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/bridge/temporalsdk"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
	"github.com/sagabridge/sagabridge/sagaworker"
)

// harness holds what every mode shares: the broker, and the Temporal
// server and client of the mode that runs now.
type harness struct {
	o           options
	kafka       *devstack.Kafka
	temporalLog io.Writer
	sdkLog      sdklog.Logger
	temporal    *devstack.Temporal
	tc          client.Client
	log         *slog.Logger
	runs        int
}

// onFreshTemporal runs fn against a Temporal dev server started for it, so
// that no mode inherits the histories and tasks another left behind.
func (h *harness) onFreshTemporal(ctx context.Context, fn func() error) error {
	// Shorter long polls bound a dev server stall (devstack.BoundedLongPolls),
	// for every mode alike.
	opts := devstack.TemporalOptions{Output: h.temporalLog,
		DynamicConfig: append([]string{devstack.BoundedLongPolls}, h.o.dynamicConfig...)}
	t, err := devstack.StartTemporal(ctx, opts)
	if err != nil {
		return err
	}
	defer t.Close()
	// The clients connect as cmd/bridge and cmd/worker would with this
	// -grpc-compression.
	copts, err := connect.ClientOptions(config.Temporal{Address: t.Address, GRPCCompression: h.o.grpcCompression}, h.sdkLog)
	if err != nil {
		return err
	}
	if h.o.rpcCounts {
		rpcs := &rpcCounter{}
		copts.ConnectionOptions.DialOptions = append(copts.ConnectionOptions.DialOptions, grpc.WithChainUnaryInterceptor(rpcs.intercept))
		defer rpcs.print()
	}
	tc, err := client.Dial(copts)
	if err != nil {
		return err
	}
	defer tc.Close()
	h.temporal, h.tc = t, tc
	defer func() { h.temporal, h.tc = nil, nil }()
	return fn()
}

// rpcCounter counts the Temporal calls of one run by method (-rpc-counts):
// the engine's, the clients', the worker's and the harness's alike.
type rpcCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// intercept is a gRPC unary client interceptor that counts each call.
func (c *rpcCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[method[strings.LastIndexByte(method, '/')+1:]]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

// print writes the counts, most frequent first.
func (c *rpcCounter) print() {
	c.mu.Lock()
	defer c.mu.Unlock()
	methods := slices.SortedFunc(maps.Keys(c.n), func(a, b string) int { return cmp.Or(c.n[b]-c.n[a], strings.Compare(a, b)) })
	var sb strings.Builder
	for _, m := range methods {
		fmt.Fprintf(&sb, " %s=%d", m, c.n[m])
	}
	fmt.Printf("    Temporal calls:%s\n", sb.String())
}

// fresh names a topic, task queue and key prefix no earlier run used.
func (h *harness) fresh(mode string, w workload) string {
	h.runs++
	return fmt.Sprintf("%s-%s-%d", mode, w.name, h.runs)
}

// startWorker runs a ledger worker on tq with the workflow-task pollers
// of -workflow-poller-behavior (workerOptions) and the sticky timeout of
// -sticky-timeout.
func (h *harness) startWorker(tq string) (stop func(), err error) {
	opts := workerOptions(h.o.pollerBehavior)
	opts.StickyScheduleToStartTimeout = h.o.stickyTimeout
	w := worker.New(h.tc, tq, opts)
	ledger.Register(w, ledger.Options{})
	if err := w.Start(); err != nil {
		return nil, err
	}
	return w.Stop, nil
}

// workerOptions returns the options of a benchmark worker: cmd/worker's
// workflow-task pollers (up to 16, autoscaled) for sagaworker.PollerAutoscale,
// 16 fixed ones for sagaworker.PollerFixed. Autoscaling keeps normal and
// sticky pollers apart; fixed pollers poll only the sticky queue while it
// reports a backlog, so under load the first task of a run (a new saga, or
// a hot entity's run after ContinueAsNew) waits on the normal queue for
// seconds.
func workerOptions(pollerBehavior string) worker.Options {
	if pollerBehavior == sagaworker.PollerFixed {
		return worker.Options{MaxConcurrentWorkflowTaskPollers: sagaworker.DefaultWorkflowPollers}
	}
	return worker.Options{WorkflowTaskPollerBehavior: sagaworker.AutoscaledPollers(sagaworker.DefaultWorkflowPollers)}
}

// completed counts the ledgers on tq that have completed (-1 on error).
func (h *harness) completed(ctx context.Context, tq string) int64 {
	q := fmt.Sprintf(`TaskQueue=%q AND ExecutionStatus="Completed"`, tq)
	resp, err := h.tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
	if err != nil {
		return -1
	}
	return resp.GetCount()
}

// waitCompleted polls visibility until n ledgers on tq have completed.
func (h *harness) waitCompleted(ctx context.Context, tq string, n int) error {
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		if h.completed(ctx, tq) >= int64(n) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("ledgers on %s did not all complete", tq)
}

// produce creates topic and writes recs to it.
func (h *harness) produce(topic string, recs []ledger.Record) error {
	if err := h.kafka.Cluster.CreateTopic(topic, int32(h.o.partitions), nil); err != nil {
		return err
	}
	p, err := sarama.NewSyncProducer(h.kafka.Brokers, saga.ProducerConfig())
	if err != nil {
		return err
	}
	defer p.Close()
	_, err = ledger.Produce(p, topic, recs)
	return err
}

// ceiling sends each key's events pre-batched straight to Temporal, one
// call in flight per key and Concurrency calls in all.
func (h *harness) ceiling(ctx context.Context, w workload) (result, error) {
	name := h.fresh("ceiling", w)
	recs := ledger.Stream(name+"-", w.keys, h.o.events, h.o.zipf, 1)
	keys := ledger.Keys(recs)
	byKey := map[string][]event.Envelope{}
	var order []string
	for i, r := range recs {
		if _, ok := byKey[r.Key]; !ok {
			order = append(order, r.Key)
		}
		byKey[r.Key] = append(byKey[r.Key], event.Envelope{Topic: name, Offset: int64(i), Key: r.Key, Value: json.RawMessage(r.Value), Timestamp: time.Now()})
	}
	stop, err := h.startWorker(name)
	if err != nil {
		return result{}, err
	}
	defer stop()
	start := time.Now()
	var calls atomic.Int64
	sem := make(chan struct{}, h.o.concurrency)
	var wg sync.WaitGroup
	var (
		firstErr error // the first call's error; an atomic.Value panicked at a second error of another type
		errOnce  sync.Once
	)
	for _, k := range order {
		evs := byKey[k]
		wg.Go(func() {
			for chunk := range slices.Chunk(evs, 500) {
				sem <- struct{}{}
				_, err := h.tc.SignalWithStartWorkflow(ctx, "ledger-"+k, event.DefaultSignal, event.Batch{Events: chunk},
					client.StartWorkflowOptions{ID: "ledger-" + k, TaskQueue: name}, ledger.WorkflowType)
				<-sem
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				calls.Add(1)
			}
		})
	}
	wg.Wait()
	accepted := time.Since(start)
	if firstErr != nil {
		return result{}, firstErr
	}
	if err := h.waitCompleted(ctx, name, len(keys)); err != nil {
		return result{}, err
	}
	return result{mode: "ceiling", events: len(recs), calls: int(calls.Load()), elapsed: time.Since(start), accepted: accepted}, nil
}

// backlog produces a backlog of events records for mode on a fresh topic
// (and task queue) named after it, and starts a worker for it; stop stops
// the worker.
func (h *harness) backlog(mode string, w workload, events int) (name string, recs []ledger.Record, stop func(), err error) {
	name = h.fresh(mode, w)
	recs = ledger.Stream(name+"-", w.keys, events, h.o.zipf, 1)
	if err := h.produce(name, recs); err != nil {
		return "", nil, nil, err
	}
	stop, err = h.startWorker(name)
	if err != nil {
		return "", nil, nil, err
	}
	return name, recs, stop, nil
}

// engine produces a backlog and times the bridge draining it.
func (h *harness) engine(ctx context.Context, w workload) (result, error) {
	name, recs, stop, err := h.backlog("engine", w, h.o.events)
	if err != nil {
		return result{}, err
	}
	defer stop()
	start := time.Now()
	b, done, err := h.runBridge(ctx, name)
	if err != nil {
		return result{}, err
	}
	var accepted atomic.Int64 // nanoseconds until Temporal accepted every event
	actx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for actx.Err() == nil && b.Stats().Delivered < uint64(len(recs)) {
			time.Sleep(10 * time.Millisecond)
		}
		accepted.Store(int64(time.Since(start)))
	}()
	if h.o.trace {
		// The tracer is waited for: it must not ask the Temporal client
		// after the run has torn it down.
		tctx, cancel := context.WithCancel(ctx)
		traced := make(chan struct{})
		defer func() { cancel(); <-traced }()
		go func() {
			defer close(traced)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-tctx.Done():
					return
				case <-tick.C:
				}
				st := b.Stats()
				fmt.Printf("    t=%4.1fs delivered=%d calls=%d retries=%d completed=%d\n", time.Since(start).Seconds(), st.Delivered, st.Calls, st.Retries, h.completed(tctx, name))
			}
		}()
	}
	werr := h.waitCompleted(ctx, name, len(ledger.Keys(recs)))
	elapsed := time.Since(start)
	if err := done(); err != nil {
		return result{}, err
	}
	if werr != nil {
		return result{}, werr
	}
	stopWatch()
	<-watched
	return result{mode: "engine", events: len(recs), calls: int(b.Stats().Calls), elapsed: elapsed, accepted: time.Duration(accepted.Load())}, nil
}

// runBridge starts a bridge on topic, routing to ledgers on task queue topic.
func (h *harness) runBridge(ctx context.Context, topic string) (*bridge.Bridge, func() error, error) {
	dlqTopic := dlq.TopicFor(topic, dlq.DefaultSuffix)
	if err := h.kafka.Cluster.CreateTopic(dlqTopic, 1, nil); err != nil {
		return nil, nil, err
	}
	cfg := config.Config{
		Kafka:    config.Kafka{Brokers: h.kafka.Brokers, Group: topic},
		Temporal: config.Temporal{Address: h.temporal.Address},
		Batch:    config.Batch{MaxRecords: h.o.batch, MaxInFlight: h.o.window},
		Dispatch: config.Dispatch{Concurrency: h.o.concurrency, MaxCallBytes: h.o.callBytes, WorkflowWindowRecords: h.o.workflowWindow,
			BatchFormat: h.o.batchFormat},
		Backpressure: config.Backpressure{MaxRecords: h.o.budget, MaxBytes: cmp.Or(h.o.budgetBytes, 300*h.o.budget),
			Backlog: config.Backlog{HighAge: h.o.backlogAge}},
		Routes: []config.Route{{Topic: topic, WorkflowType: ledger.WorkflowType, WorkflowID: "ledger-{key}", TaskQueue: topic}},
	}.WithDefaults()
	if h.o.coalesceMax >= 0 {
		cfg.Dispatch.Coalesce.MaxWindow = h.o.coalesceMax
	}
	pc, err := connect.DLQProducerConfig(config.Kafka{Version: "3.6.0", ClientID: "bench"}, 0)
	if err != nil {
		return nil, nil, err
	}
	dp, err := sarama.NewSyncProducer(h.kafka.Brokers, pc)
	if err != nil {
		return nil, nil, err
	}
	b, err := bridge.New(cfg, bridge.Deps{Temporal: temporalsdk.Client{Client: h.tc},
		DeadLetters: dlq.ProducerWriter{Producer: dp, Suffix: dlq.DefaultSuffix}, Logger: h.log})
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- b.Run(rctx) }()
	return b, func() error { cancel(); err := <-errc; _ = dp.Close(); return err }, nil
}

// naive consumes with one SignalWithStart per record, in offset order per
// partition, marking each after Temporal accepted it.
func (h *harness) naive(ctx context.Context, w workload) (result, error) {
	name, recs, stop, err := h.backlog("naive", w, h.o.naiveEvents)
	if err != nil {
		return result{}, err
	}
	defer stop()
	sc, err := connect.SaramaConfig(config.Kafka{Version: "3.6.0", ClientID: "naive", InitialOffset: "oldest"})
	if err != nil {
		return result{}, err
	}
	group, err := sarama.NewConsumerGroup(h.kafka.Brokers, name, sc)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for gctx.Err() == nil {
			_ = group.Consume(gctx, []string{name}, naiveHandler{tc: h.tc, tq: name})
		}
	}()
	werr := h.waitCompleted(ctx, name, len(ledger.Keys(recs)))
	elapsed := time.Since(start)
	cancel()
	<-done
	_ = group.Close()
	if werr != nil {
		return result{}, werr
	}
	return result{mode: "naive", events: len(recs), calls: len(recs), elapsed: elapsed}, nil
}

type naiveHandler struct {
	tc client.Client
	tq string
}

func (naiveHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (naiveHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (n naiveHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		env := event.Envelope{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), Value: json.RawMessage(m.Value), Timestamp: m.Timestamp}
		id := "ledger-" + string(m.Key)
		for {
			_, err := n.tc.SignalWithStartWorkflow(s.Context(), id, event.DefaultSignal, event.Batch{Events: []event.Envelope{env}},
				client.StartWorkflowOptions{ID: id, TaskQueue: n.tq}, ledger.WorkflowType)
			if err == nil {
				break
			}
			if s.Context().Err() != nil {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		s.MarkMessage(m, "")
	}
	return nil
}
