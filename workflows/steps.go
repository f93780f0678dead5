package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// cancelStepChange is the workflow.GetVersion change ID that guards how a
// request to cancel meets a step in flight (Ctx.UndoableStep,
// Ctx.IrrevocableStep, Ctx.CancelRequested). It is asked only by handlers
// that call them, so histories recorded before a handler did replay as
// they ran.
const cancelStepChange = "sagabridge.cancel-step"

// cancelSteps reports whether this run handles a request to cancel with
// the step helpers (false when replaying a history recorded before).
func (c *Ctx[S]) cancelSteps() bool {
	return workflow.GetVersion(c.r.ctx, cancelStepChange, workflow.DefaultVersion, 1) >= 1
}

// UndoableStep returns the context to run a step on whose undo is
// registered (Completed or Compensate): a request to cancel the workflow
// (temporal workflow cancel) that comes while the step's attempt runs
// waits for that attempt to end, so its undo never runs before the step
// has landed. By default the SDK gives up on a cancelled activity at once,
// and the runtime's compensation could undo a charge that goes through a
// moment later. Pair it with CancelRequested:
//
//	err := workflow.ExecuteActivity(c.UndoableStep(), a.Charge, in).Get(c, nil)
//	if c.CancelRequested() {
//		return nil // the runtime compensates, the saga ends cancelled
//	}
func (c *Ctx[S]) UndoableStep() workflow.Context {
	if !c.cancelSteps() {
		return c
	}
	return workflow.WithWaitForCancellation(c.Context, true)
}

// IrrevocableStep returns the context to run a step on that cannot be
// undone and that a request to cancel must not stop once begun (a
// shipment): the request does not reach it, the step finishes (retried as
// its activity options say), and the handler goes on; a request to cancel
// that came meanwhile is handled after the handler, and changes nothing
// once the saga has reached its final status.
func (c *Ctx[S]) IrrevocableStep() workflow.Context {
	if !c.cancelSteps() {
		return c
	}
	ctx, _ := workflow.NewDisconnectedContext(c.Context)
	return ctx
}

// CancelRequested reports whether the workflow was asked to cancel while
// this handler ran. The handler should then return nil at once, taking no
// more steps: the runtime handles the request right after it (by default
// it compensates the completed steps and the saga ends StatusCancelled;
// see Entity.OnCancel). A step that failed because of the request is not
// the saga's failure, so check it before calling Fail. In an update
// handler, return an error instead: nil would answer the update as done,
// and its caller would be told so for a step the runtime then undoes.
func (c *Ctx[S]) CancelRequested() bool {
	return c.r.ctx.Err() != nil && !c.r.cancelled && c.cancelSteps()
}

// Refused reports whether err is a service's business refusal: a
// non-retryable application error from the activity (OutOfStock,
// CardDeclined), which says the service did nothing. Any other failure (a
// timeout, attempts run out on a retryable error, a cancellation) leaves
// the step's outcome unknown: the service may have acted and the answer
// been lost, so register its undo (Compensate) before failing the saga.
func Refused(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.NonRetryable()
}
