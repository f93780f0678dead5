package bridge

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sony/gobreaker/v2"
)

// metrics are the bridge's Prometheus metrics, in a registry of its own
// (no global state: two bridges in one process do not collide).
type metrics struct {
	reg          *prometheus.Registry
	callDuration *prometheus.HistogramVec
}

// Call outcomes, the label of sagabridge_call_duration_seconds.
const (
	outcomeOK        = "ok"
	outcomeRetryable = "retryable"
	outcomeRejected  = "permanent"
	outcomeClosed    = "workflow_closed"
	outcomeAccess    = "access_denied"
	outcomeRunFull   = "run_full"
	// outcomeBusyWorkflow: Temporal answered that the workflow is busy.
	outcomeBusyWorkflow = "workflow_busy"
)

func newMetrics(b *Bridge) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sagabridge_call_duration_seconds",
			Help:    "Duration of SignalWithStart calls to Temporal, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
	}
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.callDuration,
		counter("sagabridge_records_delivered_total", "Records Temporal accepted.", b.delivered.Load),
		counter("sagabridge_records_dead_lettered_total", "Records written to the DLQ.", b.deadLettered.Load),
		counter("sagabridge_records_deduped_total",
			"Redelivered records skipped because the closed workflow they target had already applied them.", b.closedRedeliveries.Load),
		counter("sagabridge_records_dropped_total", "New records for closed workflows dropped under the drop policy.", b.droppedClosed.Load),
		counter("sagabridge_closed_without_memo_total",
			"Records for closed workflows that recorded no watermarks (terminated): treated as new under on_closed_workflow.", b.closedWithoutMemo.Load),
		counter("sagabridge_calls_total", "SignalWithStart calls Temporal accepted.", b.calls.Load),
		counter("sagabridge_call_retries_total", "Calls retried after a retryable error.", b.retries.Load),
		counter("sagabridge_backlog_read_failures_total",
			"Task queue backlog reads (DescribeTaskQueue) that failed; after 3 in a row the last reading expires.", b.pressure.backlogFailures.Load),
		counter("sagabridge_dlq_write_failures_total",
			"DLQ writes that failed and were retried, the partition paused meanwhile (dlq_unavailable).", b.dlqFailures.Load),
		counter("sagabridge_dlq_reduced_total",
			"Dead letters too large for the DLQ, written in reduced form (value dropped; header sagabridge.dlq.reduced).", b.reducedDeadLetters.Load),
		counter("sagabridge_flow_control_waits_total",
			"Calls held back because their workflow had not applied dispatch.workflow_window_* of what it was sent.", b.windowWaits.Load),
		counter("sagabridge_commit_failures_total",
			"Transactional offset commits (dlq.transactional) that failed and will be retried.", b.commitFailures.Load),
		gauge("sagabridge_in_flight_records", "Records read and not yet accepted by Temporal or written to the DLQ.",
			func() float64 { r, _ := b.pressure.held(); return float64(r) }),
		gauge("sagabridge_in_flight_bytes", "Bytes of the in-flight records.",
			func() float64 { _, by := b.pressure.held(); return float64(by) }),
		gauge("sagabridge_in_flight_max_records", "backpressure.max_records.", func() float64 { return float64(b.cfg.Backpressure.MaxRecords) }),
		gauge("sagabridge_in_flight_max_bytes", "backpressure.max_bytes.", func() float64 { return float64(b.cfg.Backpressure.MaxBytes) }),
		gauge("sagabridge_dispatch_window_seconds",
			"The widest dispatch window of any task queue (sagabridge_task_queue_dispatch_window_seconds): how long a workflow's first pending record waits for more before its call (dispatch.coalesce); 0 sends at once.",
			func() float64 { w, _ := b.widestWindow(); return w.Seconds() }),
		gauge("sagabridge_workflow_task_lag_seconds",
			"The longest of each task queue's last sampled workflow-task wait (sagabridge_task_queue_workflow_task_lag_seconds; dispatch.coalesce).",
			func() float64 { _, l := b.widestWindow(); return l.Seconds() }),
		gauge("sagabridge_concurrency_limit", "The adaptive limit on concurrent calls to Temporal.",
			func() float64 { return float64(b.limiter.current()) }),
		gauge("sagabridge_circuit_state",
			"The worst state of the circuit breakers around Temporal (one per task queue, sagabridge_target_circuit_state): 0 closed, 1 half-open, 2 open.",
			func() float64 {
				worst := 0.0
				for _, c := range b.circuits {
					worst = max(worst, circuitValue(c.breaker.State()))
				}
				return worst
			}),
		gauge("sagabridge_temporal_access_denied",
			"1 while Temporal refuses the bridge itself (credentials, permissions, namespace): the partitions of the topics that route to the refused task queues are paused.",
			func() float64 {
				if b.refused() != nil {
					return 1
				}
				return 0
			}),
		stateCollector{b: b},
	)
	return m
}

