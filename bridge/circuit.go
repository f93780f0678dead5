package bridge

// Circuits: one circuit breaker per route target (namespace and task
// queue), so a target that keeps failing, or that Temporal refuses, stops
// only the calls to it and pauses only the topics whose routes use it.
// Routes that share a target share its circuit.
//
// What "pause" means for a partition whose topic routes to several
// targets, or whose records are of several routes: sarama stops fetching
// the whole partition while any of its topic's circuits is not closed (as
// for a backed-up task queue). Records of healthy routes already read keep
// being delivered, but the partition's committed offset cannot pass the
// first record waiting for the open circuit, and its reading stays paused,
// so on one partition later records of healthy routes wait too; per-key
// and per-partition order allow nothing else. Topics that route only to
// healthy targets keep flowing.
//
// While a circuit is open, its workflows do not hold dispatch workers:
// their queues are parked (dispatcher.park) and return to the ready lists
// when the circuit turns half-open, where one call is the probe.

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sagabridge/sagabridge/event"
)

// circuitKey names a route target: the calls to one namespace and task
// queue share a circuit.
type circuitKey struct{ namespace, taskQueue string }

// String is "namespace/task_queue".
func (k circuitKey) String() string { return k.namespace + "/" + k.taskQueue }

// circuit is the breaker around the calls to one target.
type circuit struct {
	key     circuitKey
	breaker *gobreaker.CircuitBreaker[struct{}]
	// parking is true while the breaker is open: calls to the target
	// would be refused, so its workflows' queues are parked.
	parking atomic.Bool
	// unparks counts the transitions that end parking (to half-open or
	// closed); a queue parked under an older count is not parked.
	unparks atomic.Uint64
	// access is set while Temporal refuses the bridge's calls to this
	// target (accessDenied).
	access atomic.Pointer[accessFault]
}

// newCircuits builds a circuit per distinct target of the routes. The
// map is immutable afterwards.
func (b *Bridge) newCircuits() map[circuitKey]*circuit {
	out := map[circuitKey]*circuit{}
	for _, r := range b.cfg.Routes {
		k := circuitKey{b.cfg.Temporal.Namespace, r.TaskQueue}
		if out[k] == nil {
			out[k] = b.newCircuit(k)
		}
	}
	return out
}

// circuitFor returns the circuit of target's task queue.
func (b *Bridge) circuitFor(target Target) *circuit {
	if c := b.circuits[circuitKey{b.cfg.Temporal.Namespace, target.TaskQueue}]; c != nil {
		return c
	}
	return b.fallback
}

// newCircuit builds the breaker around calls to k's target. While it is
// open or half-open the partitions of the topics that route to it stay
// paused: they resume only once a probe call has succeeded. An access
// fault (classify) opens it at once.
func (b *Bridge) newCircuit(k circuitKey) *circuit {
	bp := b.cfg.Backpressure
	c := &circuit{key: k}
	c.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "temporal " + k.String(),
		MaxRequests: 1, // one probe call when half-open
		Timeout:     bp.Circuit.OpenFor,
		ReadyToTrip: func(counts gobreaker.Counts) bool {
			return counts.ConsecutiveFailures >= uint32(bp.Circuit.Failures) || c.access.Load() != nil
		},
		// Only errors that say Temporal is unwell, or refuses the bridge,
		// count; a rejected record or a closed workflow means Temporal answered.
		IsSuccessful: func(err error) bool {
			if err == nil {
				return true
			}
			switch classify(err) {
			case kindRejected, kindClosed, kindRunFull, kindBusyWorkflow:
				return true
			case kindAccess:
				b.accessDenied(c, err)
			}
			return false
		},
		IsExcluded: func(err error) bool {
			var miss queryMiss
			return cancelled(err) || errors.As(err, &miss)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			// The pause state changes first, then the log says so: a
			// reader who acts on the line (an operator, a test scraping
			// /metrics) finds the partitions already paused or resumed.
			c.parking.Store(to == gobreaker.StateOpen)
			b.pressure.setCircuitOpen(k, to != gobreaker.StateClosed)
			if to != gobreaker.StateOpen {
				c.unparks.Add(1)
				// Not under the breaker's lock: the dispatcher's lock is
				// taken while reading circuits.
				go b.dispatcher.unpark(c)
			}
			log := b.log.With("namespace", k.namespace, "task_queue", k.taskQueue)
			switch to {
			case gobreaker.StateOpen:
				log.Warn("circuit to Temporal opened: pausing the partitions of the topics that route to this task queue",
					"reason", ReasonCircuitOpen, "from", from.String(), "open_for", bp.Circuit.OpenFor)
			case gobreaker.StateHalfOpen:
				log.Info("circuit to Temporal half-open: probing with one call; its partitions stay paused")
			default:
				log.Info("circuit to Temporal closed: resuming", "from", from.String())
				if f := c.access.Load(); f != nil && !f.fromCall {
					b.accessRestored(c, f)
				}
			}
		},
	})
	return c
}

