package workflows

import (
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ErrSagaFailed is wrapped by the error Ctx.Fail returns. A handler returns
// that error (return c.Fail(status, err)); the runtime recognises it and
// does not count the record, timeout or update as rejected: failing the
// saga is what the handler meant to do.
var ErrSagaFailed = errors.New("the saga failed")

// ErrAfterFail is wrapped by the error of a call that a handler made on its
// Ctx after Fail (see Ctx.Fail): a failed saga takes no more steps.
var ErrAfterFail = errors.New("a failed saga takes no more steps")

// finalFailChange is the workflow.GetVersion change ID that guards refusing
// steps after Fail. It is asked only when a handler misuses Fail, so runs
// whose handlers return at once issue the same commands as before; a
// history recorded when a step after Fail still took effect replays with
// that step taking effect (the misuse is still listed in Rejected).
const finalFailChange = "sagabridge.final-fail"

// call is the bookkeeping of one handler call: whether it failed the saga,
// and the calls it made after that.
type call struct {
	failed  bool
	misuses []string
	record  bool   // the call handles a record (it may Hold it)
	held    string // the reason the call held its record (Hold)
}

// Fail ends the saga with status because of err, and returns the error the
// handler returns at once:
//
//	if err := workflow.ExecuteActivity(c, a.Charge, in).Get(c, nil); err != nil {
//		return c.Fail("compensated", err)
//	}
//
// It records err as the last error, sets status, runs the pending
// compensations (newest first, or in parallel; see Entity.Compensation;
// they stay listed as pending until they have all run) and records their
// results. The returned error wraps ErrSagaFailed; the runtime does
// not count it as the handler's failure (the record or timeout is not
// rejected, and an update is answered with the handler's value, as a
// handler that returns nil).
//
// Fail is final for the handler call: a later Completed, Compensate, Begin,
// SetStatus, StartTimeout or second Fail on the Ctx is refused and changes
// nothing (status stays as Fail set it, no step or undo is added, no
// timeout starts). Each such call is a bug in the handler, and is reported:
// logged as an error and listed in Snapshot.Rejected for the record,
// timeout or update being handled, with a reason such as
// `Completed("charge") after Fail: a failed saga takes no more steps`.
// Activities the handler starts after Fail still run (the SDK cannot stop
// them), so return at once.
func (c *Ctx[S]) Fail(status string, err error) error {
	if refused := c.refuse(fmt.Sprintf("Fail(%q)", status)); refused != nil {
		return refused
	}
	c.call.failed = true
	c.r.c.LastError = Describe(err)
	c.r.c.CurrentStep = ""
	// The status first: the undos may take hours (retried until done), and
	// meanwhile the state query shows it, with the undos still listed as
	// pending (compensate).
	c.r.c.Status = status
	c.r.c.Compensations = keepLastSteps(c.r.ctx, append(c.r.c.Compensations, c.r.compensate()...))
	if err == nil {
		return fmt.Errorf("%w (status %s)", ErrSagaFailed, status)
	}
	return fmt.Errorf("%w (status %s): %w", ErrSagaFailed, status, err)
}

// refuse returns the error of the call what, made after Fail in this
// handler call, and records the misuse; nil when Fail was not called (or
// when replaying a history recorded before such calls were refused, where
// the call must take effect as it did then).
func (c *Ctx[S]) refuse(what string) error {
	if !c.call.failed {
		return nil
	}
	err := fmt.Errorf("%s after Fail: %w", what, ErrAfterFail)
	c.call.misuses = append(c.call.misuses, err.Error())
	workflow.GetLogger(c.r.ctx).Error("handler called Ctx after Fail; return c.Fail(...) at once", "call", what, "status", c.r.c.Status)
	if workflow.GetVersion(c.r.ctx, finalFailChange, workflow.DefaultVersion, 1) < 1 {
		return nil
	}
	return err
}

// rejection returns why what this handler call handled is rejected, given
// the handler's error: the calls it made after Fail, and its own error
// unless that is Fail's (which is not a rejection); "" for none.
func (c *Ctx[S]) rejection(err error) string {
	reasons := c.call.misuses
	if err != nil && !c.failedWith(err) && !errors.Is(err, ErrAfterFail) {
		reasons = append(reasons, err.Error())
	}
	return strings.Join(reasons, "; ")
}

// outcome returns the handler's error as the runtime treats it: nil for
// Fail's, and, when the handler made calls after Fail, a non-retryable
// application error (type "AfterFail") that lists them.
func (c *Ctx[S]) outcome(err error) error {
	if c.failedWith(err) {
		err = nil
	}
	if len(c.call.misuses) == 0 {
		return err
	}
	return temporal.NewNonRetryableApplicationError(c.rejection(err), "AfterFail", err)
}

// failedWith reports whether err is the error of this call's Fail.
func (c *Ctx[S]) failedWith(err error) bool {
	return c.call.failed && errors.Is(err, ErrSagaFailed)
}

// undoNames renders the names of undo for a misuse report.
func undoNames(undo []Undo) string {
	names := make([]string, len(undo))
	for i, u := range undo {
		names[i] = fmt.Sprintf("%q", u.Name)
	}
	return strings.Join(names, ", ")
}
