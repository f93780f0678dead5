package workflows

import (
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// Ctx is what a handler gets: the workflow context (pass c to
// workflow.ExecuteActivity, workflow.GetVersion, workflow.WithActivityOptions
// and the like; it carries Entity.ActivityOptions), the state and the record
// being applied, and the saga bookkeeping. It is valid only during the
// handler call.
//
// The SDK's functions that derive a cancellable context (workflow.WithCancel,
// workflow.NewDisconnectedContext, workflow.AwaitWithTimeout) need the SDK's
// own context type: pass them c.Context, not c.
type Ctx[S any] struct {
	workflow.Context
	// State is the entity's state; handlers change it in place.
	State *S
	// Event is the record being applied; zero in timeout and update handlers.
	Event event.Envelope

	r    *runner[S]
	call *call
}

// newCtx returns the Ctx of one handler call on e (zero for timeouts,
// updates, OnCancel and Finish).
func (r *runner[S]) newCtx(e event.Envelope) *Ctx[S] {
	return &Ctx[S]{Context: r.ctx, State: &r.c.State, Event: e, r: r, call: &call{}}
}

// Progress returns a copy of the saga's progress: status, steps,
// compensations run so far and last error.
func (c *Ctx[S]) Progress() Progress {
	p := c.r.c.Progress
	p.CompletedSteps = slices.Clone(p.CompletedSteps)
	p.Compensations = slices.Clone(p.Compensations)
	p.Rejected = slices.Clone(p.Rejected)
	return p
}

// Key returns the record key of the entity's events, as text: a key that
// is not valid UTF-8 has each invalid byte as U+FFFD here (its events'
// event.Envelope.RecordKey has its bytes).
func (c *Ctx[S]) Key() string { return c.r.c.Key }

// Status returns the saga's status.
func (c *Ctx[S]) Status() string { return c.r.c.Status }

// SetStatus sets the saga's status. A status listed in Entity.Final ends it.
// After Fail it is refused (see Fail): the status Fail set stays.
func (c *Ctx[S]) SetStatus(status string) {
	if c.refuse(fmt.Sprintf("SetStatus(%q)", status)) != nil {
		return
	}
	c.r.c.Status = status
}

// Begin marks step as the current step (shown in the state query until
// Completed or Fail). After Fail it is refused (see Fail).
func (c *Ctx[S]) Begin(step string) {
	if c.refuse(fmt.Sprintf("Begin(%q)", step)) != nil {
		return
	}
	c.r.c.CurrentStep = step
}

// Completed records that step succeeded and registers the compensations
// that undo it (none for a step with nothing to undo). Add them right after
// the step succeeds; Fail runs them newest first. After Fail it is refused
// (see Fail): the step is not recorded and its undos are not registered.
func (c *Ctx[S]) Completed(step string, undo ...Undo) {
	if c.refuse(fmt.Sprintf("Completed(%q)", step)) != nil {
		return
	}
	c.r.c.CompletedSteps = keepLastSteps(c.r.ctx, append(c.r.c.CompletedSteps, step))
	if c.r.c.CurrentStep == step {
		c.r.c.CurrentStep = ""
	}
	c.register(undo)
}

// Compensate registers compensations before their step runs. Use it for a
// step whose failure does not prove it had no effect: a charge that went
// through and then timed out must still be refunded, so the refund is
// registered before the charge (the undo must then be harmless when there
// is nothing to undo). Fail runs compensations newest first. After Fail it
// is refused (see Fail).
func (c *Ctx[S]) Compensate(undo ...Undo) {
	if len(undo) > 0 && c.refuse("Compensate("+undoNames(undo)+")") != nil {
		return
	}
	c.register(undo)
}

// register adds undo to the pending compensations.
func (c *Ctx[S]) register(undo []Undo) {
	for _, u := range undo {
		if u.DeadLetter && c.Event.Topic != "" {
			e := c.Event
			u.Record = &e
		}
		c.r.c.PendingCompensations = append(c.r.c.PendingCompensations, u)
	}
}

// On registers the handler of records of event type typ: the runtime
// decodes each record's JSON value into E and calls fn. A record that does
// not decode, and a handler error, reject the record: it is kept in
// Snapshot.Rejected with the reason and the entity goes on. Business failures
// that must undo steps return Ctx.Fail instead (return c.Fail(status, err)),
// which does not reject the record.
func On[S, E any](en *Entity[S], typ string, fn func(c *Ctx[S], e E) error) {
	if en.handlers == nil {
		en.handlers = map[string]func(c *Ctx[S]) error{}
	}
	en.handlers[typ] = func(c *Ctx[S]) error {
		var e E
		if err := c.Event.Decode(&e); err != nil {
			return err
		}
		return fn(c, e)
	}
}

// Describe renders a failure for the state: "Type: message" for an
// application error (the activity's own error), the error text otherwise.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type() + ": " + app.Message()
	}
	return err.Error()
}
