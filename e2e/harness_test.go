package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/bridge/temporalsdk"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/examples/trip"
	"github.com/sagabridge/sagabridge/internal/committed"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
	"github.com/sagabridge/sagabridge/sagaworker"
)

// stack is shared by every test of the package; each test uses its own
// topics, task queue, consumer group and workflow IDs.
var stack *devstack.Stack

// bridgeBin is cmd/bridge, built once for the tests that run it as a process.
var bridgeBin string

func TestMain(m *testing.M) {
	if removed := devstack.Hermetic(); len(removed) > 0 {
		fmt.Fprintln(os.Stderr, "e2e: ignoring from the environment:", strings.Join(removed, ", "))
	}
	os.Exit(runTests(m))
}

// runTests builds the bridge, starts the stack and runs the tests. Its
// deferred cleanups run when the tests end or the set-up fails, and an
// interrupt (Ctrl-C, SIGTERM) stops the stack and removes the temporary
// binaries before the process exits (the 54 MB of race-built binaries
// piled up in the temporary directory). A -timeout or a test's panic ends
// the process from the test's goroutine, past those defers: the next run
// removes what such a run left (binDirPrefix, its process ID gone).
func runTests(m *testing.M) int {
	logFile, err := os.CreateTemp("", "sagabridge-e2e-temporal-*.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	code := 1
	defer func() {
		_ = logFile.Close()
		if code == 0 {
			_ = os.Remove(logFile.Name())
		} else {
			fmt.Fprintln(os.Stderr, "e2e: Temporal dev server log kept at", logFile.Name())
		}
	}()
	removeStaleBinDirs()
	binDir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(binDir) }()
	var started atomic.Pointer[devstack.Stack]
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(interrupted)
	go func() {
		sig := <-interrupted
		fmt.Fprintln(os.Stderr, "e2e:", sig, "- stopping the dev stack and removing", binDir)
		if s := started.Load(); s != nil {
			s.Close()
		}
		_ = os.RemoveAll(binDir)
		os.Exit(1)
	}()
	bridgeBin = filepath.Join(binDir, "bridge")
	if out, err := exec.Command("go", "build", "-race", "-o", bridgeBin, "../cmd/bridge").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build cmd/bridge: %v\n%s", err, out)
		return 1
	}
	stack, err = devstack.Start(context.Background(), devstack.Options{
		Topics: []string{saga.OutcomeTopic}, Partitions: 4,
		Temporal: devstack.TemporalOptions{Output: logFile, SearchAttributes: []string{saga.StatusSearchAttribute + "=Keyword"},
			DynamicConfig: []string{devstack.BoundedLongPolls}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start the dev stack:", err)
		return 1
	}
	started.Store(stack)
	defer stack.Close()
	code = m.Run()
	return code
}

// env is one test's private slice of the stack.
type env struct {
	t           *testing.T
	id          string // unique prefix for order IDs
	topic       string // order events
	ledgerTopic string // ledger records
	taskQueue   string
	temporal    string // the Temporal frontend's address
	tc          client.Client
	acts        *saga.Activities
	trips       *trip.Services
	outcomes    sarama.SyncProducer
	worker      worker.Worker // nil while stopped
	producer    sarama.SyncProducer
	bridgeLogs  syncBuffer // what in-process bridges logged
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// newEnv creates the test's topics, a Temporal client, a worker and a
// producer, on the shared stack.
func newEnv(t *testing.T, partitions int32) *env {
	return newEnvOn(t, partitions, stack.Temporal.Address)
}

// newEnvOn is newEnv with the Temporal frontend at temporalAddr.
func newEnvOn(t *testing.T, partitions int32, temporalAddr string) *env {
	t.Helper()
	id := uuid.NewString()[:8]
	name := strings.ToLower(unsafeName.ReplaceAllString(t.Name(), "-")) + "-" + id
	e := &env{t: t, id: id, topic: name, ledgerTopic: name + "-ledger", taskQueue: name, temporal: temporalAddr, acts: saga.NewActivities(), trips: trip.NewServices()}
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(e.topic, partitions, nil))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(e.ledgerTopic, partitions, nil))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(dlq.TopicFor(e.topic, dlq.DefaultSuffix), 1, nil))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix), 1, nil))

	// The test's workers use this client, with the data converter
	// cmd/worker's have.
	tc, err := client.Dial(client.Options{HostPort: temporalAddr, Logger: quietLogger(), DataConverter: sagaworker.DataConverter(nil)})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	e.tc = tc

	outcomes, err := sarama.NewSyncProducer(stack.Kafka.Brokers, activities.ProducerConfig(sarama.V3_6_0_0))
	require.NoError(t, err)
	t.Cleanup(func() { _ = outcomes.Close() })
	e.outcomes = outcomes
	e.startWorker()
	t.Cleanup(e.stopWorker)

	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	e.producer = p
	return e
}

