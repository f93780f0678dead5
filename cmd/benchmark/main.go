// Command benchmark measures the bridge against the two bounds that matter,
// side by side in one run on the embedded stack:
//
//	(a) naive:   a consumer that sends one SignalWithStart per record, in
//	             offset order per partition (what hand-written glue does)
//	(b) engine:  the sagabridge bridge
//	(c) ceiling: a plain SDK client sending the same events, pre-batched per
//	             key, straight to Temporal (no Kafka at all)
//
// on two workloads over 8 partitions with Zipf-skewed keys: catch-up (a
// backlog over 1,000 keys) and fan-out (mostly new workflows over 20,000
// keys). An event counts as applied when its ledger workflow has processed
// it; ledgers complete on their last event and are counted through
// visibility.
//
// It then runs steady streams over 1,000 keys (-latency-for each, at each of
// -latency-rates, "0.5x" being half the engine's catch-up rate) and reports
// send→apply latency, in two shapes: warm entities (every key's ledger
// running, with one warm-up record applied, before the clock starts) and new
// sagas (every key new). Beside the engine (b), fed through Kafka, a plain
// client (d) gets the same stream in-process and sends each key's events per
// fixed window (-windows). Every run starts with a capacity probe of its
// fresh server (starts/s and signals/s), printed beside its figures. The
// report gives P50 and P99, the P99 of the events sent in the first and in
// the last 20 s (a growing tail shows as growth), and the engine's P99 over
// the best window's.
//
// Every mode runs on a fresh Temporal dev server, so that no mode inherits
// the history another left behind, and the engine and the ceiling run
// -rounds times, alternating which goes first (the latency modes rotate:
// each round starts one mode later); the report gives medians and the
// median of the per-round ratios, with their range.
//
//	go run ./cmd/benchmark [-rounds 3] [-events 100000] [-naive-events 20000]
//	go run ./cmd/benchmark -only latency [-shapes warm,new] [-latency-rates 500,1000] [-windows 5ms,200ms,1s] [-latency-for 60s]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	sdklog "go.temporal.io/sdk/log"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/sagaworker"
)

// options are the command's flags.
type options struct {
	events, naiveEvents, partitions, concurrency int
	zipf                                         float64
	latencyFor                                   time.Duration
	trace                                        bool
	traceLevel                                   slog.Level
	batch                                        int
	only                                         string
	latencyRates                                 string
	window, budget, budgetBytes, callBytes       int
	// workflowWindow is the engine's dispatch.workflow_window_records; 0
	// keeps the default.
	workflowWindow int
	cpuProfile     string
	rounds         int
	backlogAge     time.Duration
	// coalesceMax is the engine's dispatch.coalesce.max_window; negative
	// keeps the default.
	coalesceMax time.Duration
	// pollerBehavior is the worker's workflow-task poller behaviour, as
	// cmd/worker's -workflow-poller-behavior (sagaworker.PollerAutoscale
	// or sagaworker.PollerFixed).
	pollerBehavior string
	// stickyTimeout is the worker's StickyScheduleToStartTimeout, by
	// default cmd/worker's (sagaworker.DefaultStickyTimeout).
	stickyTimeout time.Duration
	dynamicConfig []string
	// windows are the fixed windows of the plain client (d) in the latency
	// runs; shapes the stream's shapes (shapeWarm, shapeNew).
	windows []time.Duration
	shapes  []string
	// probeFor is the length of each phase of the capacity probe.
	probeFor time.Duration
	// timeline is the bucket width of each latency run's printed timeline;
	// 0 prints none.
	timeline time.Duration
	// grpcCompression is temporal.grpc_compression for every Temporal
	// client of the run (every mode and the worker alike).
	grpcCompression string
	// rpcCounts prints, after each run, its Temporal calls by method.
	rpcCounts bool
	// windowBurn is the share of a core this process burns while a window
	// client streams (burn); 0 burns none.
	windowBurn float64
	// windowKafkaFields makes the window client's envelopes carry a
	// partition and a topic ID, as the engine's do.
	windowKafkaFields bool
	// batchFormat is the engine's dispatch.batch_format; empty keeps the default.
	batchFormat string
}

