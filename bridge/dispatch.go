package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/sony/gobreaker/v2"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

const (
	// maxPayloadBytes is Temporal's default limit on one payload (2 MiB).
	maxPayloadBytes = 2 << 20
	// warnPayloadBytes is where Temporal starts warning about payload size.
	warnPayloadBytes = 512 << 10
	// envelopeOverhead estimates an envelope's JSON beyond its key, value
	// and headers: field names, topic, numbers, timestamp.
	envelopeOverhead = 160
)

// errAbandoned says a unit was not finished because its partition was
// revoked or the bridge is stopping; its records will be redelivered.
var errAbandoned = errors.New("abandoned: partition revoked or bridge stopping")

// record is one routed record on its way to Temporal.
type record struct {
	msg    *sarama.ConsumerMessage
	env    event.Envelope
	target Target
	size   int
}

// unit is the records of one partition batch for one workflow, in offset order.
type unit struct {
	flow    *flow
	target  Target
	records []record
	bytes   int // the sum of the records' sizes
}

// wfQueue holds one workflow's units that wait for its in-flight call.
type wfQueue struct {
	id      string
	pending []*unit
	busy    bool // a worker is calling this workflow
	queued  bool // q is in dispatcher.ready
}

// dispatcher sends units to Temporal. Each workflow ID has a FIFO queue and
// at most one call in flight, across all partitions and topics; Concurrency
// workers serve the workflows in turn. When a workflow becomes free, the
// units that queued behind its last call (from the same partition) are
// merged into one call, so a hot key gets larger calls, not more of them.
type dispatcher struct {
	b      *Bridge
	mu     sync.Mutex
	cond   *sync.Cond
	queues map[string]*wfQueue // workflows with work queued or in flight
	ready  []*wfQueue          // workflows with work and no call in flight, FIFO
	closed bool
	wg     sync.WaitGroup
}

func newDispatcher(b *Bridge) *dispatcher {
	d := &dispatcher{b: b, queues: map[string]*wfQueue{}}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// start runs n workers.
func (d *dispatcher) start(n int) {
	for range n {
		d.wg.Go(d.work)
	}
}

// stop lets the workers finish their current call and waits for them.
// Call it once no partition is consuming.
func (d *dispatcher) stop() {
	d.mu.Lock()
	d.closed = true
	d.cond.Broadcast()
	d.mu.Unlock()
	d.wg.Wait()
}

// submit queues u behind its workflow's earlier units.
func (d *dispatcher) submit(u *unit) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[u.target.WorkflowID]
	if q == nil {
		q = &wfQueue{id: u.target.WorkflowID}
		d.queues[q.id] = q
	}
	q.pending = append(q.pending, u)
	d.schedule(q)
}

// schedule puts q on the ready list if it has work and no call in flight.
// The caller holds d.mu.
func (d *dispatcher) schedule(q *wfQueue) {
	switch {
	case q.busy || q.queued:
	case len(q.pending) > 0:
		q.queued = true
		d.ready = append(d.ready, q)
		d.cond.Signal()
	default:
		delete(d.queues, q.id)
	}
}

// cancelFlow abandons every queued unit of f, so a revoked partition
// need not wait behind other partitions' calls.
func (d *dispatcher) cancelFlow(f *flow) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.queues {
		kept := q.pending[:0]
		for _, u := range q.pending {
			if u.flow == f {
				f.units.Done()
				continue
			}
			kept = append(kept, u)
		}
		clear(q.pending[len(kept):])
		q.pending = kept
	}
}

func (d *dispatcher) work() {
	for {
		d.mu.Lock()
		for len(d.ready) == 0 && !d.closed {
			d.cond.Wait()
		}
		if len(d.ready) == 0 {
			d.mu.Unlock()
			return
		}
		q := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		q.queued, q.busy = false, true
		units := d.take(q)
		d.mu.Unlock()

		if len(units) > 0 {
			d.deliver(units)
		}

		d.mu.Lock()
		q.busy = false
		d.schedule(q)
		d.mu.Unlock()
	}
}