// startWorker runs the test's worker: the order and trip sagas and ledgers.
func (e *env) startWorker() {
	e.t.Helper()
	w := worker.New(e.tc, e.taskQueue, worker.Options{MaxConcurrentWorkflowTaskPollers: 8})
	saga.RegisterWith(w, e.acts, &activities.Publisher{Producer: e.outcomes})
	trip.RegisterWith(w, e.trips, &activities.DeadLetterer{Producer: e.outcomes})
	// A small history limit makes busy ledgers continue-as-new on the real server.
	ledger.Register(w, ledger.Options{MaxHistoryEvents: ledgerMaxHistory})
	require.NoError(e.t, w.Start())
	e.worker = w
}

// startWorkerOn runs a worker of the test's client on task queue tq with
// what register adds, stopped when the test ends.
func (e *env) startWorkerOn(tq string, register func(worker.Worker)) {
	e.t.Helper()
	w := worker.New(e.tc, tq, worker.Options{})
	register(w)
	require.NoError(e.t, w.Start())
	e.t.Cleanup(w.Stop)
}

// stopWorker stops the test's worker; safe to call when it is stopped.
func (e *env) stopWorker() {
	if e.worker != nil {
		e.worker.Stop()
		e.worker = nil
	}
}

// config is the bridge configuration for this test's topic.
func (e *env) config(group string) config.Config {
	return config.Config{
		Kafka:    config.Kafka{Brokers: stack.Kafka.Brokers, Group: group},
		Temporal: config.Temporal{Address: e.temporal},
		Dispatch: config.Dispatch{RetryInitial: 50 * time.Millisecond, RetryMax: time.Second, DrainTimeout: 5 * time.Second},
		Routes: []config.Route{{
			Topic: e.topic, TypeHeader: saga.TypeHeader, WorkflowType: saga.WorkflowType,
			WorkflowID: "order-{key}", TaskQueue: e.taskQueue, Signal: saga.Signal,
		}, {
			Topic: e.ledgerTopic, WorkflowType: ledger.WorkflowType, WorkflowID: "ledger-{key}", TaskQueue: e.taskQueue,
		}},
	}
}

// runBridge runs an in-process bridge in group until the returned stop is
// called (and at the latest when the test ends). stop waits for Run to return.
func (e *env) runBridge(group string) (b *bridge.Bridge, stop func()) {
	e.t.Helper()
	return e.runBridgeWith(group, func(*config.Config) {})
}

// runBridgeWith is runBridge with the configuration adjusted by tune.
func (e *env) runBridgeWith(group string, tune func(*config.Config)) (b *bridge.Bridge, stop func()) {
	e.t.Helper()
	return e.runBridgeOn(group, func(t bridge.Temporal) bridge.Temporal { return t }, tune)
}

// runBridgeOn runs an in-process bridge with the Temporal seam wrap makes
// of the real one, and the configuration tune adjusts, until stop.
func (e *env) runBridgeOn(group string, wrap func(bridge.Temporal) bridge.Temporal, tune func(*config.Config), opts ...bridge.Option) (b *bridge.Bridge, stop func()) {
	e.t.Helper()
	tc, err := client.Dial(client.Options{HostPort: e.temporal, Logger: quietLogger()})
	require.NoError(e.t, err)
	pc, err := connect.DLQProducerConfig(config.Kafka{Version: "3.6.0", ClientID: "e2e"}, 0)
	require.NoError(e.t, err)
	dlqProducer, err := sarama.NewSyncProducer(stack.Kafka.Brokers, pc)
	require.NoError(e.t, err)
	cfg := e.config(group)
	tune(&cfg)
	b, err = bridge.New(cfg, bridge.Deps{
		Temporal:    wrap(temporalsdk.Client{Client: tc}),
		DeadLetters: dlq.ProducerWriter{Producer: dlqProducer, Suffix: dlq.DefaultSuffix},
		Logger:      slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{e.t}, &e.bridgeLogs), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, opts...)
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(e.t, err)
			case <-time.After(30 * time.Second):
				e.t.Error("bridge did not stop within 30s")
			}
			_ = dlqProducer.Close()
			tc.Close()
		})
	}
	e.t.Cleanup(stop)
	return b, stop
}

