package bridge

// Delivery, in the order the calls nest: a dispatcher worker takes a
// workflow's next units and deliver makes one call of them; send retries
// until Temporal accepts the records or each is skipped, dropped or
// dead-lettered; call is one attempt through the limiter and the breaker.
// classify is the policy that says what an error from Temporal means.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/rpcerr"
)

// deliver makes one call for units and finishes or abandons them; units
// of a dead-letter queue are written to the DLQ instead, one by one. When
// the call must wait (its target's circuit is open: *parkedError; a
// backoff after a failed call, a failing DLQ, the workflow's full window:
// *heldError) it returns the units not finished, with the wait, for the
// dispatcher to put back in their queue: no worker waits. A batch Temporal
// rejected comes back with errResendAlone, to be resent record by record.
func (d *dispatcher) deliver(units []*unit) (back []*unit, wait error) {
	st := units[0].call
	if st == nil {
		st = &callState{}
	}
	if units[0].dead != nil {
		for i, u := range units {
			if err := d.b.writeDeadLetter(u.flow, u.dead, u.bytes); err != nil {
				u.call = st
				return units[i:], &heldError{after: st.next(d.b, &st.dlq), why: "the DLQ refuses dead letters"}
			}
			if u.flow.committer != nil {
				u.flow.finishHolding(u) // the committer holds its budget until it commits it
			} else {
				u.flow.finish(u)
			}
		}
		return nil, nil
	}
	f := units[0].flow
	var recs []record
	for _, u := range units {
		recs = append(recs, u.records...)
	}
	err := d.b.send(f, units[0].target(), recs, st)
	var parked *parkedError
	var held *heldError
	if errors.As(err, &parked) || errors.As(err, &held) {
		units[0].call = st
		return units, err
	}
	if errors.Is(err, errResendAlone) {
		return units, err
	}
	if err != nil {
		for _, u := range units {
			u.flow.units.Done()
		}
		return nil, nil
	}
	// Temporal has answered for every record. Those to dead-letter go
	// to the partition's dead-letter queue, holding their share of the
	// in-flight budget until the DLQ holds them; the rest are finished now.
	var queued map[int64]int // offset → the bytes its dead letter holds
	if len(st.dead) > 0 {
		queued = map[int64]int{}
		for _, fl := range st.dead {
			queued[fl.Offset] = 0
		}
		for _, u := range units {
			for _, r := range u.records {
				if _, ok := queued[r.offset]; ok {
					queued[r.offset] = heldSize(r.message(f))
				}
			}
		}
		for _, fl := range st.dead {
			d.b.queueDeadLetter(f, fl.Offset, queued[fl.Offset], fl)
		}
	}
	for _, u := range units {
		f.finishExcept(u, queued)
	}
	d.b.closedRedeliveries.Add(st.closedSkipped)
	d.b.closedWithoutMemo.Add(st.closedMemoless)
	return nil, nil
}

