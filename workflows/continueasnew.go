package workflows

import (
	"encoding/json"
	"math"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// continueAsNew reports whether this run is large enough to start afresh.
func (en *Entity[S]) continueAsNew(ctx workflow.Context, appliedHere int) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() ||
		(en.MaxHistoryEvents > 0 && info.GetCurrentHistoryLength() >= en.MaxHistoryEvents) ||
		(en.MaxAppliedPerRun > 0 && appliedHere >= en.MaxAppliedPerRun)
}

// carryBoundChange is the workflow.GetVersion change ID that guards the
// bound on the next run's input, so histories recorded before it (which
// carried every pending record) still replay.
const carryBoundChange = "sagabridge.carry-bound"

// cancelBeforeContinueChange is the workflow.GetVersion change ID that
// guards ending a hand-over to the next run when a cancellation arrives
// during it (nextRun); older runs continued as new and lost it.
const cancelBeforeContinueChange = "sagabridge.cancel-before-continue"

// doneBeforeContinueChange is the workflow.GetVersion change ID that
// guards closing the run when an update answered during the hand-over to
// the next run made the saga final (nextRun); older runs continued as new
// with a final status.
const doneBeforeContinueChange = "sagabridge.done-before-continue"

// encodableTimestampsChange is the workflow.GetVersion change ID that guards
// sizing the state with its records' timestamps made encodable
// (encodableTimestamps) and dead-lettering such a record (DeadLetter);
// older runs sized a state holding a record whose timestamp JSON cannot
// encode as too large to carry, and never continued as new, and could not
// schedule its dead letter.
const encodableTimestampsChange = "sagabridge.encodable-timestamps"

// carrySizeChange is the workflow.GetVersion change ID that guards the
// size of the records carried (event.Envelope.JSONSize, which counts a
// byte of invalid UTF-8 as the six bytes it is written as), so histories
// recorded while it counted three (JSONSizeV1) still replay.
const carrySizeChange = "sagabridge.carry-size-escapes"

// carryKeyBytesChange is the workflow.GetVersion change ID that guards
// counting a binary record key's KeyBytes in the size of the records
// carried (event.Envelope.JSONSize): a worker older than that field
// dropped it, so histories it recorded replay with JSONSizeV2.
const carryKeyBytesChange = "sagabridge.carry-key-bytes"

// carryMarksChange is the workflow.GetVersion change ID that guards
// counting the marks of a null key and of an empty value
// (event.Envelope.KeyNull, ValueEmpty) in the size of the state: a worker
// older than those fields dropped them (olderRecords).
const carryMarksChange = "sagabridge.carry-null-empty"

// defaultMaxCarryBytes is Entity.MaxCarryBytes by default.
const defaultMaxCarryBytes = 1 << 20

