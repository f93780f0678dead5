// Command demo runs the order saga end to end on the embedded stack: it
// starts Kafka and Temporal, the worker and bridge binaries from bin/,
// produces a few hundred order events over 60 orders (some built to
// fail and compensate, plus one malformed record), waits until every saga
// has finished, checks each against the outcome it must reach, and prints a
// summary. It exits 0 only if every saga ended as expected and the
// malformed record is in the DLQ.
//
//	go run ./examples/saga/demo [-orders 60] [-keep] [-bin bin]
//
// With -keep the stack stays up, with the Temporal Web UI, until Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"log/slog"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/cli"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/workflows"
)

func main() {
	n := flag.Int("orders", 60, "orders to produce")
	keep := flag.Bool("keep", false, "keep the stack up (with the Web UI) until Ctrl-C")
	binDir := flag.String("bin", "bin", "directory holding the bridge, worker and temporal binaries")
	timeout := flag.Duration("timeout", 3*time.Minute, "how long the sagas may take")
	seed := flag.Uint64("seed", 0, "the orders' random seed, printed with them (0: one from the clock), to replay a run")
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	if err := run(*n, *seed, *keep, *binDir, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(n int, seed uint64, keep bool, binDir string, timeout time.Duration) error {
	logDir, err := filepath.Abs(".demo")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logFile := func(name string) (*os.File, error) { return os.Create(filepath.Join(logDir, name)) }

	ctx, stop := cli.SignalContext(nil)
	defer stop()
	tlog, err := logFile("temporal.log")
	if err != nil {
		return err
	}
	defer tlog.Close()
	opts := devstack.Options{
		Topics: []string{saga.Topic, dlq.TopicFor(saga.Topic, dlq.DefaultSuffix), saga.OutcomeTopic}, Partitions: 8,
		Temporal: devstack.TemporalOptions{Bin: filepath.Join(binDir, "temporal"), Output: tlog,
			SearchAttributes: []string{saga.StatusSearchAttribute + "=Keyword"}},
	}
	if keep {
		ports, err := devstack.FreePorts(1)
		if err != nil {
			return err
		}
		opts.Temporal.UIPort = ports[0]
	}
	fmt.Println("starting Kafka (kfake) and the Temporal dev server ...")
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer stack.Close()
	brokers, taddr := stack.Kafka.Brokers[0], stack.Temporal.Address
	fmt.Printf("  Kafka %s, Temporal %s\n", brokers, taddr)

	procs := binaries{logDir: logDir}
	defer procs.kill()
	worker, err := startBinary(logFile, binDir, "worker", "-temporal-address", taddr, "-kafka-brokers", brokers)
	if err != nil {
		return err
	}
	procs.add("worker", worker)
	bridge, err := startBinary(logFile, binDir, "bridge", "-config", "examples/saga/bridge.yaml",
		"-kafka-brokers", brokers, "-temporal-address", taddr)
	if err != nil {
		return err
	}
	procs.add("bridge", bridge)
	fmt.Printf("  worker and bridge running; logs in %s\n", logDir)
	wctx, stopWatching := procs.watch(ctx)
	defer stopWatching()

	orders := saga.Orders("", n, seed)
	msgs := saga.Interleave(orders, 42)
	producer, err := sarama.NewSyncProducer(stack.Kafka.Brokers, saga.ProducerConfig())
	if err != nil {
		return fmt.Errorf("start producer: %w", err)
	}
	defer producer.Close()
	if _, err := saga.Produce(producer, saga.Topic, msgs); err != nil {
		return err
	}
	bad := &sarama.ProducerMessage{Topic: saga.Topic, Key: sarama.StringEncoder("0"), Value: sarama.StringEncoder(`{"sku": "A1",`),
		Headers: []sarama.RecordHeader{{Key: []byte(saga.TypeHeader), Value: []byte(saga.ItemAdded)}}}
	if _, _, err := producer.SendMessage(bad); err != nil {
		return fmt.Errorf("produce the malformed record: %w", err)
	}
	fmt.Printf("produced %d events for %d orders (seed %d; ARGS=-seed=%d replays them), and 1 malformed record\n", len(msgs), len(orders), seed, seed)

	tc, err := client.Dial(client.Options{HostPort: taddr, Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return err
	}
	defer tc.Close()
	start := time.Now()
	states, err := waitAll(wctx, tc, orders, timeout)
	if err != nil {
		if cause := context.Cause(wctx); cause != nil && ctx.Err() == nil {
			return cause
		}
		return err
	}
	fmt.Printf("all %d sagas finished %.1fs after the last event was produced\n\n", len(orders), time.Since(start).Seconds())
	failures := printSummary(orders, states)

	dead, err := countRecords(stack.Kafka.Brokers, dlq.TopicFor(saga.Topic, dlq.DefaultSuffix))
	if err != nil {
		return err
	}
	outcomes, err := countRecords(stack.Kafka.Brokers, saga.OutcomeTopic)
	if err != nil {
		return err
	}
	fmt.Printf("\n%s holds %d outcome event(s), one per order\n", saga.OutcomeTopic, outcomes)
	if outcomes != int64(len(orders)) {
		failures++
	}
	fmt.Printf("DLQ %s holds %d record(s) (expected 1: the malformed one)\n", dlq.TopicFor(saga.Topic, dlq.DefaultSuffix), dead)
	if dead != 1 {
		failures++
	}
	example := orders[min(8, len(orders)-1)].ID
	query := fmt.Sprintf("%s/temporal workflow query --address %s --workflow-id %s --type %s", binDir, taddr, saga.WorkflowID(example), saga.QueryState)
	if keep {
		fmt.Printf("\nThe stack stays up. Try:\n  %s\n  %s/temporal workflow list --address %s --query 'WorkflowType=\"%s\"'\n  Web UI: %s\nCtrl-C stops everything.\n",
			query, binDir, taddr, saga.WorkflowType, stack.Temporal.UIAddress)
		<-wctx.Done()
	} else {
		fmt.Printf("\nQuery a saga's state (keep the stack up with `make demo ARGS=-keep`):\n  %s\n", query)
	}
	stopWatching()
	if err := procs.stop(15 * time.Second); err != nil {
		return err
	}
	if failures > 0 {
		return fmt.Errorf("%d check(s) did not match", failures)
	}
	fmt.Println("\nevery saga reached its expected final state")
	return nil
}

// binaries are the processes the demo started, by name, with their logs
// in logDir/<name>.log.
type binaries struct {
	logDir string
	names  []string
	procs  []*devstack.Process
}

func (b *binaries) add(name string, p *devstack.Process) {
	b.names, b.procs = append(b.names, name), append(b.procs, p)
}

// watch returns a context that ends, with a cause naming the binary, when
// one of them exits before it is stopped, or when parent ends.
func (b *binaries) watch(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	for i, p := range b.procs {
		go func() {
			select {
			case <-p.Done():
				cancel(fmt.Errorf("%s exited while the sagas ran: %v (see %s)", b.names[i], p.Err(), filepath.Join(b.logDir, b.names[i]+".log")))
			case <-ctx.Done():
			}
		}()
	}
	return ctx, func() { cancel(nil) }
}

// stop stops every binary, last started first, and returns an error
// naming each that exited with an error.
func (b *binaries) stop(grace time.Duration) error {
	var errs []error
	for i := len(b.procs) - 1; i >= 0; i-- {
		if err := b.procs[i].Stop(grace); err != nil {
			errs = append(errs, fmt.Errorf("%s exited with %v when stopped (see %s)", b.names[i], err, filepath.Join(b.logDir, b.names[i]+".log")))
		}
	}
	return errors.Join(errs...)
}

// kill stops whatever is still running, at once.
func (b *binaries) kill() {
	for _, p := range b.procs {
		p.Kill()
	}
}

// startBinary runs bin/name with its output in .demo/name.log.
func startBinary(logFile func(string) (*os.File, error), binDir, name string, args ...string) (*devstack.Process, error) {
	f, err := logFile(name + ".log")
	if err != nil {
		return nil, err
	}
	p, err := devstack.StartProcess(f, filepath.Join(binDir, name), args...)
	if err != nil {
		return nil, fmt.Errorf("%w (run `make build` first)", err)
	}
	return p, nil
}

// waitAll waits for every order's saga to finish.
func waitAll(ctx context.Context, tc client.Client, orders []saga.Order, timeout time.Duration) (map[string]saga.State, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu     sync.Mutex
		states = map[string]saga.State{}
		errs   []error
		wg     sync.WaitGroup
	)
	for _, o := range orders {
		wg.Go(func() {
			st, err := saga.WaitResult(ctx, tc, o.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			states[o.ID] = st
		})
	}
	wg.Wait()
	return states, errors.Join(errs...)
}

// printSummary prints one row per order and returns how many differ from
// their expected outcome.
func printSummary(orders []saga.Order, states map[string]saga.State) int {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ORDER\tEVENTS\tSTATUS\tSTEPS\tCOMPENSATIONS (in the order run)\tLAST ERROR\tAS EXPECTED")
	failures := 0
	counts := map[saga.Status]int{}
	for _, o := range orders {
		st := states[o.ID]
		var comps []string
		for _, c := range st.Compensations {
			comps = append(comps, strings.TrimPrefix(c.Name, "ReleaseInventory:"))
		}
		ok := st.Status == o.Want.Status && slices.Equal(st.CompletedSteps, o.Want.CompletedSteps) &&
			slices.Equal(names(st), o.Want.Compensations) && !slices.ContainsFunc(st.Compensations, failed) &&
			len(st.Applied) == len(o.Events) && st.Stats.Deduped == 0
		mark := "yes"
		if !ok {
			mark = "NO"
			failures++
		}
		counts[st.Status]++
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", o.ID, len(st.Applied), st.Status, len(st.CompletedSteps),
			orDash(strings.Join(comps, " → ")), orDash(st.LastError), mark)
	}
	_ = w.Flush()
	fmt.Printf("\n%d completed, %d compensated, %d cancelled\n", counts[saga.StatusCompleted], counts[saga.StatusCompensated], counts[saga.StatusCancelled])
	return failures
}

// failed reports whether a compensation gave up: the saga ran it, and it
// did not undo its step.
func failed(c workflows.CompensationResult) bool { return c.Error != "" }

func names(st saga.State) []string {
	out := make([]string, 0, len(st.Compensations))
	for _, c := range st.Compensations {
		out = append(out, c.Name)
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// countRecords counts the records in topic.
func countRecords(brokers []string, topic string) (int64, error) {
	c, err := sarama.NewClient(brokers, saga.ProducerConfig())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range parts {
		newest, err := c.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, err
		}
		oldest, err := c.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return 0, err
		}
		n += newest - oldest
	}
	return n, nil
}