// produce sends the orders' events interleaved and returns where each
// order's events landed.
func (e *env) produce(orders []saga.Order) map[string][]event.Position {
	e.t.Helper()
	at, err := saga.Produce(e.producer, e.topic, saga.Interleave(orders, 7))
	require.NoError(e.t, err)
	return at
}

// result waits for the order's workflow to close and returns its state.
func (e *env) result(orderID string, timeout time.Duration) saga.State {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := saga.WaitResult(ctx, e.tc, orderID)
	require.NoError(e.t, err)
	return st
}

// ledgerMaxHistory is the history length at which test ledgers continue-as-new.
const ledgerMaxHistory = 200

// ledgerResult waits for a ledger workflow to finish and returns its state.
func (e *env) ledgerResult(ctx context.Context, key string) (ledger.State, error) {
	return ledgerResultOn(ctx, e.tc, key)
}

// ledgerResultOn is ledgerResult through client c (another namespace).
func ledgerResultOn(ctx context.Context, c client.Client, key string) (ledger.State, error) {
	var st ledger.State
	for {
		err := c.GetWorkflow(ctx, "ledger-"+key, "").Get(ctx, &st)
		var notFound *serviceerror.NotFound
		var nsNotFound *serviceerror.NamespaceNotFound // a namespace just created is not known everywhere yet
		if !errors.As(err, &notFound) && !errors.As(err, &nsNotFound) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("ledger %s never started: %w", key, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// assertLedgers waits for every ledger and checks it applied exactly the
// produced offsets, in order, once each.
func (e *env) assertLedgers(at map[string][]int64, timeout time.Duration) {
	e.t.Helper()
	e.assertLedgersOn(e.tc, at, timeout)
}

// assertLedgersOn is assertLedgers through client c (another namespace).
func (e *env) assertLedgersOn(c client.Client, at map[string][]int64, timeout time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	states := map[string]ledger.State{}
	failed := false
	for key := range at {
		wg.Go(func() {
			st, err := ledgerResultOn(ctx, c, key)
			var why string
			if err != nil {
				why = whyUnfinished(c, "ledger-"+key)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				e.t.Errorf("ledger %s: %v (%s)", key, err, why)
				failed = true
				return
			}
			states[key] = st
		})
	}
	wg.Wait()
	if failed {
		// Later checks would wait on the same ledgers without a bound.
		e.t.FailNow()
	}
	for key, want := range at {
		if st, ok := states[key]; ok {
			assert.Equal(e.t, want, st.Offsets, "ledger %s: every record applied once, in offset order", key)
		}
	}
}

// whyUnfinished says what keeps workflow id from finishing: its status, its
// pending workflow task's attempt, and every workflow task failure and
// timeout its current run recorded (of a series of failed attempts Temporal
// records only the first), so a workflow that never ends fails with its
// cause.
func whyUnfinished(c client.Client, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return fmt.Sprintf("describe %s: %v", id, err)
	}
	why := []string{"status " + d.GetWorkflowExecutionInfo().GetStatus().String()}
	if pt := d.GetPendingWorkflowTask(); pt != nil {
		why = append(why, fmt.Sprintf("workflow task %s, attempt %d", pt.GetState(), pt.GetAttempt()))
	}
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return strings.Join(append(why, fmt.Sprintf("history: %v", err)), "; ")
		}
		if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil {
			why = append(why, fmt.Sprintf("workflow task failed (%s): %s", a.GetCause(), a.GetFailure().GetMessage()))
		}
		if a := ev.GetWorkflowTaskTimedOutEventAttributes(); a != nil {
			why = append(why, fmt.Sprintf("workflow task timed out (%s)", a.GetTimeoutType()))
		}
	}
	return strings.Join(why, "; ")
}

// produceLedger sends recs to the ledger topic.
func (e *env) produceLedger(recs []ledger.Record) map[string][]int64 {
	e.t.Helper()
	at, err := ledger.Produce(e.producer, e.ledgerTopic, recs)
	require.NoError(e.t, err)
	return at
}