// hasOpenCircuit reports whether any circuit is not closed.
func (b *Bridge) hasOpenCircuit() bool {
	_, ok := b.openCircuit()
	return ok
}

// openCircuit returns a circuit that is not closed, if any.
func (b *Bridge) openCircuit() (*circuit, bool) {
	for _, c := range b.circuits {
		if c.breaker.State() != gobreaker.StateClosed {
			return c, true
		}
	}
	return nil, false
}

// accessFault is why Temporal refuses the bridge itself, and since when.
// fromCall says a call met it rather than the namespace check: the check
// (the circuit's probe) may pass while calls are refused (a key that may
// describe the namespace but not signal, a route's search attribute not
// registered), so only a call that succeeds clears such a fault.
// fromQuery says the flow-control query met it (queryRefused): a signal
// that goes through does not clear it (signals may go through while
// queries are refused), a query answered does, and so does the circuit
// closing, as for a fault the namespace check met: the query may not be
// asked again (no window fills), and a fault no one clears would fail
// /readyz and trip the circuit at every failure for good.
type accessFault struct {
	cause     string
	since     time.Time
	fromCall  bool
	fromQuery bool
}

// checkError is an error of the namespace check (CheckAccess), at start or
// as the circuit's probe.
type checkError struct{ err error }

func (e checkError) Error() string { return e.err.Error() }
func (e checkError) Unwrap() error { return e.err }

// refused returns an access fault of any circuit, nil if none has one.
func (b *Bridge) refused() *accessFault {
	for _, c := range b.circuits {
		if f := c.access.Load(); f != nil {
			return f
		}
	}
	return nil
}

// accessDenied records an access fault on c and logs it once, with the
// namespace, the task queue and the cause, never a workflow ID (which
// holds a record key).
func (b *Bridge) accessDenied(c *circuit, err error) {
	var check checkError
	var query queryRefused
	fromQuery := errors.As(err, &query)
	f := &accessFault{cause: temporalMessage(err), since: b.deps.Now(), fromCall: !fromQuery && !errors.As(err, &check), fromQuery: fromQuery}
	// A fault that is not fromCall is cleared when the circuit closes.
	if fromQuery {
		f.cause = "the flow-control query " + event.AppliedQuery + " is refused: " + f.cause
	}
	if c.access.CompareAndSwap(nil, f) {
		b.log.Error("Temporal refuses the bridge's own access: the partitions of the topics that route to this task queue are paused, and nothing is dead-lettered or committed "+
			"until it is fixed (credentials, permissions, namespace); the bridge resumes by itself",
			"namespace", c.key.namespace, "task_queue", c.key.taskQueue, "address", b.cfg.Temporal.Address, "err", f.cause)
	}
}

// temporalMessage is what Temporal said in err, without the context the
// seam wraps it in, which may name the workflow and so a record key: the
// service error's or gRPC status's own message, or err's when it has none.
func temporalMessage(err error) string {
	var se serviceerror.ServiceError
	if errors.As(err, &se) {
		return se.Error()
	}
	var gs interface{ GRPCStatus() *status.Status } // not status.FromError, whose message is the whole wrapped text
	if errors.As(err, &gs) && gs.GRPCStatus().Code() != codes.OK {
		return gs.GRPCStatus().Err().Error()
	}
	return err.Error()
}

// accessRestored clears c's access fault f, if it is still the one set,
// and says so once.
func (b *Bridge) accessRestored(c *circuit, f *accessFault) {
	if c.access.CompareAndSwap(f, nil) {
		b.log.Info("Temporal accepts the bridge again", "namespace", c.key.namespace, "task_queue", c.key.taskQueue,
			"refused_for", b.deps.Now().Sub(f.since).Round(time.Second))
	}
}

