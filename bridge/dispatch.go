package bridge

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

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

// record is one routed record on its way to Temporal, as its unit holds
// it while it waits.
//
// A record may be held for seconds while a backlog drains, so it keeps
// only what differs between two records of its partition: the topic,
// partition and topic ID are its flow's, and its workflow and route are
// its unit's. envelope rebuilds what is sent, message the Kafka record
// (for the DLQ and tracing). 112 bytes, where a whole event.Envelope with
// the workflow and route beside it took 216.
type record struct {
	offset int64
	// sec and nsec are the Kafka timestamp (time.Unix, in UTC); the zero
	// time is kept as the zero time.
	sec   int64
	value []byte // Envelope.Value (payload "json") or, with raw, Envelope.Raw
	key   string
	typ   string // the event type
	// headers are the Kafka record's headers, in order; nil when none.
	headers []event.Header
	nsec    int32
	wire    int32 // its size as sent to Temporal (wireSize)
	// raw: the route's payload is "bytes" (value goes to Envelope.Raw).
	raw bool
	// keyless: the Kafka record had a null key (key cannot say).
	keyless bool
}

// routed is a record just routed, with what it takes to group it into
// units (dispatch); the unit then holds these for all its records.
type routed struct {
	record
	id    string  // the workflow it goes to
	base  *Target // its route's target, but for the workflow ID (shared)
	size  int32   // what it holds of the in-flight budget (heldSize)
	route int32   // the index of its route in the configuration
}

// newRecord keeps what env says of one record beyond its partition.
func newRecord(env event.Envelope, wire int, keyless bool) record {
	r := record{offset: env.Offset, key: env.Key, typ: env.Type, headers: env.Headers, wire: int32(wire), keyless: keyless}
	r.sec, r.nsec = env.Timestamp.Unix(), int32(env.Timestamp.Nanosecond())
	r.value, r.raw = env.Value, env.Value == nil
	if r.raw {
		r.value = env.Raw
	}
	return r
}

// envelope is r as sent to a workflow: f is the partition it was read from.
func (r *record) envelope(f *flow) event.Envelope {
	e := event.Envelope{
		Topic: f.topic, Partition: f.partition, Offset: r.offset, TopicID: f.topicID,
		Type: r.typ, Headers: r.headers, Timestamp: time.Unix(r.sec, int64(r.nsec)).UTC(),
	}
	e.SetKey(r.key)
	e.KeyNull = r.keyless
	if r.raw {
		e.Raw = r.value
		e.ValueEmpty = r.value != nil && len(r.value) == 0
	} else {
		e.Value = json.RawMessage(r.value)
	}
	return e
}

// position is where r sits in Kafka; f is its partition.
func (r *record) position(f *flow) event.Position {
	return event.Position{Topic: f.topic, Partition: f.partition, Offset: r.offset, TopicID: f.topicID}
}

// message rebuilds the Kafka record r came from, for the DLQ and tracing;
// f is its partition.
func (r *record) message(f *flow) *sarama.ConsumerMessage {
	m := &sarama.ConsumerMessage{Topic: f.topic, Partition: f.partition, Offset: r.offset,
		Timestamp: time.Unix(r.sec, int64(r.nsec)).UTC(), Value: r.value, Headers: r.saramaHeaders()}
	if !r.keyless {
		m.Key = []byte(r.key)
	}
	return m
}