// circuitValue maps a breaker state to the value of sagabridge_circuit_state.
func circuitValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	default:
		return 0
	}
}

var (
	lagDesc = prometheus.NewDesc("sagabridge_consumer_lag",
		"Records of a claimed partition not yet committable: high-water mark minus the next offset to commit.",
		[]string{"topic", "partition"}, nil)
	pausedDesc = prometheus.NewDesc("sagabridge_partition_paused",
		"1 for each claimed partition that is paused, labelled with why; 0 (reason \"\") for the others.",
		[]string{"topic", "partition", "reason"}, nil)
	pausesDesc = prometheus.NewDesc("sagabridge_pauses_total",
		"How often a reason to pause started to hold: in_flight, target_share, circuit_open, task_queue_backlog, partition_in_flight or dlq_unavailable.", []string{"reason"}, nil)
	claimedDesc   = prometheus.NewDesc("sagabridge_partitions_claimed", "Partitions this member consumes.", nil, nil)
	committedDesc = prometheus.NewDesc("sagabridge_committed_offset",
		"The group's committed offset of every partition of every routed topic, whoever consumes it (-1: none yet); read every 5 s.",
		[]string{"topic", "partition"}, nil)
	groupLagDesc = prometheus.NewDesc("sagabridge_group_lag",
		"Records of every partition of every routed topic that the group has not committed past (log end minus committed offset; 0 when only transaction markers and aborted records remain), whoever consumes it; read every 5 s.",
		[]string{"topic", "partition"}, nil)
	partitionClaimedDesc = prometheus.NewDesc("sagabridge_partition_claimed",
		"1 for each partition of a routed topic this member consumes, 0 for the others; a partition no member reports 1 for is stranded.",
		[]string{"topic", "partition"}, nil)
	backlogDesc = prometheus.NewDesc("sagabridge_task_queue_backlog_tasks",
		"Approximate workflow-task backlog of a routed task queue, as last read.", []string{"task_queue"}, nil)
	backlogAgeDesc = prometheus.NewDesc("sagabridge_task_queue_backlog_age_seconds",
		"Age of the oldest backlogged workflow task of a routed task queue, as last read.", []string{"task_queue"}, nil)
	windowDesc = prometheus.NewDesc("sagabridge_task_queue_dispatch_window_seconds",
		"The dispatch window of a routed task queue's workflows (dispatch.coalesce); 0 sends at once.", []string{"task_queue"}, nil)
	taskLagDesc = prometheus.NewDesc("sagabridge_task_queue_workflow_task_lag_seconds",
		"How long the last sampled workflow of a routed task queue waited for its workflow task to start.", []string{"task_queue"}, nil)
	targetCircuitDesc = prometheus.NewDesc("sagabridge_target_circuit_state",
		"The circuit breaker around calls to one route target: 0 closed, 1 half-open, 2 open.", []string{"namespace", "task_queue"}, nil)
	backedUpDesc = prometheus.NewDesc("sagabridge_task_queue_backed_up",
		"1 while a task queue is above the high-water mark and its topics are paused.", []string{"task_queue"}, nil)
)

// stateCollector reports per-partition and per-task-queue state at scrape time.
type stateCollector struct{ b *Bridge }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lagDesc, pausedDesc, pausesDesc, claimedDesc, backlogDesc, backlogAgeDesc, backedUpDesc, targetCircuitDesc, windowDesc, taskLagDesc,
		committedDesc, groupLagDesc, partitionClaimedDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	paused, backlogs, backedUp, pauses := c.b.pressure.snapshot()
	for k, cb := range c.b.circuits {
		ch <- prometheus.MustNewConstMetric(targetCircuitDesc, prometheus.GaugeValue, circuitValue(cb.breaker.State()), k.namespace, k.taskQueue)
	}
	for q, co := range c.b.coalescers {
		ch <- prometheus.MustNewConstMetric(windowDesc, prometheus.GaugeValue, co.Window().Seconds(), q)
		ch <- prometheus.MustNewConstMetric(taskLagDesc, prometheus.GaugeValue, co.lastLag().Seconds(), q)
	}
	for _, r := range []string{ReasonInFlight, ReasonTargetShare, ReasonCircuitOpen, ReasonBacklog, ReasonPartitionInFlight, ReasonDLQUnavailable} {
		ch <- prometheus.MustNewConstMetric(pausesDesc, prometheus.CounterValue, float64(pauses[r]), r)
	}
	type tp struct {
		topic     string
		partition int32
	}
	isPaused := map[tp]bool{}
	for _, p := range paused {
		isPaused[tp{p.topic, p.partition}] = true
		ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, 1, p.topic, strconv.Itoa(int(p.partition)), p.reason)
	}
	for q, bl := range backlogs {
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(bl.Tasks), q)
		ch <- prometheus.MustNewConstMetric(backlogAgeDesc, prometheus.GaugeValue, bl.Age.Seconds(), q)
		up := 0.0
		if backedUp[q] {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(backedUpDesc, prometheus.GaugeValue, up, q)
	}
	flows := c.b.pressure.claimed()
	ch <- prometheus.MustNewConstMetric(claimedDesc, prometheus.GaugeValue, float64(len(flows)))
	mine := map[tp]bool{}
	for _, f := range flows {
		mine[tp{f.topic, f.partition}] = true
	}
	for _, p := range c.b.group.get() {
		part := strconv.Itoa(int(p.partition))
		ch <- prometheus.MustNewConstMetric(committedDesc, prometheus.GaugeValue, float64(p.committed), p.topic, part)
		ch <- prometheus.MustNewConstMetric(groupLagDesc, prometheus.GaugeValue, float64(p.lag()), p.topic, part)
		claimed := 0.0
		if mine[tp{p.topic, p.partition}] {
			claimed = 1
		}
		ch <- prometheus.MustNewConstMetric(partitionClaimedDesc, prometheus.GaugeValue, claimed, p.topic, part)
	}
	for _, f := range flows {
		if !isPaused[tp{f.topic, f.partition}] { // a series for every claimed partition, so dashboards see 0
			ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, 0, f.topic, strconv.Itoa(int(f.partition)), "")
		}
		if lag, ok := f.lag(); ok {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), f.topic, strconv.Itoa(int(f.partition)))
		}
	}
}

