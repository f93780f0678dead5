package bridge

import (
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// Calls that wait. A call that cannot go now (its target's circuit is
// open, a retry's backoff, its workflow's full window, a dead letter the
// DLQ refuses) gives its worker back: its units go back to the head of
// their workflow's queue, which is scheduled again when the wait ends
// (park, hold). So do calls made again in another form: a rejected batch's
// records, each alone (resendAlone), and a closed workflow's records sent
// to a new run (callState.newRun).

// callState is what a call carries across the times it is held
// (heldError): its attempts and the backoffs between them. It travels with
// the call's first unit.
type callState struct {
	attempts int                         // calls made
	retry    *backoff.ExponentialBackOff // between failed calls
	dlq      *backoff.ExponentialBackOff // between failed DLQ writes
	asks     *backoff.ExponentialBackOff // between questions that left the window full
	// asked: the call asked the workflow what it applied, and once the
	// answer is in waits a backoff before it asks again.
	asked bool
	// windowHeld: the call was held by its workflow's window (counted
	// once in windowWaits).
	windowHeld bool
	// newRun: the workflow closed and the call starts a new run of it
	// (dispatch.on_closed_workflow new_run) with startWatermarks, what
	// the closed run applied; records those cover are not sent again. A
	// new-run call that fails is tried again as an ordinary call, which
	// finds whatever run it may have started.
	newRun          bool
	startWatermarks event.Watermarks
	// dead are the failures of the records Temporal refused or that the
	// closed-workflow policy sends to the DLQ, once the call is answered;
	// deliver queues them in the partition's dead-letter queue.
	dead []dlq.Failure
	// closedSkipped and closedMemoless count, for the attempt that
	// finishes the call, the records a closed workflow's memo covered and
	// those of a closed workflow with no memo; deliver adds them to the
	// counters then, so a retried or resent call counts its records once.
	closedSkipped, closedMemoless uint64
}

// next is the next wait of the backoff *bo, which it creates on first use.
func (st *callState) next(b *Bridge, bo **backoff.ExponentialBackOff) time.Duration {
	if *bo == nil {
		*bo = b.newBackoff()
	}
	return (*bo).NextBackOff()
}

// putBack returns units, a call that was not made, to the head of q, but
// for those whose partition has ended, and reports how many it kept. The
// caller holds d.mu.
func (d *dispatcher) putBack(q *wfQueue, units []*unit) int {
	var back []*unit
	for _, u := range units {
		if u.flow.ctx.Err() != nil { // its partition ended (cancelFlow may have run already)
			u.flow.units.Done()
			continue
		}
		back = append(back, u)
	}
	q.pending = append(back, q.pending...)
	return len(back)
}

// resendAlone puts units, a call Temporal rejected as a batch, back at
// the head of q as units of one record each, which take never merges, and
// schedules q: each record then goes in a call of its own, in order, and
// one Temporal rejects is dead-lettered alone. Each new unit holds its
// record's share of what the unit held of the in-flight budget. The caller
// holds d.mu.
func (d *dispatcher) resendAlone(q *wfQueue, units []*unit) {
	var split []*unit
	for _, u := range units {
		bytes := u.bytes
		for i, r := range u.records {
			n := heldSize(r.message(u.flow))
			if i == len(u.records)-1 {
				n = bytes // the rest: the shares add up to what u held
			}
			bytes -= n
			split = append(split, &unit{flow: u.flow, queue: u.queue, base: u.base, route: u.route,
				records: []record{r}, bytes: n, wire: int(r.wire), at: u.at, alone: true})
		}
		u.flow.units.Add(len(u.records) - 1)
	}
	d.putBack(q, split)
}

// park puts units back in q and holds q until c leaves the open state; if
// c has left it since the call was refused (unparks moved on) q is
// scheduled at once. The caller holds d.mu.
func (d *dispatcher) park(q *wfQueue, units []*unit, p *parkedError) {
	d.putBack(q, units)
	if p.c.unparks.Load() == p.gen {
		q.parked = p.c
		if len(d.parked[p.c]) == 0 {
			d.poke(p.c)
		}
		d.parked[p.c] = append(d.parked[p.c], q)
	}
}

// hold puts units back in q and keeps q off the lanes until h's wait ends
// or their partition does; if their partition has ended already, q is not
// held. The caller holds d.mu.
func (d *dispatcher) hold(q *wfQueue, units []*unit, h *heldError) {
	if d.putBack(q, units) == 0 {
		return
	}
	q.waiting = true
	ended := q.pending[0].flow.ctx.Done()
	go func() {
		var timeout <-chan time.Time
		if h.wake == nil {
			t := time.NewTimer(h.after)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-h.wake:
		case <-timeout:
		case <-ended:
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		q.waiting = false
		d.schedule(q)
	}()
}

// poke reads c's state every circuitWait while workflows are parked on
// it: reading it turns an open circuit half-open once open_for has passed,
// which unparks them (watchCircuits does too, while the bridge runs).
func (d *dispatcher) poke(c *circuit) {
	time.AfterFunc(circuitWait, func() {
		_ = c.breaker.State()
		d.mu.Lock()
		again := len(d.parked[c]) > 0 && !d.closed
		d.mu.Unlock()
		if again {
			d.poke(c)
		}
	})
}

// unpark schedules the workflows parked on c.
func (d *dispatcher) unpark(c *circuit) {
	d.mu.Lock()
	defer d.mu.Unlock()
	qs := d.parked[c]
	delete(d.parked, c)
	for _, q := range qs {
		q.parked = nil
		d.schedule(q)
	}
}
