package bridge

// Asking a workflow what it applied (event.AppliedQuery), for the windows
// of window.go: early in the background, or for a call held at a full
// window; and what its answers and failures mean.

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"

	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/rpcerr"
)

// askAhead asks target's workflow what it applied when its window is half
// full (askEarly), on a goroutine that the partition waits for, and
// confirms what the answer covers. A failed question is left alone:
// windowRoom asks again, and handles the error, if the window fills.
func (b *Bridge) askAhead(f *flow, target Target) {
	if !b.windows.askEarly(target.WorkflowID, target.WorkflowType) {
		return
	}
	f.units.Add(1) // the caller's unit is not done, so the count is not zero
	go func() {
		defer f.units.Done()
		defer b.windows.answered(target.WorkflowID)
		ctx, cancel := context.WithTimeout(f.ctx, b.cfg.Dispatch.CallTimeout)
		defer cancel()
		if applied, answer, err := b.queryApplied(ctx, target); err == nil && answer == nil {
			b.windows.confirm(target.WorkflowID, applied)
		}
	}()
}

// queryApplied asks target's workflow what it applied, through the
// target's circuit as a call goes, where a refusal is the bridge's access
// fault (logged, on /readyz, the circuit opened; cleared by a query
// answered or by the circuit closing, not by a signal) and a query
// answered is Temporal answering. Other failures count neither way
// (queryMiss): a query waits for a worker, so it fails for a slow worker
// where a signal goes through, and it must not close a half-open circuit
// while Temporal is still down. answer is Temporal's answer that the
// workflow cannot say (not found, closed, its query failed, a namespace
// that takes no queries); err is any other failure, or the circuit open.
func (b *Bridge) queryApplied(ctx context.Context, target Target) (applied event.Watermarks, answer, err error) {
	c := b.circuitFor(target)
	var qerr error
	_, err = c.breaker.Execute(func() (struct{}, error) {
		applied, qerr = b.deps.Temporal.AppliedWatermarks(ctx, target.WorkflowID)
		switch {
		case qerr == nil, workflowAnswer(qerr):
			return struct{}{}, nil // Temporal answered
		case classify(qerr) == kindAccess:
			return struct{}{}, queryRefused{qerr}
		default:
			return struct{}{}, queryMiss{qerr}
		}
	})
	if err != nil {
		if ctx.Err() == nil {
			b.log.Debug("cannot ask a workflow what it applied; asking again", "workflow_id", target.WorkflowID, "task_queue", target.TaskQueue, "err", err)
		}
		return nil, nil, err
	}
	b.queryWentThrough(c)
	if qerr != nil { // workflowAnswer
		return nil, qerr, nil
	}
	return applied, nil, nil
}

// workflowAnswer reports whether err, from the applied query, is Temporal
// answering that the workflow cannot say: not found, closed, its query
// failed, or a namespace that takes no queries.
func workflowAnswer(err error) bool {
	var notFound *serviceerror.NotFound
	var queryFailed *serviceerror.QueryFailed
	return errors.As(err, &notFound) || errors.Is(err, ErrWorkflowClosed) || errors.As(err, &queryFailed) || queriesDisallowed(err)
}

// queryMiss is a failed applied query that says nothing of Temporal's
// health or of the bridge's access; the circuit counts it neither way.
type queryMiss struct{ err error }

func (e queryMiss) Error() string { return e.err.Error() }
func (e queryMiss) Unwrap() error { return e.err }

// queriesDisallowed reports whether err is Temporal's answer that the
// namespace takes no queries (an InvalidArgument, "Namespace is not
// allowed to query"): flow control cannot work there, and is turned off
// for the workflow's type (askApplied), as for a type that does not
// answer. Read from the status's own message: the seam's wrapping names
// the workflow.
func queriesDisallowed(err error) bool {
	return err != nil && rpcerr.Code(err) == codes.InvalidArgument &&
		strings.Contains(strings.ToLower(temporalMessage(err)), "not allowed to query")
}

// queryRefused is an applied query Temporal refused for the bridge's
// access (a permission), never a record's doing: an access fault
// (classify) that a signal going through does not clear
// (accessFault.fromQuery).
type queryRefused struct{ err error }

func (e queryRefused) Error() string { return e.err.Error() }
func (e queryRefused) Unwrap() error { return e.err }