// callWentThrough clears c's access fault when a call met it: a call (or
// the describe after a closed-workflow answer) that goes through is what
// shows such a refusal is over; the namespace probe cannot.
func (b *Bridge) callWentThrough(c *circuit) {
	if f := c.access.Load(); f != nil && f.fromCall {
		b.accessRestored(c, f)
	}
}

// queryWentThrough clears c's access fault when the flow-control query met
// it and has now been answered.
func (b *Bridge) queryWentThrough(c *circuit) {
	if f := c.access.Load(); f != nil && f.fromQuery {
		b.accessRestored(c, f)
	}
}

// watchCircuits reads the breakers' states now and then, so an open
// circuit turns half-open even when no call is waiting, and probes a
// half-open circuit itself (CheckAccess): its partitions may all be paused
// with no call left to make the probe. A parked call may be the probe
// instead. CheckAccess asks about the namespace only, so a target whose
// task queue alone fails may close on it and open again at its next
// failures.
func (b *Bridge) watchCircuits(ctx context.Context) {
	every(ctx, 250*time.Millisecond, func() {
		for _, c := range b.circuits {
			if c.breaker.State() == gobreaker.StateHalfOpen {
				b.probe(ctx, c)
			}
		}
		b.forgetUnroutedRefusals()
	})
}

// forgetUnroutedRefusals clears the access faults that calls met
// (fromCall) on closed circuits no claimed partition routes to: only a
// call that goes through clears such a fault, and this member makes none
// to that target any more (a rebalance moved its partitions away), so the
// fault would fail /readyz for good after the refusal was fixed. A call
// refused again, on a partition claimed again, sets it again.
func (b *Bridge) forgetUnroutedRefusals() {
	var routed map[circuitKey]bool
	for _, c := range b.circuits {
		f := c.access.Load()
		if f == nil || !f.fromCall || c.breaker.State() != gobreaker.StateClosed {
			continue
		}
		if routed == nil {
			routed = map[circuitKey]bool{}
			for _, fl := range b.pressure.claimed() {
				for _, k := range b.pressure.topicCircuits[fl.topic] {
					routed[k] = true
				}
			}
		}
		if !routed[c.key] {
			b.accessRestored(c, f)
		}
	}
}

// probe checks the bridge's access to Temporal through c; a call already
// under way may be the probe instead.
func (b *Bridge) probe(ctx context.Context, c *circuit) {
	_, _ = c.breaker.Execute(func() (struct{}, error) {
		pctx, cancel := context.WithTimeout(ctx, b.cfg.Dispatch.CallTimeout)
		defer cancel()
		if err := b.deps.Temporal.CheckAccess(pctx); err != nil {
			return struct{}{}, checkError{err}
		}
		return struct{}{}, nil
	})
}

// checkAccess asks Temporal whether the bridge may use its namespace,
// before it reads anything. A refusal (a mistyped namespace, a bad key)
// opens every circuit, pausing every partition from the start, as during a
// run (accessDenied says why, once per target). Temporal out of reach
// opens every circuit too: the bridge joins its group with its partitions
// paused and /readyz failing, and resumes when a probe gets through
// (backpressure.circuit.open_for), rather than reading records no call can
// deliver while it says it is ready.
func (b *Bridge) checkAccess(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Dispatch.CallTimeout)
	err := b.deps.Temporal.CheckAccess(cctx)
	cancel()
	if err == nil || ctx.Err() != nil {
		return
	}
	failures := 1 // a refusal trips the circuit at once (ReadyToTrip)
	if classify(err) != kindAccess {
		b.log.Warn("cannot reach Temporal at start; every partition is paused until it answers",
			"address", b.cfg.Temporal.Address, "namespace", b.cfg.Temporal.Namespace, "err", err, "probe_every", b.cfg.Backpressure.Circuit.OpenFor)
		failures = b.cfg.Backpressure.Circuit.Failures // as many as trip it
	}
	for _, c := range b.circuits {
		for range failures {
			_, _ = c.breaker.Execute(func() (struct{}, error) { return struct{}{}, checkError{err} })
		}
	}
}