// take removes the next call's units from q: consecutive units of one
// partition, within MaxCallBytes. Units of a cancelled partition are
// abandoned. The caller holds d.mu.
func (d *dispatcher) take(q *wfQueue) []*unit {
	var out []*unit
	bytes := 0
	for len(q.pending) > 0 {
		u := q.pending[0]
		if u.flow.ctx.Err() != nil {
			q.pending = q.pending[1:]
			u.flow.units.Done()
			continue
		}
		if len(out) > 0 && (u.flow != out[0].flow || bytes+u.bytes > d.b.cfg.Dispatch.MaxCallBytes) {
			break
		}
		out = append(out, u)
		bytes += u.bytes
		q.pending = q.pending[1:]
	}
	return out
}

// deliver makes one call for units and finishes or abandons them.
func (d *dispatcher) deliver(units []*unit) {
	f := units[0].flow
	var recs []record
	for _, u := range units {
		recs = append(recs, u.records...)
	}
	err := d.b.send(f, units[0].target, recs)
	for _, u := range units {
		if err != nil {
			u.flow.units.Done()
			continue
		}
		f.finish(u)
	}
}

// send delivers recs, in order, to target's workflow: Temporal accepts
// them, or each is skipped, dropped or dead-lettered as the errors and the
// closed-workflow policy say. Retryable errors are retried until the
// partition's context ends, and then send returns errAbandoned.
func (b *Bridge) send(f *flow, target Target, recs []record) error {
	batch := event.Batch{Events: make([]event.Envelope, len(recs))}
	for i, r := range recs {
		batch.Events[i] = r.env
	}
	ctx, span := b.deliverSpan(f.callCtx, target, recs)
	var sendErr error
	defer func() { endSpan(span, sendErr) }()
	retry := b.newBackoff()
	for attempt := 1; ; attempt++ {
		err := b.call(ctx, f, target, batch)
		for errors.Is(err, errCircuitOpen) { // no call was made; this is not an attempt
			if sleep(f.ctx, jitter(circuitWait)) != nil {
				return errAbandoned
			}
			err = b.call(ctx, f, target, batch)
		}
		sendErr = err
		if errors.Is(err, errAbandoned) {
			return err
		}
		if err == nil {
			b.delivered.Add(uint64(len(recs)))
			b.calls.Add(1)
			if attempt > 1 {
				b.log.Info("delivered after retries", "workflow_id", target.WorkflowID, "attempts", attempt, "records", len(recs))
			}
			return nil
		}
		switch classify(err) {
		case kindPermanent:
			if len(recs) > 1 { // isolate the record Temporal rejects: resend one by one, in order
				for _, r := range recs {
					if err := b.send(f, target, []record{r}); err != nil {
						return err
					}
				}
				return nil
			}
			for _, r := range recs {
				fl := dlq.FromMessage(r.msg, dlq.ClassRejected, err, attempt, b.deps.Now())
				fl.WorkflowID = target.WorkflowID
				if derr := b.deadLetter(f, fl); derr != nil {
					return errAbandoned
				}
			}
			return nil
		case kindClosed:
			done, cerr := b.closedWorkflow(f, target, recs, attempt)
			if done {
				return cerr
			}
			err = cerr
		}
		b.retries.Add(1)
		wait := retry.NextBackOff()
		if attempt == 1 {
			first := recs[0].msg
			b.log.Log(f.ctx, b.retryLogLevel(), "temporal call failed; retrying", "workflow_id", target.WorkflowID, "records", len(recs),
				"topic", first.Topic, "partition", first.Partition, "offset", first.Offset, "err", err, "retry_in", wait)
		}
		if sleep(f.ctx, wait) != nil {
			return errAbandoned
		}
	}
}