// nextRun prepares the input of the next run: it answers the accepted
// updates and carries the records that arrived and were not applied, as
// long as the whole input stays under Entity.MaxCarryBytes; past that it
// applies records here first. More may arrive meanwhile, but the bridge
// sends a workflow at most dispatch.workflow_window records it has not
// applied, so this ends. ok is false when the input without any record is
// already over the bound (a state that large): the run must not continue
// as new, or Temporal would terminate it.
func (r *runner[S]) nextRun() (Snapshot[S], bool) {
	limit := r.maxCarryBytes()
	bounded := workflow.GetVersion(r.ctx, carryBoundChange, workflow.DefaultVersion, 1) >= 1
	pending := func() int { return r.in.pendingBytesV1 }
	keyBytes := false // the records' KeyBytes count, in the inbox and in the state
	marks := false    // the records' KeyNull and ValueEmpty count in the state
	if bounded && workflow.GetVersion(r.ctx, carrySizeChange, workflow.DefaultVersion, 1) >= 1 {
		pending = func() int { return r.in.pendingBytesV2 }
		if workflow.GetVersion(r.ctx, carryKeyBytesChange, workflow.DefaultVersion, 1) >= 1 {
			pending, keyBytes = func() int { return r.in.pendingBytes }, true
			marks = workflow.GetVersion(r.ctx, carryMarksChange, workflow.DefaultVersion, 1) >= 1
		}
	}
	// A cancellation that arrives meanwhile ends the hand-over: the SDK
	// continues as new despite a pending request, and the next run would
	// never see it. The run then handles it as between two records.
	cancelled := func() bool {
		return r.ctx.Err() != nil && workflow.GetVersion(r.ctx, cancelBeforeContinueChange, workflow.DefaultVersion, 1) >= 1
	}
	for {
		r.settleUpdates()
		next := r.rawSnapshot()
		// Runs recorded before the snapshot's timestamps were made
		// encodable sized a state holding such a record as too large.
		oldSize := holdsUnencodable(&next) && workflow.GetVersion(r.ctx, encodableTimestampsChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion
		encodableTimestamps(&next)
		if bounded && cancelled() {
			return next, false
		}
		if r.done() && workflow.GetVersion(r.ctx, doneBeforeContinueChange, workflow.DefaultVersion, 1) >= 1 {
			// An update answered while settling made the saga final: the
			// run closes here (Finish, the timeouts stopped), as when a
			// record does.
			return next, false
		}
		if !bounded {
			next.Inbox, next.OnClosed, next.InboxAdmitted = r.in.pending, r.in.OnClosed, r.in.admittedAhead
			return next, true
		}
		base := jsonSize(olderRecords(next, keyBytes, marks))
		if oldSize {
			base = math.MaxInt
		}
		if base > limit {
			workflow.GetLogger(r.ctx).Error("the entity's state alone is over MaxCarryBytes: not continuing as new, "+
				"since Temporal terminates a run whose next input is over its payload limit", "bytes", base, "max_carry_bytes", limit)
			return next, false
		}
		if base+pending() <= limit {
			next.Inbox, next.OnClosed, next.InboxAdmitted = r.in.pending, r.in.OnClosed, r.in.admittedAhead
			return next, true
		}
		for base+pending() > limit { // apply what does not fit, oldest first
			e, ok := r.in.admitPending()
			if !ok {
				break
			}
			r.apply(e)
			if r.done() {
				// A record made it final: the run ends here (Run drains,
				// runs Finish and hands late records on), not in a new run.
				return next, false
			}
			if cancelled() {
				return next, false
			}
		}
	}
}

// olderRecords is s as a worker of an earlier version decoded it: the
// records it holds (held, and those of pending and of failed
// compensations' undos) without KeyBytes unless keyBytes, and without
// KeyNull and ValueEmpty unless marks (event.Envelope). Runs recorded by
// such a worker sized their state so, and replay must decide as they did.
func olderRecords[S any](s Snapshot[S], keyBytes, marks bool) Snapshot[S] {
	has := func(e *event.Envelope) bool {
		return e != nil && (!keyBytes && e.KeyBytes != nil || !marks && (e.KeyNull || e.ValueEmpty))
	}
	if !slices.ContainsFunc(s.Held, func(h HeldRecord) bool { return has(&h.Record) }) &&
		!slices.ContainsFunc(s.PendingCompensations, func(u Undo) bool { return has(u.Record) }) &&
		!slices.ContainsFunc(s.Compensations, func(c CompensationResult) bool { return c.Undo != nil && has(c.Undo.Record) }) {
		return s
	}
	strip := func(e *event.Envelope) {
		if !keyBytes {
			e.KeyBytes = nil
		}
		if !marks {
			e.KeyNull, e.ValueEmpty = false, false
		}
	}
	stripped := func(e *event.Envelope) *event.Envelope {
		if !has(e) {
			return e
		}
		c := *e
		strip(&c)
		return &c
	}
	s.Held = slices.Clone(s.Held)
	for i := range s.Held {
		strip(&s.Held[i].Record)
	}
	s.PendingCompensations = slices.Clone(s.PendingCompensations)
	for i, u := range s.PendingCompensations {
		s.PendingCompensations[i].Record = stripped(u.Record)
	}
	s.Compensations = slices.Clone(s.Compensations)
	for i, c := range s.Compensations {
		if c.Undo != nil && has(c.Undo.Record) {
			u := *c.Undo
			u.Record = stripped(u.Record)
			s.Compensations[i].Undo = &u
		}
	}
	return s
}

// maxCarryBytes is Entity.MaxCarryBytes, or its default.
func (r *runner[S]) maxCarryBytes() int {
	if r.en.MaxCarryBytes == 0 {
		return defaultMaxCarryBytes
	}
	return r.en.MaxCarryBytes
}

// jsonSize is the size of v as JSON, as the next run's input is sent.
func jsonSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return math.MaxInt // cannot be carried
	}
	return len(b)
}

