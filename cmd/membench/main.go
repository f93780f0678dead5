// Command membench shows that the bridge's memory is bounded by its
// configuration, not by lag or by an outage of Temporal. It pre-loads
// 1,000,000 records of 1 KB into the embedded Kafka, runs the bridge (the
// real cmd/bridge binary, with its default configuration) against a
// Temporal dev server, stops Temporal for 60 s and starts it again on the
// same database file, samples the bridge's RSS (from /proc) and its
// consumer lag (from its /metrics) every second, and draws both over time.
//
//	go run ./cmd/membench [-records 1000000] [-size 1024] [-out docs/membench.png]
package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.yaml.in/yaml/v3"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
	"github.com/sagabridge/sagabridge/internal/promtext"
)

type options struct {
	records, size, keys, partitions int
	before, down, after             time.Duration
	out                             string
	keep                            bool
	redraw                          string
}

func main() {
	var o options
	flag.IntVar(&o.records, "records", 1_000_000, "records pre-loaded into Kafka")
	flag.IntVar(&o.size, "size", 1024, "bytes per record value")
	flag.IntVar(&o.keys, "keys", 10_000, "distinct keys (Zipf s=1.1)")
	flag.IntVar(&o.partitions, "partitions", 8, "partitions of the topic")
	flag.DurationVar(&o.before, "before", 20*time.Second, "time with Temporal up before the outage")
	flag.DurationVar(&o.down, "down", 60*time.Second, "length of the Temporal outage")
	flag.DurationVar(&o.after, "after", 60*time.Second, "time with Temporal up after the outage")
	flag.StringVar(&o.out, "out", "docs/membench.png", "the chart to write; a .csv beside it holds the samples")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (bridge and Temporal logs)")
	flag.StringVar(&o.redraw, "redraw", "", "only redraw the chart from this CSV of an earlier run")
	flag.Parse()
	if o.redraw != "" {
		if err := redraw(o); err != nil {
			fmt.Fprintln(os.Stderr, "membench failed:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "membench failed:", err)
		os.Exit(1)
	}
}

// sample is one second of the run.
type sample struct {
	at       time.Duration
	phase    string
	rssBytes int64
	lag      float64
	inFlight float64
	applied  float64
}

func run(o options) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sagabridge-membench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("working directory (kept):", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	// The bridge under test: the real binary, built without the race detector.
	bridgeBin := filepath.Join(dir, "bridge")
	if out, err := exec.Command("go", "build", "-o", bridgeBin, "./cmd/bridge").CombinedOutput(); err != nil {
		return fmt.Errorf("build cmd/bridge: %v\n%s", err, out)
	}
	const topic = "membench"
	kafka, err := devstack.StartKafka(0, int32(o.partitions), topic, dlq.TopicFor(topic, dlq.DefaultSuffix))
	if err != nil {
		return err
	}
	defer kafka.Close()
	fmt.Printf("pre-loading %d records of %d bytes over %d keys into %d partitions...\n", o.records, o.size, o.keys, o.partitions)
	if err := preload(kafka.Brokers, topic, o); err != nil {
		return err
	}

	ports, err := devstack.FreePorts(2)
	if err != nil {
		return err
	}
	tlog, err := os.Create(filepath.Join(dir, "temporal.log"))
	if err != nil {
		return err
	}
	defer tlog.Close()
	topts := devstack.TemporalOptions{Port: ports[0], DBFile: filepath.Join(dir, "temporal.db"), Output: tlog,
		DynamicConfig: []string{devstack.BoundedLongPolls}}
	temporal, err := devstack.StartTemporal(ctx, topts)
	if err != nil {
		return err
	}
	defer func() { _ = temporal.Close() }()
	// The worker connects as cmd/worker would (connect.ClientOptions).
	copts, err := connect.ClientOptions(config.Temporal{Address: temporal.Address}, sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	tc, err := client.Dial(copts)
	if err != nil {
		return err
	}
	defer tc.Close()
	w := worker.New(tc, topic, worker.Options{MaxConcurrentWorkflowTaskPollers: 16})
	ledger.Register(w, ledger.Options{})
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	fmt.Printf("bridge metrics and profiles at http://%s/metrics, /debug/pprof/\n", metricsAddr)
	cfgPath := filepath.Join(dir, "bridge.yaml")
	cfg, _ := yaml.Marshal(map[string]any{
		"kafka":    map[string]any{"brokers": kafka.Brokers, "group": topic},
		"temporal": map[string]any{"address": temporal.Address},
		"metrics":  map[string]any{"listen": metricsAddr, "pprof": true}, // loopback only: profiles for the run
		"routes": []map[string]any{{
			"topic": topic, "workflow_type": ledger.WorkflowType, "workflow_id": "ledger-{key}", "task_queue": topic,
		}},
	})
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	blog, err := os.Create(filepath.Join(dir, "bridge.log"))
	if err != nil {
		return err
	}
	defer blog.Close()
	proc, err := devstack.StartProcess(blog, bridgeBin, "-config", cfgPath)
	if err != nil {
		return err
	}
	defer proc.Kill()

	var samples []sample
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	record := func(phase string) error {
		<-tick.C
		select {
		case <-proc.Done():
			return fmt.Errorf("the bridge exited: %v (log: %s)", proc.Err(), blog.Name())
		default:
		}
		s := sample{at: time.Since(start), phase: phase, rssBytes: rss(proc.Pid())}
		if fams, err := promtext.Scrape("http://" + metricsAddr); err == nil {
			s.lag, _ = fams.Sum("sagabridge_consumer_lag", nil)
			s.inFlight, _ = fams.Sum("sagabridge_in_flight_records", nil)
			s.applied, _ = fams.Sum("sagabridge_records_delivered_total", nil)
		}
		samples = append(samples, s)
		fmt.Printf("  t=%5.0fs %-5s RSS %6.1f MiB  lag %8.0f  in flight %6.0f  delivered %8.0f\n",
			s.at.Seconds(), phase, float64(s.rssBytes)/(1<<20), s.lag, s.inFlight, s.applied)
		return nil
	}
	for time.Since(start) < o.before {
		if err := record("up"); err != nil {
			return err
		}
	}
	fmt.Println("stopping Temporal")
	if err := temporal.Close(); err != nil {
		return err
	}
	downAt := time.Since(start)
	for time.Since(start) < downAt+o.down {
		if err := record("down"); err != nil {
			return err
		}
	}
	fmt.Println("starting Temporal again on the same database file")
	if temporal, err = devstack.StartTemporal(ctx, topts); err != nil {
		return fmt.Errorf("start Temporal again: %w", err)
	}
	upAt := time.Since(start)
	for time.Since(start) < upAt+o.after {
		if err := record("up"); err != nil {
			return err
		}
	}
	peak := procStatus(proc.Pid(), "VmHWM") // what one sample a second can miss
	if err := proc.Stop(20 * time.Second); err != nil {
		return fmt.Errorf("bridge did not stop cleanly: %w", err)
	}
	if err := writeCSV(strings.TrimSuffix(o.out, filepath.Ext(o.out))+".csv", samples); err != nil {
		return err
	}
	if err := drawChart(o.out, samples, downAt, upAt, o); err != nil {
		return err
	}
	report(samples, downAt, upAt, peak)
	return nil
}

// preload writes o.records padded ledger records to topic.
func preload(brokers []string, topic string, o options) error {
	p, err := sarama.NewSyncProducer(brokers, saga.ProducerConfig())
	if err != nil {
		return err
	}
	defer p.Close()
	recs := ledger.Stream("m-", o.keys, o.records, 1.1, 7)
	const chunk = 10_000
	for start := 0; start < len(recs); start += chunk {
		part := recs[start:min(start+chunk, len(recs))]
		ledger.Pad(part, o.size)
		if _, err := ledger.Produce(p, topic, part); err != nil {
			return err
		}
		for i := range part {
			part[i].Value = nil // Kafka holds it now
		}
	}
	return nil
}

// rss reads a process's resident set size from /proc.
func rss(pid int) int64 { return procStatus(pid, "VmRSS") }

// procStatus reads a size in bytes from a process's /proc status, such as
// VmRSS (resident now) or VmHWM (the most it was resident); 0 if it cannot.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func writeCSV(path string, samples []sample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write([]string{"seconds", "phase", "rss_bytes", "consumer_lag", "in_flight_records", "delivered"})
	for _, s := range samples {
		_ = w.Write([]string{fmt.Sprintf("%.0f", s.at.Seconds()), s.phase, strconv.FormatInt(s.rssBytes, 10),
			fmt.Sprintf("%.0f", s.lag), fmt.Sprintf("%.0f", s.inFlight), fmt.Sprintf("%.0f", s.applied)})
	}
	w.Flush()
	return w.Error()
}

// redraw draws o.out from the samples in the CSV at o.redraw.
func redraw(o options) error {
	f, err := os.Open(o.redraw)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return fmt.Errorf("read %s: %w", o.redraw, err)
	}
	var samples []sample
	var downAt, upAt time.Duration
	for i, r := range rows[1:] {
		if len(r) < 6 {
			return fmt.Errorf("%s line %d: want 6 fields, got %d", o.redraw, i+2, len(r))
		}
		secs, _ := strconv.ParseFloat(r[0], 64)
		s := sample{at: time.Duration(secs * float64(time.Second)), phase: r[1]}
		s.rssBytes, _ = strconv.ParseInt(r[2], 10, 64)
		s.lag, _ = strconv.ParseFloat(r[3], 64)
		s.inFlight, _ = strconv.ParseFloat(r[4], 64)
		s.applied, _ = strconv.ParseFloat(r[5], 64)
		if s.phase == "down" && downAt == 0 {
			downAt = s.at - time.Second
		}
		if s.phase == "up" && downAt != 0 && upAt == 0 {
			upAt = s.at - time.Second
		}
		samples = append(samples, s)
	}
	if len(samples) == 0 || downAt == 0 || upAt == 0 {
		return fmt.Errorf("%s holds no outage", o.redraw)
	}
	if err := drawChart(o.out, samples, downAt, upAt, o); err != nil {
		return err
	}
	report(samples, downAt, upAt, 0)
	return nil
}

// report prints the figures docs/BENCHMARKS.md quotes; peak is the
// bridge's VmHWM in bytes (0: not known, as when redrawing).
func report(samples []sample, downAt, upAt time.Duration, peak int64) {
	var all, down, lagDown, heldDown []float64
	for _, s := range samples {
		mib := float64(s.rssBytes) / (1 << 20)
		all = append(all, mib)
		if s.at > downAt && s.at <= upAt {
			down = append(down, mib)
			lagDown = append(lagDown, s.lag)
			heldDown = append(heldDown, s.inFlight)
		}
	}
	if len(down) < 2 {
		return
	}
	fmt.Printf("\nRSS: max %.1f MiB over the run's samples (one a second); during the outage min %.1f, max %.1f, first %.1f, last %.1f MiB\n",
		slices.Max(all), slices.Min(down), slices.Max(down), down[0], down[len(down)-1])
	if peak > 0 {
		fmt.Printf("RSS peak (VmHWM, between samples too): %.1f MiB\n", float64(peak)/(1<<20))
	}
	// The lag counts from the committed offset, which nothing moves while
	// Temporal is down: that the bridge reads nothing more shows in the
	// records it holds.
	fmt.Printf("during the outage: records held by the bridge %.0f–%.0f; consumer lag %.0f → %.0f (the rest stays in Kafka)\n",
		slices.Min(heldDown), slices.Max(heldDown), lagDown[0], lagDown[len(lagDown)-1])
}