// readAll reads every record of topic's partitions from the start, waiting
// until want records have arrived or timeout passes, and then to the end
// of every partition (so a record beyond want is counted, not missed).
func readAll(t *testing.T, topic string, want int, timeout time.Duration) []*sarama.ConsumerMessage {
	return readWhere(t, topic, want, timeout, func(*sarama.ConsumerMessage) bool { return true })
}

// readWhere is readAll counting only the records keep accepts. It reads
// read_committed, as the topic's consumers do. Once want records have
// arrived it reads on until every partition has delivered what was decided
// in its log then (committed.Deliverable finds nothing left before its last
// stable offset),
// so that "exactly want" checks see a duplicate however slowly its
// partition's reader goes; it waited 300 ms and looked.
func readWhere(t *testing.T, topic string, want int, timeout time.Duration, keep func(*sarama.ConsumerMessage) bool) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := saga.ProducerConfig()
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	client, err := sarama.NewClient(stack.Kafka.Brokers, cfg)
	require.NoError(t, err)
	defer client.Close()
	c, err := sarama.NewConsumerFromClient(client)
	require.NoError(t, err)
	defer c.Close()
	parts, err := c.Partitions(topic)
	require.NoError(t, err)
	out := make(chan *sarama.ConsumerMessage)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Before the loop: a partition that fails to start must still stop
	// the readers already started.
	defer wg.Wait()
	defer close(stop)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		require.NoError(t, err)
		wg.Go(func() {
			defer pc.Close()
			for {
				select {
				case m := <-pc.Messages():
					select {
					case out <- m:
					case <-stop:
						return
					}
				case <-stop:
					return
				}
			}
		})
	}
	var got []*sarama.ConsumerMessage
	next := map[int32]int64{} // per partition, the offset after the last record read
	take := func(m *sarama.ConsumerMessage) {
		next[m.Partition] = m.Offset + 1
		if keep(m) {
			got = append(got, m)
		}
	}
	deadline := time.After(timeout)
	for len(got) < want {
		select {
		case m := <-out:
			take(m)
		case <-deadline:
			return got
		}
	}
	// To the last stable offsets: a record below one is decided, and one
	// of a transaction another test holds open past it is not waited for
	// (to the high-water marks, a read waited out such a transaction).
	ends := map[int32]int64{}
	for _, p := range parts {
		ends[p] = partitionEnd(t, client, topic, p, sarama.ReadCommitted)
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		require.NoError(t, err)
		next[p] = max(next[p], oldest) // a partition nothing was read from
	}
	// readToEnd asks the broker (a fetch per partition short of its end)
	// only when ask: on the ticker, not after every record.
	readToEnd := func(ask bool) bool {
		for p, end := range ends {
			if next[p] >= end {
				continue
			}
			if !ask {
				return false
			}
			if left, err := committed.Deliverable(client, topic, p, next[p], end); err != nil || left {
				return false
			}
		}
		return true
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ask := true; !readToEnd(ask); {
		ask = false
		select {
		case m := <-out:
			take(m)
		case <-tick.C:
			ask = true
		case <-deadline:
			t.Errorf("%s: %d records read, and the partitions not read to their ends (%v) within %s", topic, len(got), ends, timeout)
			return got
		}
	}
	return got
}

// binDirPrefix starts the name of a run's temporary directory of
// binaries, followed by its process ID and a dash.
const binDirPrefix = "sagabridge-e2e-bin-"

// removeStaleBinDirs removes the binary directories of earlier runs whose
// process is gone (ended by a -timeout or a panic, past their cleanups).
func removeStaleBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, d := range dirs {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), binDirPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			continue // not named by this code: leave it
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

func quietLogger() sdklog.Logger {
	return sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// seededRand returns the random source of a test's kill times and
// workloads. Its seed is logged; SAGABRIDGE_SEED=<seed> replays a run.
func seededRand(t *testing.T, stream uint64) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SAGABRIDGE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "SAGABRIDGE_SEED")
		seed = v
	}
	t.Logf("seed %d (SAGABRIDGE_SEED=%d replays this run's kill times)", seed, seed)
	return rand.New(rand.NewPCG(seed, stream))
}

// waitListening waits until a process the test started accepts
// connections at addr; out is its output, shown if it never does.
func waitListening(t *testing.T, addr string, out *syncBuffer) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "nothing listened at %s; output: %s", addr, out)
}
