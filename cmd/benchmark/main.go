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
// visibility. It then runs a steady stream at half the engine's catch-up
// rate and reports produce→apply latency.
//
//	go run ./cmd/benchmark [-events 100000] [-naive-events 20000]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/sagabridge/sagabridge/internal/devstack"
)

// options are the command's flags.
type options struct {
	events, naiveEvents, partitions, concurrency int
	zipf                                         float64
	latencyFor                                   time.Duration
	trace                                        bool
	batch                                        int
	only                                         string
	latencyRates                                 string
	window, budget                               int
}

func main() {
	var o options
	flag.IntVar(&o.events, "events", 100_000, "events per workload for the engine and the ceiling")
	flag.IntVar(&o.naiveEvents, "naive-events", 20_000, "events per workload for the naive consumer (it is slow; its rate is what counts)")
	flag.IntVar(&o.partitions, "partitions", 8, "partitions per topic")
	flag.IntVar(&o.concurrency, "concurrency", 64, "calls in flight for the engine and the ceiling")
	flag.Float64Var(&o.zipf, "zipf", 1.1, "Zipf exponent of the key distribution")
	flag.DurationVar(&o.latencyFor, "latency-for", 20*time.Second, "length of the steady stream for the latency run")
	flag.IntVar(&o.batch, "batch", 0, "the engine's batch.max_records; 0 keeps the bridge's default")
	flag.IntVar(&o.window, "max-in-flight", 0, "the engine's batch.max_in_flight (per partition); 0 keeps the default")
	flag.IntVar(&o.budget, "budget", 0, "the engine's backpressure.max_records and, ×300 bytes, max_bytes; 0 keeps the defaults")
	flag.BoolVar(&o.trace, "trace", false, "print the engine's progress every second")
	flag.StringVar(&o.latencyRates, "latency-rates", "0.5x,2000,1000,500", "events/s of the latency runs, comma-separated; Nx is N times the engine's catch-up rate (10000 with -only latency)")
	flag.StringVar(&o.only, "only", "", "run one workload and mode only, for tuning: catch-up/engine, fan-out/ceiling, latency, ...")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchmark failed:", err)
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
	elapsed       time.Duration
}

func (r result) rate() float64 { return float64(r.events) / r.elapsed.Seconds() }

func run(o options) error {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	logf, err := os.CreateTemp("", "sagabridge-bench-temporal-*.log")
	if err != nil {
		return err
	}
	defer logf.Close()
	stack, err := devstack.Start(ctx, devstack.Options{Temporal: devstack.TemporalOptions{Output: logf}})
	if err != nil {
		return err
	}
	defer stack.Close()
	sdkLog := slog.New(slog.DiscardHandler)
	if o.trace {
		sdkLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	tc, err := client.Dial(client.Options{HostPort: stack.Temporal.Address, Logger: sdklog.NewStructuredLogger(sdkLog)})
	if err != nil {
		return err
	}
	defer tc.Close()
	h := &harness{o: o, stack: stack, tc: tc, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if o.trace {
		h.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}

	fmt.Printf("sagabridge benchmark: %d events per workload (naive: %d), %d partitions, Zipf s=%.2f, concurrency %d\n",
		o.events, o.naiveEvents, o.partitions, o.zipf, o.concurrency)
	workloads := []workload{{"catch-up", 1_000}, {"fan-out", 20_000}}
	if o.only == "latency" {
		lats, err := h.latencies(ctx, workloads[0], 10_000)
		if err != nil {
			return err
		}
		printLatencies(lats)
		return nil
	}
	all := map[string][]result{}
	for _, w := range workloads {
		for i, mode := range []func(context.Context, workload) (result, error){h.ceiling, h.engine, h.naive} {
			if o.only != "" && o.only != w.name+"/"+[]string{"ceiling", "engine", "naive"}[i] {
				continue
			}
			r, err := mode(ctx, w)
			if err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			fmt.Printf("  %-9s %-8s %7d events in %6.1fs = %8.0f events/s, %.3f calls/event\n",
				w.name, r.mode, r.events, r.elapsed.Seconds(), r.rate(), float64(r.calls)/float64(r.events))
			all[w.name] = append(all[w.name], r)
		}
	}
	if o.only != "" {
		return nil
	}
	lats, err := h.latencies(ctx, workloads[0], all["catch-up"][1].rate())
	if err != nil {
		return err
	}
	printReport(workloads, all)
	printLatencies(lats)
	return nil
}

// latencies runs the steady stream at each of o.latencyRates; peak is
// what "Nx" multiplies.
func (h *harness) latencies(ctx context.Context, w workload, peak float64) ([]latencyResult, error) {
	var out []latencyResult
	for _, f := range strings.Split(h.o.latencyRates, ",") {
		f = strings.TrimSpace(f)
		rate, err := strconv.ParseFloat(strings.TrimSuffix(f, "x"), 64)
		if err != nil || rate <= 0 {
			return nil, fmt.Errorf("-latency-rates: %q is not a rate", f)
		}
		if strings.HasSuffix(f, "x") {
			rate *= peak
		}
		lat, err := h.latency(ctx, w, rate)
		if err != nil {
			return nil, fmt.Errorf("latency at %.0f events/s: %w", rate, err)
		}
		fmt.Printf("  latency   %6.0f events/s  P50 %6d ms  P99 %6d ms  max %6d ms\n", rate, lat.p50.Milliseconds(), lat.p99.Milliseconds(), lat.max.Milliseconds())
		out = append(out, lat)
	}
	return out, nil
}

// latencyResult is the steady-stream run.
type latencyResult struct {
	rate     float64
	events   int
	p50, p99 time.Duration
	max      time.Duration
}

func printReport(workloads []workload, all map[string][]result) {
	fmt.Printf("\n| workload | (a) naive events/s | (b) engine events/s | (c) ceiling events/s | b/a | b/c | engine calls/event |\n")
	fmt.Printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, w := range workloads {
		rs := all[w.name]
		c, b, a := rs[0], rs[1], rs[2]
		fmt.Printf("| %s (%d keys) | %.0f | %.0f | %.0f | %.1f | %.2f | %.3f |\n", w.name, w.keys,
			a.rate(), b.rate(), c.rate(), b.rate()/a.rate(), b.rate()/c.rate(), float64(b.calls)/float64(b.events))
	}
}

func printLatencies(lats []latencyResult) {
	fmt.Printf("\n| steady stream, events/s (1,000 keys) | events | P50 ms | P99 ms | max ms |\n| ---: | ---: | ---: | ---: | ---: |\n")
	for _, l := range lats {
		fmt.Printf("| %.0f | %d | %d | %d | %d |\n", l.rate, l.events, l.p50.Milliseconds(), l.p99.Milliseconds(), l.max.Milliseconds())
	}
}

// percentile returns the p-th percentile (0..1) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}