// send makes one attempt to deliver recs, in order, to target's workflow:
// Temporal accepts them, or each is skipped, dropped or to be
// dead-lettered (added to st.dead) as the errors and the closed-workflow
// policy say. A retryable error holds
// the call for a backoff (*heldError), as does the workflow's full window;
// st carries the attempts and backoffs to the next try, and a new run the
// call starts (st.newRun). A call the target's open circuit refuses
// (before Temporal has accepted any of recs) returns a *parkedError. A
// batch Temporal rejects returns errResendAlone: its records go again one
// at a time, to find the one at fault. It returns errAbandoned once the
// partition has ended.
func (b *Bridge) send(f *flow, target Target, recs []record, st *callState) error {
	if st.newRun { // the workflow closed: its records go to a new run
		target.NewRun, target.StartWatermarks = true, st.startWatermarks
		recs = slices.DeleteFunc(slices.Clone(recs), func(r record) bool { return st.startWatermarks.Covers(r.position(f)) })
		if len(recs) == 0 {
			return nil
		}
	}
	c := b.circuitFor(target)
	if gen := c.unparks.Load(); c.parking.Load() {
		return &parkedError{c: c, gen: gen}
	}
	wire := 0
	for _, r := range recs {
		wire += int(r.wire)
	}
	if err := b.windowRoom(f, target, len(recs), wire, st); err != nil {
		return err
	}
	batch := event.Batch{Events: make([]event.Envelope, len(recs)), OnClosed: b.cfg.Dispatch.OnClosedWorkflow,
		Compact: b.cfg.Dispatch.BatchFormat == config.BatchCompact}
	for i, r := range recs {
		batch.Events[i] = r.envelope(f)
	}
	ctx, span := b.deliverSpan(f, target, recs)
	var sendErr error
	defer func() { endSpan(span, sendErr) }()
	gen := c.unparks.Load()
	err := b.call(ctx, f, c, target, batch)
	if errors.Is(err, errCircuitOpen) { // no call was made; this is not an attempt
		sendErr = err
		return &parkedError{c: c, gen: gen}
	}
	st.attempts++
	attempt := st.attempts
	sendErr = err
	if errors.Is(err, errAbandoned) {
		return err
	}
	if err == nil {
		b.delivered.Add(uint64(len(recs)))
		b.calls.Add(1)
		b.windows.sent(target.WorkflowID, target.WorkflowType, recs[len(recs)-1].position(f), len(recs), wire)
		b.askAhead(f, target)
		b.coalescerFor(target.TaskQueue).sent(target.WorkflowID, b.deps.Now())
		if attempt > 1 {
			b.log.Info("delivered after retries", "workflow_id", target.WorkflowID, "attempts", attempt, "records", len(recs))
		}
		return nil
	}
	switch classify(err) {
	case kindRejected:
		if len(recs) > 1 { // isolate the record Temporal rejects: resend one by one, in order
			return errResendAlone
		}
		fl := dlq.FromMessage(recs[0].message(f), dlq.ClassRejected, err, attempt, b.deps.Now())
		fl.WorkflowID = target.WorkflowID
		st.dead = append(st.dead, fl)
		return nil
	case kindClosed:
		done, cerr := b.closedWorkflow(f, target, recs, attempt, st)
		if done {
			return cerr
		}
		err = cerr
	}
	b.retries.Add(1)
	if st.newRun {
		// Whether the new run started is unknown (the answer may be what
		// was lost): the next try asks again, and a new run it started,
		// closed since with the records applied, is seen in its memo.
		st.newRun, st.startWatermarks = false, nil
	}
	// The redeliveries this try skipped are not counted: it did not finish
	// the call, and the next may send them (to a new run that started
	// after all, say), counted as delivered. (A closed run without a memo
	// stays counted: the next try may signal its new run without asking.)
	st.closedSkipped = 0
	wait := st.next(b, &st.retry)
	if kind := classify(err); attempt == 1 && kind == kindRunFull {
		msg := "the workflow's run has taken all the signals one run may; retrying until it continues as new"
		if runTerminatedForSize(strings.ToLower(temporalMessage(err))) {
			msg = "the server terminated the workflow's run for its size; retrying, and the retry follows dispatch.on_closed_workflow"
		}
		b.log.Warn(msg, "workflow_id", target.WorkflowID, "records", len(recs), "topic", f.topic, "partition", f.partition,
			"offset", recs[0].offset, "err", err, "retry_in", wait)
	} else if attempt == 1 && kind != kindAccess { // an access fault is logged once, without keys (breaker)
		b.log.Log(f.ctx, b.retryLogLevel(), "temporal call failed; retrying", "workflow_id", target.WorkflowID, "records", len(recs),
			"topic", f.topic, "partition", f.partition, "offset", recs[0].offset, "err", err, "retry_in", wait)
	}
	return &heldError{after: wait, why: "retrying after a failed call"}
}

// call makes one SignalWithStart within the adaptive concurrency limit,
// through the target's circuit c, bounded by Dispatch.CallTimeout. ctx is
// the partition's call context with the delivery span. It returns
// errAbandoned if the partition ended while waiting for a slot, and
// errCircuitOpen if the circuit refused the call.
func (b *Bridge) call(ctx context.Context, f *flow, c *circuit, target Target, batch event.Batch) error {
	// No new attempt once the partition has ended: a revoked claim's
	// records must not reach Temporal after it let go.
	if f.ctx.Err() != nil {
		return errAbandoned
	}
	if c.parking.Load() { // refused without waiting for a slot
		return errCircuitOpen
	}
	if b.limiter.acquire(f.ctx) != nil {
		return errAbandoned
	}
	start := time.Now()
	_, err := c.breaker.Execute(func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.Dispatch.CallTimeout)
		defer cancel()
		return struct{}{}, b.deps.Temporal.SignalWithStart(ctx, target, batch)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		b.limiter.abort()
		return errCircuitOpen
	}
	latency := time.Since(start)
	if err == nil {
		b.callWentThrough(c)
	}
	if err != nil && cancelled(err) && (f.ctx.Err() != nil || ctx.Err() != nil) {
		// The bridge cancelled the call (revocation, shutdown): it says
		// nothing about Temporal, and is neither a retry nor an outcome.
		b.limiter.done(latency, false)
		return errAbandoned
	}
	outcome := outcomeOK
	if err != nil {
		switch classify(err) {
		case kindRejected:
			outcome = outcomeRejected
		case kindClosed:
			outcome = outcomeClosed
		case kindAccess:
			outcome = outcomeAccess
		case kindRunFull:
			outcome = outcomeRunFull
		case kindBusyWorkflow:
			outcome = outcomeBusyWorkflow
		default:
			outcome = outcomeRetryable
		}
	}
	b.limiter.done(latency, outcome == outcomeRetryable && !cancelled(err))
	b.metrics.callDuration.WithLabelValues(outcome).Observe(latency.Seconds())
	return err
}

