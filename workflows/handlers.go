package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

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

	r *runner[S]
}

func (r *runner[S]) newCtx(e event.Envelope) *Ctx[S] {
	return &Ctx[S]{Context: r.ctx, State: &r.c.State, Event: e, r: r}
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

// Key returns the record key of the entity's events.
func (c *Ctx[S]) Key() string { return c.r.c.Key }

// Status returns the saga's status.
func (c *Ctx[S]) Status() string { return c.r.c.Status }

// SetStatus sets the saga's status. A status listed in Entity.Final ends it.
func (c *Ctx[S]) SetStatus(status string) { c.r.c.Status = status }

// Begin marks step as the current step (shown in the state query until
// Completed or Fail).
func (c *Ctx[S]) Begin(step string) { c.r.c.CurrentStep = step }

// Completed records that step succeeded and registers the compensations
// that undo it (none for a step with nothing to undo). Add them right after
// the step succeeds; Fail runs them newest first.
func (c *Ctx[S]) Completed(step string, undo ...Undo) {
	c.r.c.CompletedSteps = append(c.r.c.CompletedSteps, step)
	if c.r.c.CurrentStep == step {
		c.r.c.CurrentStep = ""
	}
	for _, u := range undo {
		if u.DeadLetter && c.Event.Topic != "" {
			e := c.Event
			u.Record = &e
		}
		c.r.c.PendingCompensations = append(c.r.c.PendingCompensations, u)
	}
}

// Fail ends the saga with status because of err: it records err as the last
// error, runs the pending compensations (newest first, or in parallel; see
// Entity.Compensation), records their results and sets status.
func (c *Ctx[S]) Fail(status string, err error) {
	c.r.c.LastError = Describe(err)
	c.r.c.CurrentStep = ""
	c.r.c.Compensations = append(c.r.c.Compensations, c.r.compensate()...)
	c.r.c.Status = status
}

// StartTimeout starts the timeout name: unless cancelled, its OnTimeout
// handler runs after d. Starting a running timeout restarts it.
func (c *Ctx[S]) StartTimeout(name string, d time.Duration) {
	c.r.startTimer(name, workflow.Now(c).Add(d))
}

// CancelTimeout stops the timeout name; it does nothing if none runs.
func (c *Ctx[S]) CancelTimeout(name string) { c.r.cancelTimer(name) }

// On registers the handler of records of event type typ: the runtime
// decodes each record's JSON value into E and calls fn. A record that does
// not decode, and a handler error, reject the record: it is kept in
// Carry.Rejected with the reason and the entity goes on. Business failures
// that must undo steps call Ctx.Fail instead.
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

// OnTimeout registers the handler of the timeout name (Ctx.StartTimeout).
func OnTimeout[S any](en *Entity[S], name string, fn func(c *Ctx[S]) error) {
	if en.timeouts == nil {
		en.timeouts = map[string]func(c *Ctx[S]) error{}
	}
	en.timeouts[name] = fn
}

// OnUpdate registers the Temporal Update name, for a synchronous command
// such as "cancel order" whose caller waits for the answer.
//
// validate runs first, on a snapshot of the state as it is when the update
// arrives (status included); an error rejects the update before anything is
// written to history. It must only read the snapshot (it shares the state's
// slices and maps, and validators do not run on replay). validate may be nil. The runtime itself rejects
// updates once the entity is done.
//
// handle then runs in turn with records and timeouts, never concurrently
// with them, so it sees the state the records before it left; that state may
// have moved on since validate accepted the update, so handle checks again
// what it relies on. An update retried with the same update ID (after
// ContinueAsNew too) gets the first answer again without running handle
// twice. While the run continues as new, new updates are refused with an
// error that asks to send them again.
func OnUpdate[S, In, Out any](en *Entity[S], name string, validate func(st Carry[S], in In) error, handle func(c *Ctx[S], in In) (Out, error)) {
	en.updates = append(en.updates, func(r *runner[S]) error {
		run := func(ctx workflow.Context, in In) (Out, error) {
			var out Out
			id := workflow.GetCurrentUpdateInfo(ctx).ID
			if rec, ok := r.recentUpdate(id); ok {
				r.c.Stats.DedupedUpdates++
				if rec.Error != "" {
					return out, temporal.NewApplicationError(rec.Error, "UpdateFailed")
				}
				if err := json.Unmarshal(rec.Result, &out); err != nil {
					return out, fmt.Errorf("decode remembered result of update %s: %w", id, err)
				}
				return out, nil
			}
			req := &updateRequest{id: id, name: name, apply: func(c any) (any, error) { return handle(c.(*Ctx[S]), in) }}
			r.queued++
			r.updates.Send(ctx, req)
			if err := workflow.Await(ctx, func() bool { return req.done }); err != nil {
				return out, err
			}
			if req.err != nil {
				return out, req.err
			}
			out, _ = req.out.(Out)
			return out, nil
		}
		valid := func(ctx workflow.Context, in In) error {
			if r.done() {
				return fmt.Errorf("%s: already %s", name, r.c.Status)
			}
			if r.closing {
				return fmt.Errorf("%s: the workflow is continuing as new; send it again", name)
			}
			if validate == nil {
				return nil
			}
			return validate(r.snapshot(), in)
		}
		if err := workflow.SetUpdateHandlerWithOptions(r.ctx, name, run, workflow.UpdateHandlerOptions{Validator: valid}); err != nil {
			return fmt.Errorf("register %s update: %w", name, err)
		}
		return nil
	})
}

// updateRequest is an accepted update waiting for the main loop.
type updateRequest struct {
	id, name string
	apply    func(c any) (any, error)
	done     bool
	out      any
	err      error
}

// handleUpdate runs an accepted update in the main loop and remembers its
// answer.
func (r *runner[S]) handleUpdate(req *updateRequest) {
	defer func() { req.done = true }()
	if r.done() {
		req.err = temporal.NewApplicationError(fmt.Sprintf("%s: already %s", req.name, r.c.Status), "AlreadyDone")
		return
	}
	r.c.Stats.Updates++
	req.out, req.err = req.apply(r.newCtx(event.Envelope{}))
	rec := UpdateResult{ID: req.id, Name: req.name}
	if req.err != nil {
		rec.Error = req.err.Error()
	} else if b, err := json.Marshal(req.out); err == nil {
		rec.Result = b
	} else {
		rec.Error = fmt.Sprintf("encode result: %v", err)
	}
	window := r.en.UpdateWindow
	if window == 0 {
		window = 100
	}
	r.c.RecentUpdates = append(r.c.RecentUpdates, rec)
	if over := len(r.c.RecentUpdates) - window; over > 0 {
		r.c.RecentUpdates = r.c.RecentUpdates[over:]
	}
	r.showStatus()
}

// recentUpdate returns the remembered answer to update id.
func (r *runner[S]) recentUpdate(id string) (UpdateResult, bool) {
	for _, u := range r.c.RecentUpdates {
		if u.ID == id {
			return u, true
		}
	}
	return UpdateResult{}, false
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