// Handler serves the bridge's metrics and health:
//
//	/metrics  Prometheus text format
//	/healthz  200 while Run is running, 503 before and after
//	/readyz   200 while the bridge is in its consumer group (a session
//	          has started and not ended since: between sessions, a
//	          rebalance or a failure, it is rejoining) and every circuit
//	          to Temporal is closed, 503 (saying why) otherwise
//
// With metrics.pprof it also serves Go's profiles, all of net/http/pprof's
// handlers: /debug/pprof/ (the index and the named profiles: heap,
// goroutine, allocs, ...), /debug/pprof/cmdline, /debug/pprof/profile,
// /debug/pprof/symbol and /debug/pprof/trace. Without it they answer 404.
// Serve the handler on an internal address either way.
func (b *Bridge) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{}))
	if b.cfg.Metrics.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !b.running.Load() {
			http.Error(w, "not running", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		// Each reason is read once: a circuit may close between two reads.
		refused, claimFailure, dlqFailing, stuck := b.refused(), b.claimFailure(), b.pressure.dlqFailing(), b.stuckCommit()
		open, hasOpen := b.openCircuit()
		joined, sessionErr := b.joined.Load(), b.sessionErr.Load()
		switch {
		case !b.running.Load():
			http.Error(w, "not running", http.StatusServiceUnavailable)
		case !joined && sessionErr != nil:
			http.Error(w, fmt.Sprintf("not in consumer group %s: its session failed (%s); rejoining", b.cfg.Kafka.Group, *sessionErr),
				http.StatusServiceUnavailable)
		case !joined:
			http.Error(w, "not yet in the consumer group", http.StatusServiceUnavailable)
		case refused != nil:
			http.Error(w, fmt.Sprintf("Temporal refuses the bridge's access to namespace %s: %s",
				b.cfg.Temporal.Namespace, refused.cause), http.StatusServiceUnavailable)
		case claimFailure != "":
			http.Error(w, claimFailure, http.StatusServiceUnavailable)
		case len(dlqFailing) > 0:
			for p, err := range dlqFailing {
				http.Error(w, fmt.Sprintf("dead letters of %s cannot be written: %s", p, err), http.StatusServiceUnavailable)
				break
			}
		case stuck != "":
			http.Error(w, stuck, http.StatusServiceUnavailable)
		case hasOpen:
			http.Error(w, "circuit to Temporal ("+open.key.String()+") is "+open.breaker.State().String()+"; the partitions of its topics are paused", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
			for q, err := range b.pressure.unreadableBacklogs() {
				fmt.Fprintf(w, "task queue %s: backlog unreadable (%s); its topics are not paused for it\n", q, err)
			}
		}
	})
	return mux
}

// stuckCommit names a partition whose transactional offset commits fail,
// and why; "" if none.
func (b *Bridge) stuckCommit() string {
	out := ""
	b.stuckCommits.Range(func(k, v any) bool {
		f := k.(*flow)
		out = fmt.Sprintf("offsets of %s/%d cannot be committed: %s; retrying (Temporal has the records, and a restart would deliver those since the last commit again)", f.topic, f.partition, v)
		return false
	})
	return out
}

// claimFailure names a claimed partition that cannot be consumed yet
// (retryClaim), and why; "" if none.
func (b *Bridge) claimFailure() string {
	out := ""
	b.claimFailures.Range(func(k, v any) bool {
		out = fmt.Sprintf("partition %s cannot be consumed yet: %s; retrying", k, v)
		return false
	})
	return out
}