func main() {
	var o options
	flag.IntVar(&o.events, "events", 100_000, "events per workload for the engine and the ceiling")
	flag.IntVar(&o.naiveEvents, "naive-events", 20_000, "events per workload for the naive consumer (it is slow; its rate is what counts)")
	flag.IntVar(&o.partitions, "partitions", 8, "partitions per topic")
	flag.IntVar(&o.concurrency, "concurrency", 64, "calls in flight for the engine and the ceiling")
	flag.Float64Var(&o.zipf, "zipf", 1.1, "Zipf exponent of the key distribution")
	flag.DurationVar(&o.latencyFor, "latency-for", 60*time.Second, "length of each steady stream of the latency runs")
	flag.Func("windows", "the fixed windows of the plain client (d) in the latency runs, comma-separated (default 5ms,200ms,1s)", func(v string) error {
		ws, err := parseWindows(v)
		o.windows = ws
		return err
	})
	flag.Func("shapes", "shapes of the latency runs, comma-separated: warm (every key's workflow running first), new (every key new) (default warm,new)", func(v string) error {
		sh, err := parseShapes(v)
		o.shapes = sh
		return err
	})
	flag.BoolVar(&o.windowKafkaFields, "window-kafka-fields", false, "the window client (d) sends each record with a partition and a topic ID, as the engine does, so both histories grow by as many bytes per record")
	flag.Float64Var(&o.windowBurn, "window-burn", 0, "cores this process burns while a window client (d) streams, standing in for the engine's Kafka path on the same cores (0: none)")
	flag.DurationVar(&o.timeline, "timeline", 0, "print each latency run's timeline in buckets of this width (0: none), to tell a stall from a lack of capacity")
	flag.DurationVar(&o.probeFor, "probe-for", 3*time.Second, "length of each phase (starts, signals) of the capacity probe before every latency run")
	flag.IntVar(&o.batch, "batch", 0, "the engine's batch.max_records; 0 keeps the bridge's default")
	flag.IntVar(&o.window, "max-in-flight", 0, "the engine's batch.max_in_flight (per partition); 0 keeps the default")
	flag.IntVar(&o.budget, "budget", 0, "the engine's backpressure.max_records and, ×300 bytes, max_bytes; 0 keeps the defaults")
	flag.IntVar(&o.budgetBytes, "budget-bytes", 0, "the engine's backpressure.max_bytes; 0 means 300 × -budget, or the default")
	flag.IntVar(&o.callBytes, "max-call-bytes", 0, "the engine's dispatch.max_call_bytes; 0 keeps the default")
	flag.IntVar(&o.workflowWindow, "workflow-window-records", 0, "the engine's dispatch.workflow_window_records (records sent one workflow before it must confirm them); 0 keeps the default")
	flag.StringVar(&o.pollerBehavior, "workflow-poller-behavior", sagaworker.DefaultPollerBehavior, "the worker's workflow-task pollers, as cmd/worker's flag: autoscale (up to 16, normal and sticky queue apart) or fixed (16, shared; the benchmark's worker before 2026-12-05)")
	flag.DurationVar(&o.stickyTimeout, "sticky-timeout", sagaworker.DefaultStickyTimeout, "the benchmark worker's StickyScheduleToStartTimeout, as cmd/worker's -sticky-timeout: how long a workflow task waits on the worker's sticky queue before it goes to the normal one")
	flag.StringVar(&o.batchFormat, "batch-format", "", "the engine's dispatch.batch_format (full or compact); empty keeps the default")
	flag.DurationVar(&o.coalesceMax, "coalesce-max-window", -1, "the engine's dispatch.coalesce.max_window (0s turns coalescing off); negative keeps the default")
	flag.DurationVar(&o.backlogAge, "backlog-high-age", 0, "the engine's backpressure.backlog.high_age; 0 keeps the default")
	flag.Func("dynamic-config", "KEY=JSON dynamic config value for the dev server (repeatable)", func(v string) error {
		o.dynamicConfig = append(o.dynamicConfig, v)
		return nil
	})
	flag.StringVar(&o.grpcCompression, "grpc-compression", config.GRPCCompressionAuto, "temporal.grpc_compression of every Temporal client of the run (engine, ceiling, plain client, worker): auto (on this plaintext loopback, none), gzip or none")
	flag.BoolVar(&o.rpcCounts, "rpc-counts", false, "print, after each run on its fresh server, the Temporal calls it made by method (the engine's or client's, the worker's and the harness's)")
	flag.BoolVar(&o.trace, "trace", false, "print the engine's progress every second")
	flag.TextVar(&o.traceLevel, "trace-level", slog.LevelInfo, "the level of the engine's log with -trace (DEBUG shows each step of the dispatch window)")
	flag.StringVar(&o.latencyRates, "latency-rates", "0.5x,2000,1000,500", "events/s of the latency runs, comma-separated; Nx is N times the engine's catch-up rate (10000 with -only latency)")
	flag.StringVar(&o.only, "only", "", "run part only, for tuning: a workload's engine and ceiling rounds (catch-up, fan-out), one mode (catch-up/engine, fan-out/naive, ...), or latency")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of engine and ceiling per workload, alternating which runs first, and of every latency mode per shape and rate, each round starting one mode later")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (bridge, worker and clients; not the Temporal server) to this file")
	flag.Parse()
	if o.pollerBehavior != sagaworker.PollerAutoscale && o.pollerBehavior != sagaworker.PollerFixed {
		fmt.Fprintf(os.Stderr, "benchmark: -workflow-poller-behavior must be %s or %s, not %q\n", sagaworker.PollerAutoscale, sagaworker.PollerFixed, o.pollerBehavior)
		os.Exit(2)
	}
	if o.stickyTimeout < time.Second {
		fmt.Fprintf(os.Stderr, "benchmark: -sticky-timeout must be at least 1s, not %s\n", o.stickyTimeout)
		os.Exit(2)
	}
	if o.windows == nil {
		o.windows, _ = parseWindows("5ms,200ms,1s")
	}
	if o.shapes == nil {
		o.shapes = []string{shapeWarm, shapeNew}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchmark:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "benchmark:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchmark failed:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// workload is one key set and size.
type workload struct {
	name string
	keys int
}

// result is one mode's measurement on one workload.
type result struct {
	mode          string
	events, calls int
	// elapsed runs until every ledger has completed; accepted until
	// Temporal had accepted every event (the last signal returned).
	elapsed, accepted time.Duration
}

func (r result) rate() float64 { return float64(r.events) / r.elapsed.Seconds() }

// acceptedRate is the rate at which Temporal accepted the events.
func (r result) acceptedRate() float64 { return float64(r.events) / r.accepted.Seconds() }

// serverLog creates the file the dev servers log to. Its finish closes it,
// then removes it after a run that succeeded and names it on w after one
// that failed, so failed runs keep their evidence and the others leave
// nothing behind.
func serverLog(w io.Writer) (*os.File, func(runErr error), error) {
	f, err := os.CreateTemp("", "sagabridge-bench-temporal-*.log")
	if err != nil {
		return nil, nil, fmt.Errorf("create the dev servers' log: %w", err)
	}
	return f, func(runErr error) {
		f.Close()
		if runErr != nil {
			fmt.Fprintf(w, "the dev servers' log: %s\n", f.Name())
			return
		}
		os.Remove(f.Name())
	}, nil
}

func run(o options) (err error) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if o.rounds < 1 {
		return fmt.Errorf("-rounds must be at least 1")
	}
	if f := o.batchFormat; f != "" && f != config.BatchFull && f != config.BatchCompact {
		return fmt.Errorf("-batch-format must be %q or %q, not %q", config.BatchFull, config.BatchCompact, f)
	}
	logf, finish, err := serverLog(os.Stderr)
	if err != nil {
		return err
	}
	defer func() { finish(err) }()
	kafka, err := devstack.StartKafka(0, int32(o.partitions))
	if err != nil {
		return err
	}
	defer kafka.Close()
	sdkLog := slog.New(slog.DiscardHandler)
	if o.trace {
		sdkLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	h := &harness{o: o, kafka: kafka, temporalLog: logf, sdkLog: sdklog.NewStructuredLogger(sdkLog), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if o.trace {
		h.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.traceLevel}))
	}

	fmt.Printf("sagabridge benchmark: %d events per workload (naive: %d), %d partitions, Zipf s=%.2f, concurrency %d, %d rounds, gRPC compression %s, workflow-task pollers %s, sticky timeout %s\n",
		o.events, o.naiveEvents, o.partitions, o.zipf, o.concurrency, o.rounds, o.grpcCompression, o.pollerBehavior, o.stickyTimeout)
	if o.windowBurn > 0 {
		fmt.Printf("the window clients' runs burn %.2f cores in this process (-window-burn)\n", o.windowBurn)
	}
	workloads := []workload{{"catch-up", 1_000}, {"fan-out", 20_000}}
	if o.only == "latency" {
		cells, err := h.latencies(ctx, 10_000)
		printLatencyTables(o, cells)
		return err
	}
	modes := map[string]func(context.Context, workload) (result, error){"ceiling": h.ceiling, "engine": h.engine, "naive": h.naive}
	measure := func(w workload, mode string) (result, error) {
		var r result
		err := h.onFreshTemporal(ctx, func() error {
			var err error
			r, err = modes[mode](ctx, w)
			return err
		})
		if err != nil {
			return r, fmt.Errorf("%s/%s: %w", w.name, mode, err)
		}
		accepted := ""
		if r.accepted > 0 {
			accepted = fmt.Sprintf(", all accepted by Temporal at %.1fs", r.accepted.Seconds())
		}
		fmt.Printf("  %-9s %-8s %7d events in %6.1fs = %8.0f events/s, %.3f calls/event%s\n",
			w.name, r.mode, r.events, r.elapsed.Seconds(), r.rate(), float64(r.calls)/float64(r.events), accepted)
		return r, nil
	}
	reports := map[string]*report{}
	for _, w := range workloads {
		rep := &report{w: w}
		reports[w.name] = rep
		for round := range o.rounds {
			order := []string{"ceiling", "engine"}
			if round%2 == 1 {
				order = []string{"engine", "ceiling"}
			}
			var pair [2]result
			for _, mode := range order {
				if o.only != "" && o.only != w.name && o.only != w.name+"/"+mode {
					continue
				}
				r, err := measure(w, mode)
				if err != nil {
					return err
				}
				pair[map[string]int{"ceiling": 0, "engine": 1}[mode]] = r
			}
			rep.ceiling, rep.engine = append(rep.ceiling, pair[0]), append(rep.engine, pair[1])
		}
		if o.only == "" || o.only == w.name+"/naive" {
			r, err := measure(w, "naive")
			if err != nil {
				return err
			}
			rep.naive = r
		}
	}
	if o.only != "" {
		if r := reports[strings.Split(o.only, "/")[0]]; r != nil && len(r.engine) > 0 && r.engine[0].events > 0 && r.ceiling[0].events > 0 {
			ratios := r.values(roundRatio)
			fmt.Printf("\n%s: engine %.0f, ceiling %.0f events/s (medians); b/c %.2f (%.2f–%.2f); engine %.3f calls/event\n", r.w.name,
				r.median(engineRate), r.median(ceilingRate), r.median(roundRatio), ratios[0], ratios[len(ratios)-1], r.median(callsPerEvent))
		}
		return nil
	}
	cells, err := h.latencies(ctx, reports["catch-up"].median(engineRate))
	printReport(workloads, reports)
	printLatencyTables(o, cells)
	return err
}

