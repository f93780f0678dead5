package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// path is how a latency run's records reach the ledgers. It is used from
// one goroutine.
type path interface {
	// send hands recs on, stamped with the time of the call.
	send(recs []ledger.Record) error
	// flush waits until it holds no record that it could still send (the
	// engine's records wait in Kafka instead: it returns at once).
	flush(ctx context.Context) error
	// calls returns how many calls it has made to Temporal so far.
	calls() int
	// holds returns how many calls it has held back so far until a
	// workflow applied what it was sent (the engine's
	// dispatch.workflow_window_*; none for the window client).
	holds() int
	// gauges sums up, in buckets of step from start, what the path's own
	// flow control did ("" when it has none to show or was not sampled).
	gauges(start time.Time, step time.Duration) string
	// close stops it; the records it still holds are dropped.
	close() error
}

// enginePath is the engine: records produced to Kafka, and the bridge
// consuming them.
type enginePath struct {
	topic    string
	producer sarama.SyncProducer
	bridge   *bridge.Bridge
	done     func() error
	sampler  *gaugeSampler // nil unless a timeline is printed
}

// openEngine creates topic and starts a bridge on it (routing to ledgers
// on task queue topic) and a producer.
func (h *harness) openEngine(ctx context.Context, topic string) (path, error) {
	if err := h.kafka.Cluster.CreateTopic(topic, int32(h.o.partitions), nil); err != nil {
		return nil, fmt.Errorf("create topic %s: %w", topic, err)
	}
	b, done, err := h.runBridge(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("start the bridge on %s: %w", topic, err)
	}
	time.Sleep(3 * time.Second) // let the group settle before the clock matters
	p, err := sarama.NewSyncProducer(h.kafka.Brokers, saga.ProducerConfig())
	if err != nil {
		return nil, cmp.Or(fmt.Errorf("producer: %w", err), done())
	}
	e := &enginePath{topic: topic, producer: p, bridge: b, done: done}
	if h.o.timeline > 0 {
		e.sampler = sampleGauges(b.Handler(), 250*time.Millisecond)
	}
	return e, nil
}

func (e *enginePath) send(recs []ledger.Record) error {
	_, err := ledger.Produce(e.producer, e.topic, recs)
	return err
}

func (e *enginePath) flush(context.Context) error { return nil }

func (e *enginePath) calls() int { return int(e.bridge.Stats().Calls) }

func (e *enginePath) holds() int { return int(e.bridge.Stats().WindowWaits) }

func (e *enginePath) gauges(start time.Time, step time.Duration) string {
	if e.sampler == nil {
		return ""
	}
	return e.sampler.timeline(start, step)
}

func (e *enginePath) close() error {
	if e.sampler != nil {
		e.sampler.close()
	}
	err := e.done()
	_ = e.producer.Close()
	if err != nil {
		return fmt.Errorf("bridge on %s: %w", e.topic, err)
	}
	return nil
}

// windowPath is the fixed-window plain client (d), fed in-process.
type windowPath struct {
	topic string
	// topicID and partitions, when set, give each envelope a topic ID and
	// a partition (its key's hash), as the engine's envelopes carry.
	topicID    string
	partitions int
	client     *windowClient
	cancel     context.CancelFunc
	offset     int64 // the last offset given: a ledger admits increasing offsets
}

// openWindow starts a window client with window w, sending to ledgers on
// task queue topic, o.concurrency calls in flight.
func (h *harness) openWindow(ctx context.Context, topic string, w time.Duration) path {
	return h.openWindowWith(ctx, topic, w, ledgerSender(h.tc, topic))
}

// openWindowWith is openWindow with its calls made by send.
func (h *harness) openWindowWith(ctx context.Context, topic string, w time.Duration, send sendFunc) path {
	cctx, cancel := context.WithCancel(ctx)
	c := newWindowClient(cctx, w, h.o.concurrency, send, realAfter)
	p := &windowPath{topic: topic, client: c, cancel: cancel}
	if h.o.windowKafkaFields {
		id := uuid.New()
		p.topicID, p.partitions = base64.RawURLEncoding.EncodeToString(id[:]), h.o.partitions
	}
	return p
}

func (p *windowPath) send(recs []ledger.Record) error {
	now := time.Now()
	for _, r := range recs {
		p.offset++
		e := event.Envelope{Topic: p.topic, Offset: p.offset, Key: r.Key, Value: json.RawMessage(r.Value), Timestamp: cmp.Or(r.Time, now)}
		if p.topicID != "" {
			h := fnv.New32a()
			h.Write([]byte(r.Key))
			e.TopicID, e.Partition = p.topicID, int32(h.Sum32()%uint32(p.partitions))
		}
		p.client.Add(e)
	}
	return nil
}

func (p *windowPath) flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	return p.client.Wait(ctx)
}

func (p *windowPath) calls() int { return p.client.Calls() }

func (p *windowPath) holds() int { return 0 }

func (p *windowPath) gauges(time.Time, time.Duration) string { return "" }

func (p *windowPath) close() error { p.cancel(); return nil }

