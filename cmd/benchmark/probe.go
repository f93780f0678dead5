package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// capacity is how fast a Temporal server took calls in the probe, in calls
// per second, concurrency of them in flight.
type capacity struct {
	// starts is SignalWithStart of new ledgers, one event each.
	starts float64
	// signals is Signal of running ledgers, one event each.
	signals float64
}

// probe measures the capacity of the server of the run that runs now, with
// a worker on a task queue of its own: for o.probeFor it starts new ledgers
// (SignalWithStart, one event each), then for o.probeFor more it signals
// them (one event per call), o.concurrency calls in flight. It then
// terminates them, so that the measured run starts with no workflow task of
// the probe's left.
func (h *harness) probe(ctx context.Context) (capacity, error) {
	tq := h.fresh("probe", workload{name: "server"})
	stop, err := h.startWorker(tq)
	if err != nil {
		return capacity{}, fmt.Errorf("probe: %w", err)
	}
	defer stop()
	n := h.o.concurrency
	ids := make([][]string, n) // ids[g] are the ledgers goroutine g started
	seq := make([]int64, n)    // goroutine g's last offset: its ledgers' offsets increase
	// A total no ledger reaches keeps the probe's ledgers running.
	value, _ := json.Marshal(ledger.Value{Seq: 1, Total: 1 << 30})
	env := func(g int, key string) event.Batch {
		seq[g]++
		return event.Batch{Events: []event.Envelope{{Topic: tq, Offset: seq[g], Key: key, Value: value, Timestamp: time.Now()}}}
	}
	starts, err := h.probePhase(ctx, func(g int) error {
		key := fmt.Sprintf("%s-%d-%d", tq, g, len(ids[g]))
		id := "ledger-" + key
		_, err := h.tc.SignalWithStartWorkflow(ctx, id, event.DefaultSignal, env(g, key),
			client.StartWorkflowOptions{ID: id, TaskQueue: tq}, ledger.WorkflowType)
		if err == nil {
			ids[g] = append(ids[g], id)
		}
		return err
	})
	if err != nil {
		return capacity{}, fmt.Errorf("probe starts: %w", err)
	}
	next := make([]int, n)
	signals, err := h.probePhase(ctx, func(g int) error {
		if len(ids[g]) == 0 {
			return fmt.Errorf("goroutine %d started no ledger", g)
		}
		id := ids[g][next[g]%len(ids[g])]
		next[g]++
		return h.tc.SignalWorkflow(ctx, id, "", event.DefaultSignal, env(g, id[len("ledger-"):]))
	})
	if err != nil {
		return capacity{}, fmt.Errorf("probe signals: %w", err)
	}
	return capacity{starts: starts, signals: signals}, h.terminateAll(ctx, ids)
}

// probePhase runs call on o.concurrency goroutines (call's argument) for
// o.probeFor and returns the successful calls per second.
func (h *harness) probePhase(ctx context.Context, call func(g int) error) (float64, error) {
	var mu sync.Mutex
	var calls int
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(h.o.probeFor)
	for g := range h.o.concurrency {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				err := call(g)
				mu.Lock()
				if err == nil {
					calls++
				} else if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(calls) / time.Since(start).Seconds(), nil
}

// terminateAll terminates the probe's ledgers, o.concurrency at a time.
func (h *harness) terminateAll(ctx context.Context, ids [][]string) error {
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for _, list := range ids {
		wg.Go(func() {
			for _, id := range list {
				err := h.tc.TerminateWorkflow(ctx, id, "", "capacity probe done")
				var nf *serviceerror.NotFound
				if err != nil && !errors.As(err, &nf) {
					mu.Lock()
					firstErr = cmp.Or(firstErr, fmt.Errorf("terminate probe ledger %s: %w", id, err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}
