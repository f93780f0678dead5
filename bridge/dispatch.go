package bridge

import (
	"fmt"
	"sync"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

const (
	// warnPayloadBytes is where Temporal starts warning about payload size.
	warnPayloadBytes = 512 << 10
	// envelopeOverhead estimates an envelope's JSON beyond its key, value
	// and headers: field names, topic, numbers, timestamp.
	envelopeOverhead = 160
)

// record is one routed record on its way to Temporal.
type record struct {
	msg    *sarama.ConsumerMessage
	env    event.Envelope
	target Target
	size   int // what it holds of the in-flight budget (heldSize)
	wire   int // its size as sent to Temporal (wireSize)
}

// unit is the records of one partition batch for one workflow, in offset
// order, or one record of the partition on its way to the DLQ.
type unit struct {
	flow *flow
	// queue is the dispatcher queue it waits in: the workflow ID, or the
	// partition's dead-letter queue (deadLetterQueue).
	queue   string
	target  Target
	records []record
	bytes   int // the sum of the records' sizes (heldSize)
	wire    int // the sum of their sizes as sent (wireSize)
	// dead is the failure to write to the DLQ, for a dead-letter unit.
	dead *dlq.Failure
}

// deadLetterQueue names the dispatcher queue of f's dead letters: one per
// partition, so they are written one at a time, in offset order. No
// workflow ID starts with a NUL byte (route.go refuses control characters).
func deadLetterQueue(f *flow) string {
	return fmt.Sprintf("\x00dlq %s/%d", f.topic, f.partition)
}

// dispatch groups a batch by workflow ID, keeping offset order within each
// group, splits groups over Dispatch.MaxCallBytes, and submits them.
func (b *Bridge) dispatch(f *flow, batch []record) {
	groups := map[string]*unit{}
	var units []*unit
	for _, r := range batch {
		u := groups[r.target.WorkflowID]
		if u == nil || u.wire+r.wire > b.cfg.Dispatch.MaxCallBytes || len(u.records) == b.cfg.Dispatch.WorkflowWindowRecords {
			u = &unit{flow: f, queue: r.target.WorkflowID, target: r.target}
			groups[r.target.WorkflowID] = u
			units = append(units, u)
		}
		u.records = append(u.records, r)
		u.bytes += r.size
		u.wire += r.wire
	}
	for _, u := range units {
		if u.wire > warnPayloadBytes {
			b.log.Warn("large signal payload", "workflow_id", u.target.WorkflowID, "bytes", u.wire, "records", len(u.records))
		}
		f.units.Add(1)
		b.dispatcher.submit(u)
	}
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
	q := d.queues[u.queue]
	if q == nil {
		q = &wfQueue{id: u.queue}
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
// partition, within MaxCallBytes and the room left in the workflow's
// window (awaitWindow waits for the rest). Units of a cancelled partition
// are abandoned. The caller holds d.mu.
func (d *dispatcher) take(q *wfQueue) []*unit {
	var out []*unit
	bytes, records := 0, 0
	roomRecords, roomBytes := d.b.windows.room(q.id)
	for len(q.pending) > 0 {
		u := q.pending[0]
		if u.flow.ctx.Err() != nil {
			q.pending = q.pending[1:]
			u.flow.units.Done()
			continue
		}
		if len(out) > 0 && (u.flow != out[0].flow || bytes+u.wire > d.b.cfg.Dispatch.MaxCallBytes ||
			(u.dead == nil && (records+len(u.records) > roomRecords || bytes+u.wire > roomBytes))) {
			break
		}
		out = append(out, u)
		bytes += u.wire
		records += len(u.records)
		q.pending = q.pending[1:]
	}
	return out
}