// errorKind is how the bridge treats an error from Temporal.
type errorKind int

const (
	// kindRetryable: Temporal is unwell, busy or out of reach; retry with
	// backoff (the circuit opens if it goes on).
	kindRetryable errorKind = iota
	// kindRejected: Temporal refuses this record; dead-letter it.
	kindRejected
	// kindClosed: the workflow has closed; check its memo.
	kindClosed
	// kindAccess: Temporal refuses the bridge itself (credentials,
	// permissions, namespace, an API it lacks, or the start options its
	// configuration sets: a route's search attributes or memo). Nothing is
	// wrong with the record: the circuit opens at once, every partition
	// pauses, nothing is dead-lettered or committed, and the bridge
	// recovers by itself once the cause is fixed.
	kindAccess
	// kindRunFull: the workflow's run has taken all the signals one run
	// may (the server's history.maximumSignalsPerExecution, 10,000 by
	// default), or is over its size limits and terminated by the server.
	// Nothing is wrong with the record nor with Temporal, which answered:
	// retry this workflow's call with backoff until the run continues as
	// new (workflows.Inbox does once its history is large) or, terminated,
	// is found closed, without opening the circuit for the other
	// workflows.
	kindRunFull
	// kindBusyWorkflow: Temporal answered that this one workflow is busy
	// (ResourceExhausted, cause BUSY_WORKFLOW: more requests to it at once
	// than its lock takes). Like kindRunFull it is about one workflow:
	// retry its call with backoff, without opening the circuit or cutting
	// the concurrency limit for the others.
	kindBusyWorkflow
)

// signalLimitExceeded is the message of the InvalidArgument the Temporal
// server answers a signal to a run at its signal limit with
// (consts.ErrSignalsLimitExceeded).
const signalLimitExceeded = "exceeded workflow execution limit for signal events"