// settleUpdates answers every accepted update, moving records that arrive
// meanwhile to the inbox without applying them, and waits for the update
// handlers to return. New updates are refused while closing.
func (r *runner[S]) settleUpdates() {
	r.settle(func() bool {
		var b event.Batch
		if r.in.ch.ReceiveAsync(&b) {
			r.in.push(b)
			return true
		}
		return r.answerQueuedUpdate()
	})
}

// drain applies everything already received (records, updates, fired
// timeouts) and waits for running update handlers, so that nothing is
// lost when the run closes or continues as new.
func (r *runner[S]) drain() { r.settle(r.drainOne) }

// settle runs step until nothing is ready, waits until an update is queued
// or every update handler has returned, and repeats until nothing arrived
// while it waited.
func (r *runner[S]) settle(step func() bool) {
	for {
		for step() {
		}
		workflow.Await(r.ctx, func() bool { return r.queued > 0 || workflow.AllHandlersFinished(r.ctx) })
		if !step() {
			return
		}
	}
}

// drainOne applies one ready item without blocking and reports whether it did.
func (r *runner[S]) drainOne() bool {
	if e, ok := r.in.TryNext(); ok {
		r.apply(e)
		return true
	}
	if r.answerQueuedUpdate() {
		return true
	}
	if !r.done() {
		for _, name := range r.timerNames() {
			if t := r.timers[name]; t.fired.IsReady() {
				r.fire(name, t.fired)
				return true
			}
		}
	}
	return false
}

// encodableTimestamps makes the timestamps of the records s carries ones
// JSON can encode again: a record decoded with one past year 9999 or with
// a zone offset of 24 hours (bridges before such records were
// dead-lettered sent them) made ContinueAsNew panic, the workflow task
// failing for ever, and the state query and the result fail. Such a
// timestamp becomes the same instant in UTC, or none when even that is
// past year 9999. s's slices and undo records are copied before they are
// changed. The input's and the result's contents are not compared on
// replay, so this changes no recorded run (nextRun's sizing is guarded).
func encodableTimestamps[S any](s *Snapshot[S]) {
	if !holdsUnencodable(s) {
		return
	}
	fix := encodable
	s.Inbox = slices.Clone(s.Inbox)
	for i := range s.Inbox {
		fix(&s.Inbox[i])
	}
	s.Held = slices.Clone(s.Held)
	for i := range s.Held {
		fix(&s.Held[i].Record)
	}
	fixUndo := func(u *Undo) {
		if u.Record != nil && unencodable(u.Record) {
			rec := *u.Record
			fix(&rec)
			u.Record = &rec
		}
	}
	s.PendingCompensations = slices.Clone(s.PendingCompensations)
	for i := range s.PendingCompensations {
		fixUndo(&s.PendingCompensations[i])
	}
	s.Compensations = slices.Clone(s.Compensations)
	for i, c := range s.Compensations {
		if c.Undo != nil {
			u := *c.Undo
			fixUndo(&u)
			s.Compensations[i].Undo = &u
		}
	}
}

// encodable makes e's timestamp one JSON can encode: the same instant in
// UTC, or none when even that is past year 9999.
func encodable(e *event.Envelope) {
	if !unencodable(e) {
		return
	}
	if _, err := e.Timestamp.UTC().MarshalJSON(); err == nil {
		e.Timestamp = e.Timestamp.UTC()
	} else {
		e.Timestamp = time.Time{}
	}
}

// unencodable reports whether e's timestamp cannot be encoded as JSON.
func unencodable(e *event.Envelope) bool {
	_, err := e.Timestamp.MarshalJSON()
	return err != nil
}

// holdsUnencodable reports whether a record s carries has a timestamp JSON
// cannot encode (encodableTimestamps).
func holdsUnencodable[S any](s *Snapshot[S]) bool {
	return slices.ContainsFunc(s.Inbox, func(e event.Envelope) bool { return unencodable(&e) }) ||
		slices.ContainsFunc(s.Held, func(h HeldRecord) bool { return unencodable(&h.Record) }) ||
		slices.ContainsFunc(s.PendingCompensations, func(u Undo) bool { return u.Record != nil && unencodable(u.Record) }) ||
		slices.ContainsFunc(s.Compensations, func(c CompensationResult) bool {
			return c.Undo != nil && c.Undo.Record != nil && unencodable(c.Undo.Record)
		})
}