// report is one workload's measurements: o.rounds of the engine and the
// ceiling, and one of the naive consumer.
type report struct {
	w               workload
	ceiling, engine []result
	naive           result
}

func engineRate(r *report, i int) float64      { return r.engine[i].rate() }
func ceilingRate(r *report, i int) float64     { return r.ceiling[i].rate() }
func roundRatio(r *report, i int) float64      { return r.engine[i].rate() / r.ceiling[i].rate() }
func engineAccepted(r *report, i int) float64  { return r.engine[i].acceptedRate() }
func ceilingAccepted(r *report, i int) float64 { return r.ceiling[i].acceptedRate() }
func callsPerEvent(r *report, i int) float64 {
	return float64(r.engine[i].calls) / float64(r.engine[i].events)
}

// values returns f over the rounds, sorted.
func (r *report) values(f func(*report, int) float64) []float64 {
	out := make([]float64, len(r.engine))
	for i := range out {
		out[i] = f(r, i)
	}
	slices.Sort(out)
	return out
}

// median returns the median of f over the rounds.
func (r *report) median(f func(*report, int) float64) float64 {
	v := r.values(f)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func printReport(workloads []workload, reports map[string]*report) {
	fmt.Printf("\n| workload | (a) naive events/s | (b) engine events/s | (c) ceiling events/s | b/a | b/c (range over rounds) | engine calls/event | ceiling calls/event |\n")
	fmt.Printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, w := range workloads {
		r := reports[w.name]
		ratios := r.values(roundRatio)
		b := r.median(engineRate)
		fmt.Printf("| %s (%d keys) | %.0f | %.0f | %.0f | %.1f | **%.2f** (%.2f–%.2f) | %.3f | %.3f |\n", w.name, w.keys,
			r.naive.rate(), b, r.median(ceilingRate), b/r.naive.rate(), r.median(roundRatio), ratios[0], ratios[len(ratios)-1],
			r.median(callsPerEvent), float64(r.ceiling[0].calls)/float64(r.ceiling[0].events))
	}
	fmt.Printf("\n| workload | (b) engine: accepted by Temporal, events/s | (c) ceiling: accepted, events/s | accepted b/c |\n| --- | ---: | ---: | ---: |\n")
	for _, w := range workloads {
		r := reports[w.name]
		fmt.Printf("| %s | %.0f | %.0f | %.2f |\n", w.name, r.median(engineAccepted), r.median(ceilingAccepted), r.median(engineAccepted)/r.median(ceilingAccepted))
	}
	fmt.Printf("\nEngine and ceiling: the median of %d rounds each; b/c is the median of the rounds' own ratios.\n", len(reports[workloads[0].name].engine))
}

// parseWindows reads -windows: positive durations, comma-separated.
func parseWindows(list string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(list, ",") {
		w, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || w <= 0 {
			return nil, fmt.Errorf("-windows: %q is not a positive duration", f)
		}
		out = append(out, w)
	}
	return out, nil
}

// parseShapes reads -shapes: shapeWarm and shapeNew, comma-separated.
func parseShapes(list string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f != shapeWarm && f != shapeNew {
			return nil, fmt.Errorf("-shapes: %q is neither %q nor %q", f, shapeWarm, shapeNew)
		}
		out = append(out, f)
	}
	return out, nil
}