// runTerminatedForSize reports whether msg (lower case) is the
// InvalidArgument the server answers a signal with when the run is over
// its history size or count or its mutable state size: it terminates the
// run (consts.ErrHistorySizeExceedsLimit and its siblings), and the next
// try finds it closed.
func runTerminatedForSize(msg string) bool {
	for _, m := range []string{"workflow history size exceeds limit", "workflow history count exceeds limit", "workflow mutable state size exceeds limit"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// classify is the policy that sorts an error from Temporal. Only an error
// about the request itself (InvalidArgument: a bad payload, a payload too
// large, a bad workflow ID) sends the record to the DLQ; those about the
// run rather than the request (its signal limit; its size, for which the
// server terminates it, so that the retry follows on_closed_workflow) are
// retried, and those about the route's search attributes, memo or
// names (set from the configuration, the same for every record) are the
// bridge's own fault. A workflow too busy to take the call (ResourceExhausted with
// cause BUSY_WORKFLOW) is retried as that workflow's alone. An error about
// the bridge's own access (PermissionDenied, Unauthenticated, an unknown or
// inactive namespace, Unimplemented, FailedPrecondition) is never the
// record's fault. Everything else (Unavailable, ResourceExhausted,
// DeadlineExceeded, Internal, Aborted, network errors) is retried, because
// dead-lettering during an outage would empty the topic into the DLQ.
func classify(err error) errorKind {
	var (
		nsNotFound    *serviceerror.NamespaceNotFound
		nsInvalid     *serviceerror.NamespaceInvalidState
		nsNotActive   *serviceerror.NamespaceNotActive
		nsUnavailable *serviceerror.NamespaceUnavailable
		notReady      *serviceerror.WorkflowNotReady
		exhausted     *serviceerror.ResourceExhausted
	)
	var refusedQuery queryRefused
	switch {
	case errors.As(err, &refusedQuery):
		return kindAccess
	case errors.Is(err, ErrWorkflowClosed):
		return kindClosed
	case errors.As(err, &exhausted) && exhausted.Cause == enumspb.RESOURCE_EXHAUSTED_CAUSE_BUSY_WORKFLOW:
		return kindBusyWorkflow
	case errors.As(err, &nsUnavailable), errors.As(err, &notReady):
		return kindRetryable // a namespace failing over, a workflow not yet ready: both pass
	case errors.As(err, &nsNotFound), errors.As(err, &nsInvalid), errors.As(err, &nsNotActive):
		return kindAccess
	}
	switch rpcerr.Code(err) {
	case codes.InvalidArgument:
		// The server's message only: the seam's wrapping names the
		// workflow, from the record's key.
		switch msg := strings.ToLower(temporalMessage(err)); {
		case strings.Contains(msg, signalLimitExceeded), runTerminatedForSize(msg):
			return kindRunFull
		case strings.Contains(msg, "search attribute"), strings.Contains(msg, "searchattributes"), strings.Contains(msg, "memo size"),
			strings.Contains(msg, "taskqueue length"), strings.Contains(msg, "workflowtype length"), strings.Contains(msg, "signalname length"):
			// The route's start options and names, from the
			// configuration, never from the record: a search attribute
			// not registered, of another type or a system one, a memo
			// over the limit, a task queue, workflow type or signal name
			// over the server's limit.maxIDLength.
			return kindAccess
		}
		return kindRejected
	case codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.FailedPrecondition:
		return kindAccess
	default:
		return kindRetryable
	}
}

// cancelled says err comes from the bridge cancelling the call (shutdown
// or revocation), which says nothing about Temporal's health.
func cancelled(err error) bool {
	var c *serviceerror.Canceled
	return errors.Is(err, context.Canceled) || errors.As(err, &c)
}

// closedWorkflow handles records whose workflow has closed. Records the
// closed run already applied are redeliveries and are skipped; the others
// follow Dispatch.OnClosedWorkflow (those to dead-letter are added to
// st.dead). done is false when the closed run's memo could not be read, so
// the caller retries.
//
// The describe goes through the target's circuit like the call: a refusal
// (an authorizer that allows signals but not DescribeWorkflowExecution) is
// the bridge's access fault, logged and shown on /readyz, and opens the
// circuit; it was retried in silence.
func (b *Bridge) closedWorkflow(f *flow, target Target, recs []record, attempt int, st *callState) (done bool, err error) {
	var applied event.Watermarks
	c := b.circuitFor(target)
	_, err = c.breaker.Execute(func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(f.callCtx, b.cfg.Dispatch.CallTimeout) // as the call is
		defer cancel()
		var err error
		applied, err = b.deps.Temporal.ClosedWatermarks(ctx, target.WorkflowID)
		return struct{}{}, err
	})
	if err != nil {
		return false, err
	}
	b.callWentThrough(c)                       // a refused describe goes through now
	st.closedSkipped, st.closedMemoless = 0, 0 // this attempt's, counted if it finishes the call
	// What the closed run was sent and not seen applying is not pending
	// any more: a new run's answers would never cover it, and its room
	// would be lost to the workflow ID for good.
	b.windows.forget(target.WorkflowID)
	if applied == nil {
		// Terminated (or not an entity workflow): nothing says what it
		// applied, so every record counts as new and follows the policy.
		st.closedMemoless = uint64(len(recs))
		b.log.Warn("closed workflow recorded no watermarks (terminated?); its records are treated as new",
			"workflow_id", target.WorkflowID, "records", len(recs), "policy", b.cfg.Dispatch.OnClosedWorkflow)
	}
	var fresh []record
	for _, r := range recs {
		if applied.Covers(r.position(f)) {
			st.closedSkipped++
			continue
		}
		fresh = append(fresh, r)
	}
	if len(fresh) == 0 {
		return true, nil
	}
	switch b.cfg.Dispatch.OnClosedWorkflow {
	case config.OnClosedDrop:
		b.droppedClosed.Add(uint64(len(fresh)))
		b.log.Warn("dropped records for a closed workflow", "workflow_id", target.WorkflowID, "records", len(fresh),
			"first", fresh[0].position(f).String())
		return true, nil
	case config.OnClosedNewRun:
		b.log.Info("starting a new run of a closed workflow", "workflow_id", target.WorkflowID, "records", len(fresh))
		st.newRun, st.startWatermarks = true, applied
		return true, b.send(f, target, fresh, st)
	default:
		for _, r := range fresh {
			fl := dlq.FromMessage(r.message(f), dlq.ClassWorkflowClosed,
				fmt.Errorf("workflow %s has closed and did not apply this record", target.WorkflowID), attempt, b.deps.Now())
			fl.WorkflowID = target.WorkflowID
			st.dead = append(st.dead, fl)
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

func (b *Bridge) newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = b.cfg.Dispatch.RetryInitial
	bo.MaxInterval = b.cfg.Dispatch.RetryMax
	return bo
}

// circuitWait is how often the state of a circuit with parked workflows is
// read (dispatcher.poke); the breaker lets one probe through after
// backpressure.circuit.open_for.
const circuitWait = 500 * time.Millisecond