// saramaHeaders rebuilds the Kafka record's headers, in order.
func (r *record) saramaHeaders() []*sarama.RecordHeader {
	var hs []*sarama.RecordHeader
	for _, h := range r.headers {
		hs = append(hs, &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	return hs
}

// unit is the records of one partition batch for one workflow, in offset
// order, or one record of the partition on its way to the DLQ.
type unit struct {
	flow *flow
	// queue is the dispatcher queue it waits in: the workflow ID, or the
	// partition's dead-letter queue (deadLetterQueue).
	queue string
	// base is the records' route's target, shared (see target); nil for
	// a dead letter.
	base *Target
	// route is the index of the records' route, -1 for a dead letter.
	route   int
	records []record
	bytes   int // the sum of the records' sizes (heldSize)
	wire    int // the sum of their sizes as sent (wireSize)
	// dead is the failure to write to the DLQ, for a dead-letter unit.
	dead *dlq.Failure
	// at is when it was submitted: the dispatch window counts from it.
	at time.Time
	// call is the state of the call it heads that was held (heldError);
	// nil until then.
	call *callState
	// alone: a record of a batch Temporal rejected, resent in a call of
	// its own (resendAlone); take merges no other unit with it.
	alone bool
}

// target is where u's records go: its route's target with its workflow
// ID. A unit holds the route's shared target rather than a copy, since
// units wait in memory while a backlog drains.
func (u *unit) target() Target {
	t := *u.base
	t.WorkflowID = u.queue
	return t
}

// dispatch groups a batch by workflow ID, keeping offset order within each
// group, splits groups over Dispatch.MaxCallBytes, and submits them.
func (b *Bridge) dispatch(f *flow, batch []routed) {
	groups := map[string]*unit{}
	var units []*unit
	for _, r := range batch {
		u := groups[r.id]
		if u == nil || u.route != int(r.route) || u.wire+int(r.wire) > b.cfg.Dispatch.MaxCallBytes || len(u.records) == b.cfg.Dispatch.WorkflowWindowRecords {
			// A record of another route (another target, other start
			// options) starts a new unit; the units stay in offset order.
			u = &unit{flow: f, queue: r.id, base: r.base, route: int(r.route)}
			groups[r.id] = u
			units = append(units, u)
		}
		// The unit's records share its strings: each record's own copy of
		// the workflow ID, and of the key when it is the same, is then
		// garbage once the batch is dispatched.
		if len(u.records) > 0 && r.key == u.records[0].key {
			r.key = u.records[0].key
		}
		u.records = append(u.records, r.record)
		u.bytes += int(r.size)
		u.wire += int(r.wire)
	}
	for _, u := range units {
		if cap(u.records) > len(u.records)+len(u.records)/8 {
			// A unit may wait for seconds (the dispatch window, a busy
			// workflow, a full budget): hold its records without the
			// slack that appending left.
			u.records = slices.Clone(u.records)
		}
		if u.wire > warnPayloadBytes {
			b.log.Warn("large signal payload", "workflow_id", u.queue, "bytes", u.wire, "records", len(u.records))
		}
		f.units.Add(1)
		b.dispatcher.submit(u)
	}
}

// wfQueue holds one workflow's units that wait for its in-flight call.
type wfQueue struct {
	id      string
	pending []*unit
	busy    bool     // a worker is calling this workflow
	queued  bool     // q is in a lane's ready list
	waiting bool     // q waits out the dispatch window or a hold (a timer or an answer will schedule q)
	parked  *circuit // q waits for this circuit to leave the open state; nil if not parked
}

// lane holds the ready workflows of one route; lane 0 holds the
// partitions' dead-letter queues.
type lane struct {
	ready []*wfQueue // FIFO
	busy  int        // workers serving the lane
	max   int        // the most workers it may hold (routes[].concurrency); 0: no cap
}

// dispatcher sends units to Temporal. Each workflow ID has a FIFO queue and
// at most one call in flight, across all partitions and topics. Workers
// take ready workflows from the lanes (one per route) in turn, skipping a
// lane that holds its routes[].concurrency of workers, so a busy route
// never makes another wait behind all its queued workflows. When a
// workflow becomes free, the units that queued behind its last call (from
// the same partition and route) are merged into one call, so a hot key
// gets larger calls, not more of them. While the bridge is catching up,
// workers take the ready workflow with the most to send instead of the
// first (choose). A workflow whose target's circuit is open is parked,
// holding no worker, until the circuit turns half-open.
type dispatcher struct {
	b      *Bridge
	mu     sync.Mutex
	cond   *sync.Cond
	queues map[string]*wfQueue // workflows with work queued, parked or in flight
	lanes  []*lane
	next   int // the lane the next pick looks at first
	parked map[*circuit][]*wfQueue
	closed bool
	wg     sync.WaitGroup
}

func newDispatcher(b *Bridge) *dispatcher {
	d := &dispatcher{b: b, queues: map[string]*wfQueue{}, lanes: []*lane{{}}, parked: map[*circuit][]*wfQueue{}}
	for _, r := range b.cfg.Routes {
		d.lanes = append(d.lanes, &lane{max: r.Concurrency})
	}
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
	u.at = d.b.deps.Now()
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

// schedule puts q on its head unit's lane if it has work, no call in
// flight, is not parked and its head unit has waited out the dispatch
// window (dead letters never wait). The caller holds d.mu.
func (d *dispatcher) schedule(q *wfQueue) {
	switch {
	case q.busy || q.queued || q.waiting || q.parked != nil:
	case len(q.pending) > 0 && q.pending[0].route >= 0 && d.linger(q):
	case len(q.pending) > 0:
		q.queued = true
		l := d.lanes[q.pending[0].route+1]
		l.ready = append(l.ready, q)
		d.cond.Signal()
	default:
		delete(d.queues, q.id)
	}
}

// linger reports whether q's head unit is inside the dispatch window, and
// if so sets a timer that schedules q when the window ends. The caller
// holds d.mu.
func (d *dispatcher) linger(q *wfQueue) bool {
	w := d.b.coalescerFor(q.pending[0].base.TaskQueue).Window()
	if w <= 0 {
		return false
	}
	wait := q.pending[0].at.Add(w).Sub(d.b.deps.Now())
	if wait <= 0 {
		return false
	}
	q.waiting = true
	time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		q.waiting = false
		d.schedule(q)
	})
	return true
}

// pick takes the next ready workflow, looking at the lanes in turn and
// skipping those at their cap; nil if none. The caller holds d.mu.
func (d *dispatcher) pick() (*wfQueue, *lane) {
	n := len(d.lanes)
	for i := range n {
		at := (d.next + i) % n
		l := d.lanes[at]
		if len(l.ready) == 0 || (l.max > 0 && l.busy >= l.max) {
			continue
		}
		q := l.ready[0]
		if i := d.choose(l.ready); i > 0 {
			q = l.ready[i]
			l.ready = slices.Delete(l.ready, i, i+1)
		} else {
			l.ready[0] = nil
			l.ready = l.ready[1:]
		}
		d.next = (at + 1) % n
		return q, l
	}
	return nil, nil
}

// choose returns the index in ready of the workflow to serve next.
// Ordinarily that is the first to become ready. While the bridge holds
// all it may read (pressure.full) it is catching up: more waits in Kafka,
// so a call should carry as many records as it can: the
// workflow whose waiting records × the wait of its oldest is the largest
// goes first. A hot key then gets large calls and a rare key's records
// gather while it waits, so a backlog drains in fewer calls; the wait in
// the product means a workflow with few records goes once it has waited
// as long as the others' records make up for, so none is starved. The
// caller holds d.mu.
func (d *dispatcher) choose(ready []*wfQueue) int {
	if len(ready) < 2 || !d.b.pressure.full() {
		return 0
	}
	now := d.b.deps.Now()
	best, bestScore := 0, -1.0
	for i, q := range ready {
		if len(q.pending) == 0 {
			return i // its units were abandoned (cancelFlow): clear it at once
		}
		records := 0
		for _, u := range q.pending {
			records += len(u.records)
		}
		if score := float64(records) * float64(now.Sub(q.pending[0].at)+time.Millisecond); score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
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
		q, l := d.pick()
		for q == nil && !d.closed {
			d.cond.Wait()
			q, l = d.pick()
		}
		if q == nil {
			d.mu.Unlock()
			return
		}
		q.queued, q.busy = false, true
		l.busy++
		units := d.take(q)
		d.mu.Unlock()

		var back []*unit
		var wait error
		if len(units) > 0 {
			back, wait = d.deliver(units)
		}

		d.mu.Lock()
		q.busy = false
		l.busy--
		var parked *parkedError
		var held *heldError
		switch {
		case errors.As(wait, &parked):
			d.park(q, back, parked)
		case errors.As(wait, &held):
			d.hold(q, back, held)
		case errors.Is(wait, errResendAlone):
			d.resendAlone(q, back)
		}
		d.schedule(q)
		if len(l.ready) > 0 {
			d.cond.Signal() // the lane may have been at its cap
		}
		d.mu.Unlock()
	}
}

// take removes the next call's units from q: consecutive units of one
// partition and route, within MaxCallBytes and the room left in the
// workflow's window (windowRoom holds the rest). Units of a cancelled
// partition are abandoned. The caller holds d.mu.
func (d *dispatcher) take(q *wfQueue) []*unit {
	var out []*unit
	bytes, records := 0, 0
	workflowType := ""
	if len(q.pending) > 0 && q.pending[0].base != nil {
		workflowType = q.pending[0].base.WorkflowType
	}
	roomRecords, roomBytes := d.b.windows.room(q.id, workflowType)
	for len(q.pending) > 0 {
		u := q.pending[0]
		if u.flow.ctx.Err() != nil {
			q.pending = q.pending[1:]
			u.flow.units.Done()
			continue
		}
		if len(out) > 0 && (u.alone || out[0].alone || u.flow != out[0].flow || u.route != out[0].route || bytes+u.wire > d.b.cfg.Dispatch.MaxCallBytes ||
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