// waitApplied waits until the ledger of every key has applied a record
// (its applied query answers watermarks), asking o.concurrency at a time.
func (h *harness) waitApplied(ctx context.Context, keys map[string]int) error {
	pending := slices.Collect(maps.Keys(keys))
	deadline := time.Now().Add(10 * time.Minute)
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d ledgers (e.g. ledger-%s) applied nothing in 10 minutes", len(pending), pending[0])
		}
		var mu sync.Mutex
		var still []string
		_ = forEach(pending, h.o.concurrency, func(k string) error {
			var wm event.Watermarks
			v, err := h.tc.QueryWorkflow(ctx, "ledger-"+k, "", event.AppliedQuery)
			if err == nil {
				err = v.Get(&wm)
			}
			if err != nil || len(wm) == 0 {
				mu.Lock()
				still = append(still, k)
				mu.Unlock()
			}
			return nil
		})
		if pending = still; len(pending) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// readLedgers returns each key's ledger's final state; its latencies are
// in the order it applied its records.
func (h *harness) readLedgers(ctx context.Context, keys map[string]int) (map[string]ledger.State, error) {
	var mu sync.Mutex
	out := map[string]ledger.State{}
	err := forEach(slices.Collect(maps.Keys(keys)), 16, func(k string) error {
		var st ledger.State
		if err := h.tc.GetWorkflow(ctx, "ledger-"+k, "").Get(ctx, &st); err != nil {
			return fmt.Errorf("read ledger-%s: %w", k, err)
		}
		mu.Lock()
		out[k] = st
		mu.Unlock()
		return nil
	})
	return out, err
}

// forEach runs f on every item, n at a time, and returns the first error.
func forEach(items []string, n int, f func(string) error) error {
	sem := make(chan struct{}, max(1, n))
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(it); err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// runHistories describes every run of key's ledger, oldest first: when it
// started (from start), the size of its input, how long its first workflow
// task waited to be picked up, its events and signals, its n longest gaps
// between consecutive events, and how it closed. It shows where a key's
// records waited across ContinueAsNew.
func (h *harness) runHistories(ctx context.Context, key string, start time.Time, n int) string {
	var runs []string
	runID := ""
	for range 100 { // runs, newest first, until the first
		line, prev, err := h.runHistory(ctx, key, runID, start, n)
		if err != nil {
			runs = append(runs, fmt.Sprintf("    ledger-%s run %s: %v\n", key, runID, err))
			break
		}
		runs = append(runs, line)
		if prev == "" {
			break
		}
		runID = prev
	}
	slices.Reverse(runs)
	return strings.Join(runs, "")
}

// runHistory describes one run of key's ledger (runHistories) and returns
// the ID of the run it continued, if any.
func (h *harness) runHistory(ctx context.Context, key, runID string, start time.Time, n int) (string, string, error) {
	type gap struct {
		d        time.Duration
		from, to string
	}
	var (
		gaps               []gap
		prev               *historypb.HistoryEvent
		events, signals    int
		inputBytes         int
		continued, closing string
		begun, closedAt    time.Time
		firstWait          time.Duration = -1
		scheduledAt        time.Time
		timeouts           []string // each timed-out workflow task's timeout type
	)
	it := h.tc.GetWorkflowHistory(ctx, "ledger-"+key, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return "", "", err
		}
		events++
		at := ev.GetEventTime().AsTime()
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			begun, continued = at, a.GetContinuedExecutionRunId()
			for _, p := range a.GetInput().GetPayloads() {
				inputBytes += len(p.GetData())
			}
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			signals++
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			// ScheduleToStart: a task on the worker's sticky queue was not
			// picked up in time (StickyScheduleToStartTimeout) and went to the
			// normal queue; StartToClose: the worker took too long over it.
			timeouts = append(timeouts, ev.GetWorkflowTaskTimedOutEventAttributes().GetTimeoutType().String())
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
			if firstWait < 0 && scheduledAt.IsZero() {
				scheduledAt = at
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			if firstWait < 0 {
				firstWait = at.Sub(scheduledAt)
			}
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
			closing, closedAt = strings.TrimPrefix(ev.GetEventType().String(), "WorkflowExecution"), at
		}
		if prev != nil {
			gaps = append(gaps, gap{d: at.Sub(prev.GetEventTime().AsTime()), from: prev.GetEventType().String(), to: ev.GetEventType().String()})
		}
		prev = ev
	}
	slices.SortFunc(gaps, func(a, b gap) int { return cmp.Compare(b.d, a.d) })
	var b strings.Builder
	end := "open"
	if closing != "" {
		end = fmt.Sprintf("%s at %.1f s", closing, closedAt.Sub(start).Seconds())
	}
	kinds := ""
	if len(timeouts) > 0 {
		kinds = " (" + strings.Join(timeouts, ", ") + ")"
	}
	fmt.Fprintf(&b, "    ledger-%s run from %.1f s: input %d B, first task waited %d ms, %d events, %d signals, %d task timeouts%s, %s\n",
		key, begun.Sub(start).Seconds(), inputBytes, firstWait.Milliseconds(), events, signals, len(timeouts), kinds, end)
	for _, g := range gaps[:min(n, len(gaps))] {
		fmt.Fprintf(&b, "      gap %6d ms: %s -> %s\n", g.d.Milliseconds(), g.from, g.to)
	}
	return b.String(), continued, nil
}