// windowRoom returns nil once records and bytes more may be sent to
// target's workflow: at once while its window has room. Otherwise it
// holds the call (*heldError) until the question in flight to the
// workflow is answered, asking it in the background if none is (never
// beside one in flight; at most dispatch.concurrency such questions at
// once), and for a backoff between its own questions.
// Holding rather than waiting frees the worker: a workflow that is slow to
// apply what it was sent stops only itself. It returns errAbandoned if the
// partition has ended.
func (b *Bridge) windowRoom(f *flow, target Target, records, bytes int, st *callState) error {
	ws := b.windows
	if ws.fits(target.WorkflowID, target.WorkflowType, records, bytes) {
		return nil
	}
	if f.ctx.Err() != nil {
		return errAbandoned
	}
	if !st.windowHeld { // held back, if only for one answer
		st.windowHeld = true
		b.windowWaits.Add(1)
	}
	if st.asked { // its own question was answered and left the window full
		st.asked = false
		return &heldError{after: min(st.next(b, &st.asks), time.Second), why: "the workflow's window is full"}
	}
	fits, inFlight := ws.next(target.WorkflowID, target.WorkflowType, records, bytes)
	switch {
	case fits:
		return nil
	case inFlight == nil: // the call owns the workflow's question: ask it
		inFlight = ws.question(target.WorkflowID)
		st.asked = true
		f.units.Add(1) // the caller's unit is not done, so the count is not zero
		go func() {
			defer f.units.Done()
			select { // at most dispatch.concurrency such questions at once
			case b.asks <- struct{}{}:
				defer func() { <-b.asks }()
			case <-f.ctx.Done():
				ws.answered(target.WorkflowID)
				return
			}
			// What the answer says (a confirmed, forgotten or exempt
			// window; a failed question) is in ws when the call looks
			// again.
			_, _ = b.askApplied(f, target)
		}()
	}
	return &heldError{wake: inFlight, why: "waiting for the workflow to say what it applied"}
}

// unknownQuery reports whether a failed query failed because the workflow
// registers no event.AppliedQuery handler. Every SDK's answer then names
// the query (Go: "unknown queryType sagabridge.applied. KnownQueryTypes=
// [...]"; others word it differently), in the QueryFailed's own message;
// the Temporal client's wrapping names it too, which is why only that
// message is read. Any other failure (a handler that panics, a task that
// cannot replay) is the workflow's trouble of the moment, not its type's,
// and must not turn flow control off for the type.
func unknownQuery(qf *serviceerror.QueryFailed) bool {
	return strings.Contains(qf.Message, event.AppliedQuery)
}

// askApplied asks target's workflow what it applied, for a call that owns
// the workflow's question (windows.next), acts on the answer and ends the
// question. release reports that the call may go whatever its window
// holds: the workflow is gone or closed (what it did not apply it never
// will; the call finds out and follows the closed-workflow policy), or its
// type does not answer the query. err is a failed question, to be asked
// again.
func (b *Bridge) askApplied(f *flow, target Target) (release bool, err error) {
	ws := b.windows
	defer ws.answered(target.WorkflowID)
	ctx, cancel := context.WithTimeout(f.ctx, b.cfg.Dispatch.CallTimeout)
	defer cancel()
	applied, answer, err := b.queryApplied(ctx, target)
	if err != nil {
		return false, err
	}
	var notFound *serviceerror.NotFound
	var queryFailed *serviceerror.QueryFailed
	switch {
	case answer == nil:
		ws.confirm(target.WorkflowID, applied)
		return false, nil
	case errors.As(answer, &notFound), errors.Is(answer, ErrWorkflowClosed):
		ws.forget(target.WorkflowID)
		return true, nil
	case errors.As(answer, &queryFailed) && unknownQuery(queryFailed):
		if ws.exemptType(target.WorkflowID, target.WorkflowType) {
			b.log.Warn("workflow type does not answer the applied query; sending it without flow control",
				"workflow_type", target.WorkflowType, "workflow_id", target.WorkflowID, "query", event.AppliedQuery, "err", answer)
		}
		return true, nil
	case queriesDisallowed(answer):
		if ws.exemptType(target.WorkflowID, target.WorkflowType) {
			b.log.Warn("the namespace takes no queries; sending this workflow type without flow control (dispatch.workflow_window_records)",
				"workflow_type", target.WorkflowType, "task_queue", target.TaskQueue, "query", event.AppliedQuery, "err", temporalMessage(answer))
		}
		return true, nil
	}
	return false, answer // the workflow's trouble of the moment: asked again
}
