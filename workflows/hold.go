package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// Records that arrive before their precondition. Kafka orders records per
// partition only: a PaymentMethodAdded from one producer can reach the
// entity before the SignupRequested it depends on from another. A handler
// that finds its precondition unmet holds the record instead of rejecting
// it (return c.Hold(...)); the runtime hands it to the handler again, in
// arrival order, after every record, update or timeout that was handled
// (any of them may have changed the condition), until the handler applies
// it. Held records are bounded (Entity.MaxHeld), shown in the state query
// (Snapshot.Held), carried across ContinueAsNew, and rejected when the saga
// ends ("held until the saga ended: <reason>").

// ErrHeld is wrapped by the error Ctx.Hold returns; the runtime recognises
// it and holds the record instead of rejecting it.
var ErrHeld = errors.New("record held")

// holdChange is the workflow.GetVersion change ID that guards holding. It
// is asked only when a handler holds, so runs that never hold issue the
// same commands as before; a history recorded before Hold existed, where
// the record was rejected instead, replays with the record rejected.
const holdChange = "sagabridge.hold"

// defaultMaxHeld is Entity.MaxHeld by default.
const defaultMaxHeld = 100

// HeldRecord is a record a handler held (Ctx.Hold), waiting for its
// precondition.
type HeldRecord struct {
	// AppliedEvent is the record's position and type.
	AppliedEvent
	// Reason is what the handler said it waits for.
	Reason string `json:"reason"`
	// Since is when the record was first held.
	Since time.Time `json:"since"`
	// Record is the record, kept to hand it to its handler again.
	Record event.Envelope `json:"record"`
}

// Hold keeps the record being handled until its precondition holds, and
// returns the error the handler returns at once:
//
//	workflows.On(en, "PaymentMethodAdded", func(c *workflows.Ctx[Signup], e PaymentMethod) error {
//		if c.Status() == workflows.StatusNew {
//			return c.Hold("waiting for SignupRequested")
//		}
//		...
//	})
//
// The runtime hands the record to the handler again, in arrival order with
// the other held records, after each record, update or timeout handled
// from then on, until the handler does something other than hold it. So
// check the precondition first and hold before changing anything: the
// handler runs again from the start. Hold is meant for a record's handler,
// not for the condition being made to depend on time or on the outside
// world, which would make the record wait for ever.
//
// This is chosen over declaring the precondition at registration (such as
// a status filter on On) because the handler is where the condition is
// checked already, it may be any condition on the state, and a handler
// that holds reads like one that rejects.
//
// At most Entity.MaxHeld records are held at once; a record held past that
// is rejected ("held records full ..."). When the saga ends, the records
// still held are rejected with the reason "held until the saga ended:
// <reason>". Held records are listed in the state query (Snapshot.Held)
// and carried across ContinueAsNew. Hold from a timeout or update handler
// (which have no record) returns an error that rejects them instead.
func (c *Ctx[S]) Hold(reason string) error {
	if err := c.refuse(fmt.Sprintf("Hold(%q)", reason)); err != nil {
		return err
	}
	if !c.call.record {
		return fmt.Errorf("Hold(%q): only a record's handler can hold its record", reason)
	}
	if workflow.GetVersion(c.r.ctx, holdChange, workflow.DefaultVersion, 1) < 1 {
		return fmt.Errorf("%s (not held: this run started before records could be held)", reason)
	}
	c.call.held = reason
	return fmt.Errorf("%w: %s", ErrHeld, reason)
}

// heldBy reports whether the handler's err is its Hold's, and the reason.
func (c *Ctx[S]) heldBy(err error) (string, bool) {
	if c.call.held == "" || !errors.Is(err, ErrHeld) || len(c.call.misuses) > 0 {
		return "", false
	}
	return c.call.held, true
}

// handle runs the handler of the record e; it returns the reason to hold
// it (held) or else to reject it ("" when applied).
func (r *runner[S]) handle(e event.Envelope) (reason string, held bool) {
	h, ok := r.en.handlers[e.Type]
	switch {
	case ok:
		c := r.newCtx(e)
		c.call.record = true
		err := h(c)
		if reason, ok := c.heldBy(err); ok {
			return reason, true
		}
		return c.rejection(err), false
	case r.en.Apply != nil:
		r.en.Apply(r.ctx, &r.c.State, e)
		return "", false
	}
	return fmt.Sprintf("no handler for event type %q", e.Type), false
}

// hold keeps the record e at pos that its handler held for reason, or
// rejects it when Entity.MaxHeld records are held already.
func (r *runner[S]) hold(e event.Envelope, pos AppliedEvent, reason string) {
	limit := r.en.MaxHeld
	if limit == 0 {
		limit = defaultMaxHeld
	}
	if len(r.c.Held) >= limit {
		r.rejectRecord(e, pos, fmt.Sprintf("held records full (Entity.MaxHeld %d): %s", limit, reason))
		return
	}
	r.c.Held = append(r.c.Held, HeldRecord{AppliedEvent: pos, Reason: reason, Since: workflow.Now(r.ctx), Record: e})
	workflow.GetLogger(r.ctx).Info("record held", "type", e.Type, "position", e.Position().String(), "reason", reason)
}

// retryHeld hands the held records to their handlers again, oldest first,
// after something was handled that may have met their precondition. Each
// record applied may meet another's, so it goes round again until a round
// applies none, or the saga is done. A cancellation that came while the
// last handler ran stops it: the records stay held, and the cancellation
// is handled first, as it is before the next record.
func (r *runner[S]) retryHeld() {
	for again := true; again && len(r.c.Held) > 0 && !r.done() && !r.cancelStopsHeld(); {
		again = false
		for i := 0; i < len(r.c.Held) && !r.done() && !r.cancelStopsHeld(); {
			h := r.c.Held[i]
			reason, held := r.handle(h.Record)
			if held {
				r.c.Held[i].Reason = reason
				i++
				continue
			}
			r.c.Held = slices.Delete(r.c.Held, i, i+1)
			if reason != "" {
				r.rejectRecord(h.Record, h.AppliedEvent, reason)
			}
			again = true
			r.showStatus()
		}
	}
}

// cancelStopsHeld reports whether a cancellation still to be handled
// stops the retry of held records. Runs recorded before this check retried
// them on the cancelled context, and replay as they ran.
func (r *runner[S]) cancelStopsHeld() bool {
	return r.cancelPending() && workflow.GetVersion(r.ctx, heldWaitForCancelChange, workflow.DefaultVersion, 1) >= 1
}

// heldWaitForCancelChange is the workflow.GetVersion change ID that guards
// cancelStopsHeld.
const heldWaitForCancelChange = "sagabridge.held-wait-for-cancel"

// releaseHeld rejects the records still held when the saga ends.
func (r *runner[S]) releaseHeld() {
	for _, h := range r.c.Held {
		r.rejectRecord(h.Record, h.AppliedEvent, "held until the saga ended: "+h.Reason)
	}
	r.c.Held = nil
}
