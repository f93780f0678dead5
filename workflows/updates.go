package workflows

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

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
// ContinueAsNew too) gets the first answer again without running validate
// or handle again. While the run continues as new, new updates are refused with an
// error that asks to send them again.
func OnUpdate[S, In, Out any](en *Entity[S], name string, validate func(st Snapshot[S], in In) error, handle func(c *Ctx[S], in In) (Out, error)) {
	en.updates = append(en.updates, func(r *runner[S]) error {
		run := func(ctx workflow.Context, in In) (Out, error) {
			var out Out
			id := workflow.GetCurrentUpdateInfo(ctx).ID
			if rec, ok := r.recentUpdate(id); ok {
				r.c.Stats.DedupedUpdates++
				if rec.Error != "" {
					return out, temporal.NewApplicationErrorWithOptions(rec.Error, cmp.Or(rec.ErrorType, "UpdateFailed"),
						temporal.ApplicationErrorOptions{NonRetryable: rec.NonRetryable})
				}
				if err := json.Unmarshal(rec.Result, &out); err != nil {
					return out, fmt.Errorf("decode remembered result of update %s: %w", id, err)
				}
				return out, nil
			}
			req := &updateRequest{id: id, name: name, apply: func(c any) (any, error) { return handle(c.(*Ctx[S]), in) },
				after: r.in.received + r.in.ch.Len()}
			r.queued++
			r.updates.Send(ctx, req)
			err := workflow.Await(ctx, func() bool { return req.done })
			if err != nil && workflow.GetVersion(ctx, updateThroughCancelChange, workflow.DefaultVersion, 1) >= 1 {
				// The workflow is asked to cancel: wait on for the main
				// loop's answer, since the update may take effect all the
				// same (its handler under way, or answered as refused once
				// the saga ends), and the caller must be told what happened.
				wait, _ := workflow.NewDisconnectedContext(ctx)
				err = workflow.Await(wait, func() bool { return req.done })
			}
			if err != nil {
				return out, err
			}
			if req.err != nil {
				return out, req.err
			}
			out, _ = req.out.(Out)
			return out, nil
		}
		valid := func(ctx workflow.Context, in In) error {
			if _, ok := r.recentUpdate(workflow.GetCurrentUpdateInfo(ctx).ID); ok {
				return nil // a retry: run answers it as the first time, whatever the state now
			}
			if r.done() {
				return r.alreadyDone(name)
			}
			if r.closing {
				return temporal.NewApplicationError(name+": the workflow is continuing as new; send it again", "ContinuingAsNew")
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

// updateThroughCancelChange is the workflow.GetVersion change ID that
// guards waiting for an update's answer through a cancellation of the
// workflow (older runs answered "canceled" at once).
const updateThroughCancelChange = "sagabridge.update-through-cancel"

// updateErrorTypeChange is the workflow.GetVersion change ID that guards
// remembering a failed update's error type and retryability.
const updateErrorTypeChange = "sagabridge.update-error-type"

// updateRequest is an accepted update waiting for the main loop.
type updateRequest struct {
	id, name string
	apply    func(c any) (any, error)
	// after is how many batches of records had come when the update came
	// (received, or waiting in the signal channel): those go first.
	after int
	done  bool
	out   any
	err   error
}

// handleUpdate runs an accepted update in the main loop and remembers its
// answer.
func (r *runner[S]) handleUpdate(req *updateRequest) {
	defer func() { req.done = true }()
	if r.done() {
		req.err = r.alreadyDone(req.name)
		return
	}
	r.c.Stats.Updates++
	c := r.newCtx(event.Envelope{})
	req.out, req.err = req.apply(c)
	if len(c.call.misuses) > 0 {
		r.reject(Rejection{Update: req.name, Reason: c.rejection(req.err)})
		req.out = nil
	}
	// Fail's error is no failure of the update (nil), calls after Fail are.
	req.err = c.outcome(req.err)
	rec := UpdateResult{ID: req.id, Name: req.name}
	if req.err != nil {
		rec.Error = req.err.Error()
		// Asked only for an application error: older runs remembered its
		// message alone, and the state's size can decide what a run carries.
		// The handler's own application error only: one wrapped in another
		// error reached the caller as that error's type, retryable.
		if app, ok := req.err.(*temporal.ApplicationError); ok && workflow.GetVersion(r.ctx, updateErrorTypeChange, workflow.DefaultVersion, 1) >= 1 {
			rec.ErrorType, rec.NonRetryable = app.Type(), app.NonRetryable()
		}
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
	r.boundRecentUpdates()
	r.showStatus()
	r.retryHeld()
}

// boundRecentUpdates keeps the remembered answers within a quarter of
// MaxCarryBytes, the oldest forgotten first; an answer over that alone is
// remembered as an error that says it ran, so that a retry is not run a
// second time. Remembered by count alone, 100 answers of 12 KB made the
// state larger than MaxCarryBytes and the run could no longer continue as
// new. Runs recorded before the bound kept every answer of the window.
func (r *runner[S]) boundRecentUpdates() {
	budget := r.maxCarryBytes() / 4
	sizes := make([]int, len(r.c.RecentUpdates))
	total := 0
	for i, u := range r.c.RecentUpdates {
		sizes[i] = jsonSize(u)
		total += sizes[i]
	}
	if total <= budget || workflow.GetVersion(r.ctx, updateAnswersBoundChange, workflow.DefaultVersion, 1) < 1 {
		return
	}
	newest := len(r.c.RecentUpdates) - 1
	if u := &r.c.RecentUpdates[newest]; sizes[newest] > budget {
		total -= sizes[newest]
		u.Error = fmt.Sprintf("%s: the update ran, but its answer (%d bytes) is too large to remember for a retry; query the workflow's state for its effect",
			u.Name, len(u.Result))
		u.Result, u.ErrorType, u.NonRetryable = nil, "AnswerTooLargeToRemember", true
		sizes[newest] = jsonSize(*u)
		total += sizes[newest]
	}
	drop := 0
	for total > budget && drop < newest {
		total -= sizes[drop]
		drop++
	}
	r.c.RecentUpdates = slices.Delete(r.c.RecentUpdates, 0, drop)
}

// updateAnswersBoundChange is the workflow.GetVersion change ID that guards
// bounding the remembered answers in bytes (boundRecentUpdates).
const updateAnswersBoundChange = "sagabridge.update-answers-bound"

// alreadyDone is the error of the update name refused because the entity
// is done. It is non-retryable (the failure's non_retryable flag): sending
// the update again cannot succeed. Temporal never retries an update by
// itself; the flag tells clients and their retry helpers not to either.
func (r *runner[S]) alreadyDone(name string) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: already %s", name, r.c.Status), "AlreadyDone", nil)
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

// answerQueuedUpdate handles one update waiting in the queue, if any.
func (r *runner[S]) answerQueuedUpdate() bool {
	req := r.nextUpdate()
	if req == nil {
		return false
	}
	r.ahead = nil
	r.queued--
	r.handleUpdate(req)
	return true
}

// nextUpdate is the update waiting first in the queue, left there; nil
// when none is.
func (r *runner[S]) nextUpdate() *updateRequest {
	if r.ahead == nil {
		r.updates.ReceiveAsync(&r.ahead)
	}
	return r.ahead
}
