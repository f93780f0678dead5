package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// sendFunc sends one key's events in one call, in order: the window
// client's seam to Temporal. It must be safe for concurrent use.
type sendFunc func(ctx context.Context, key string, evs []event.Envelope) error

// afterFunc runs f once, d from now, on a goroutine of its own:
// time.AfterFunc in the benchmark, a fake clock in the tests.
type afterFunc func(d time.Duration, f func())

// realAfter is the afterFunc of the real clock.
func realAfter(d time.Duration, f func()) { time.AfterFunc(d, f) }

// windowClient is the fixed-window plain client (d): what a careful
// hand-written client does without Kafka. It keeps each key's pending
// events; a key's first pending event opens a window of a fixed length, and
// when the window ends all of that key's pending events go in one call.
// There is at most one call in flight per key (a window that ends during a
// call is sent as soon as the call returns, with everything pending by
// then) and at most concurrency calls in flight in all. A failed call is
// retried every 100 ms until it succeeds or the client's context ends, so
// each key's events reach Temporal once and in order.
//
// Add, Calls and Wait are safe for concurrent use; mu guards all the
// mutable state, which the timers and call goroutines share.
type windowClient struct {
	ctx    context.Context
	window time.Duration
	send   sendFunc
	after  afterFunc
	sem    chan struct{}

	mu          sync.Mutex
	keys        map[string]*windowKey
	outstanding int   // events added and not yet accepted by Temporal
	calls       int   // calls that succeeded
	err         error // the first call that failed for good
}

// windowKey is one key's state in the window client.
type windowKey struct {
	pending  []event.Envelope
	inFlight bool // a call for this key has not returned
	due      bool // the window of pending ended while a call was in flight
}

// newWindowClient returns a client with the given window and limit of calls
// in flight; its calls run under ctx.
func newWindowClient(ctx context.Context, window time.Duration, concurrency int, send sendFunc, after afterFunc) *windowClient {
	return &windowClient{ctx: ctx, window: window, send: send, after: after,
		sem: make(chan struct{}, max(1, concurrency)), keys: map[string]*windowKey{}}
}

// Add queues e behind its key's pending events, opening the key's window
// if e is the first.
func (c *windowClient) Add(e event.Envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[e.Key]
	if k == nil {
		k = &windowKey{}
		c.keys[e.Key] = k
	}
	c.outstanding++
	k.pending = append(k.pending, e)
	if len(k.pending) == 1 {
		key := e.Key
		c.after(c.window, func() { c.windowEnds(key) })
	}
}

// windowEnds sends key's pending events, or marks them due if a call for
// key is in flight.
func (c *windowClient) windowEnds(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[key]
	if len(k.pending) == 0 {
		return
	}
	if k.inFlight {
		k.due = true
		return
	}
	c.dispatch(key, k)
}

// dispatch starts the call of k's pending events. c.mu must be held.
func (c *windowClient) dispatch(key string, k *windowKey) {
	evs := k.pending
	k.pending, k.inFlight, k.due = nil, true, false
	go c.call(key, k, evs)
}

// call sends evs within the limit of calls in flight, retrying until it
// succeeds or the context ends, then sends what fell due meanwhile.
func (c *windowClient) call(key string, k *windowKey, evs []event.Envelope) {
	err := c.sendRetrying(key, evs)
	c.mu.Lock()
	defer c.mu.Unlock()
	k.inFlight = false
	if err != nil {
		if c.err == nil {
			c.err = err
		}
		return
	}
	c.calls++
	c.outstanding -= len(evs)
	if k.due {
		c.dispatch(key, k)
	}
}

// sendRetrying holds one of the slots of calls in flight while it sends.
func (c *windowClient) sendRetrying(key string, evs []event.Envelope) error {
	select {
	case c.sem <- struct{}{}:
	case <-c.ctx.Done():
		return fmt.Errorf("send %d events of key %s: %w", len(evs), key, c.ctx.Err())
	}
	defer func() { <-c.sem }()
	for {
		err := c.send(c.ctx, key, evs)
		if err == nil {
			return nil
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-c.ctx.Done():
			return fmt.Errorf("send %d events of key %s: %w", len(evs), key, err)
		}
	}
}

// Calls returns how many calls have succeeded.
func (c *windowClient) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// Wait blocks until Temporal has accepted every event added, a call has
// failed for good, or ctx ends.
func (c *windowClient) Wait(ctx context.Context) error {
	for {
		c.mu.Lock()
		n, err := c.outstanding, c.err
		c.mu.Unlock()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("window client: %d events not accepted: %w", n, ctx.Err())
		}
	}
}

// ledgerSender returns the sendFunc that signals, and starts if need be,
// the ledger of each key on task queue tq: the signal, workflow type, input
// and ID policies the bridge uses (bridge/temporalsdk), so that the ledger
// applies the events as it applies the bridge's.
func ledgerSender(tc client.Client, tq string) sendFunc {
	return func(ctx context.Context, key string, evs []event.Envelope) error {
		id := "ledger-" + key
		_, err := tc.SignalWithStartWorkflow(ctx, id, event.DefaultSignal, event.Batch{Events: evs},
			client.StartWorkflowOptions{ID: id, TaskQueue: tq,
				WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
				WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			}, ledger.WorkflowType)
		if err != nil {
			return fmt.Errorf("signal-with-start %s (%d events): %w", id, len(evs), err)
		}
		return nil
	}
}