// closedWorkflow handles records whose workflow has closed. Records the
// closed run already applied are redeliveries and are skipped; the others
// follow Dispatch.OnClosedWorkflow. done is false when the closed run's
// memo could not be read, so the caller retries.
func (b *Bridge) closedWorkflow(f *flow, target Target, recs []record, attempt int) (done bool, err error) {
	applied, err := b.deps.Temporal.ClosedWatermarks(f.callCtx, target.WorkflowID)
	if err != nil {
		return false, err
	}
	var fresh []record
	for _, r := range recs {
		if applied.Covers(r.env.Position()) {
			b.closedRedeliveries.Add(1)
			continue
		}
		fresh = append(fresh, r)
	}
	if len(fresh) == 0 {
		return true, nil
	}
	switch b.cfg.Dispatch.OnClosedWorkflow {
	case OnClosedDrop:
		b.droppedClosed.Add(uint64(len(fresh)))
		b.log.Warn("dropped records for a closed workflow", "workflow_id", target.WorkflowID, "records", len(fresh),
			"first", fresh[0].env.Position().String())
		return true, nil
	case OnClosedNewRun:
		next := target
		next.NewRun = true
		b.log.Info("starting a new run of a closed workflow", "workflow_id", target.WorkflowID, "records", len(fresh))
		return true, b.send(f, next, fresh)
	default:
		for _, r := range fresh {
			fl := dlq.FromMessage(r.msg, dlq.ClassWorkflowClosed,
				fmt.Errorf("workflow %s has closed and did not apply this record", target.WorkflowID), attempt, b.deps.Now())
			fl.WorkflowID = target.WorkflowID
			if err := b.deadLetter(f, fl); err != nil {
				return true, errAbandoned
			}
		}
		return true, nil
	}
}

// retryLogEvery is how often a failed call is logged at warn level; in an
// outage every unit fails at once, and one line says it as well as a thousand.
const retryLogEvery = 5 * time.Second

// retryLogLevel is warn for the first failed call in retryLogEvery and
// debug for the others.
func (b *Bridge) retryLogLevel() slog.Level {
	now := b.deps.Now().UnixNano()
	last := b.lastRetryWarn.Load()
	if now-last >= int64(retryLogEvery) && b.lastRetryWarn.CompareAndSwap(last, now) {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// errCircuitOpen says a call was not made because the circuit is open.
var errCircuitOpen = errors.New("circuit to Temporal is open")

// circuitWait is how long, before jitter, a call waits when the circuit is
// open; the breaker lets one probe through after backpressure.circuit.open_for.
const circuitWait = 500 * time.Millisecond

// call makes one SignalWithStart within the adaptive concurrency limit,
// through the circuit breaker, bounded by Dispatch.CallTimeout. ctx is the
// partition's call context with the delivery span. It returns errAbandoned
// if the partition ended while waiting for a slot, and errCircuitOpen if
// the breaker refused the call.
func (b *Bridge) call(ctx context.Context, f *flow, target Target, batch event.Batch) error {
	if err := b.limiter.acquire(f.ctx); err != nil {
		return errAbandoned
	}
	start := time.Now()
	_, err := b.breaker.Execute(func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.Dispatch.CallTimeout)
		defer cancel()
		return struct{}{}, b.deps.Temporal.SignalWithStart(ctx, target, batch)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		b.limiter.abort()
		return errCircuitOpen
	}
	latency := time.Since(start)
	outcome := outcomeOK
	if err != nil {
		switch classify(err) {
		case kindPermanent:
			outcome = outcomePermanent
		case kindClosed:
			outcome = outcomeClosed
		default:
			outcome = outcomeRetryable
		}
	}
	b.limiter.done(latency, outcome == outcomeRetryable && !cancelled(err))
	b.metrics.callDuration.WithLabelValues(outcome).Observe(latency.Seconds())
	return err
}

// cancelled says err comes from the bridge cancelling the call (shutdown
// or revocation), which says nothing about Temporal's health.
func cancelled(err error) bool {
	var c *serviceerror.Canceled
	return errors.Is(err, context.Canceled) || errors.As(err, &c)
}

// jitter returns a duration between d/2 and 3d/2.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}
