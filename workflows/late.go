package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities/contract"
	"github.com/sagabridge/sagabridge/event"
)

// Records that arrive after the final status. Once an entity has reached
// its final status (or was cancelled) it applies nothing more, but it is
// still open while it drains and runs Finish, and the bridge keeps
// signalling it. Such a record is treated as the bridge treats one that
// arrives a moment later, after the workflow closed: by the bridge's
// dispatch.on_closed_workflow policy, which every batch carries
// (event.Batch.OnClosed).

// lateRecordsChange is the workflow.GetVersion change ID that guards
// following the policy for late records (the DeadLetter activity and the
// new run are new commands; older runs only rejected them).
const lateRecordsChange = "sagabridge.late-records"

// A late record's DeadLetter is retried until Kafka takes the record,
// since a DLQ the worker cannot write to for a while (an ACL missing, the
// brokers down) is never the record's fault; but not for ever by workers
// that can never write it: one that does not register the activity (the
// SDK's ActivityNotRegisteredError) or registers it without a producer
// (activities' NoProducer). The run would stay open for good. Those
// answers are final for the activity, and the workflow asks again, every
// cannotWriteWait, up to cannotWriteTries times in all (a rolling deploy's
// next worker may register it); the record is then kept as a rejection
// that says why.
var cannotWrite = []string{"ActivityNotRegisteredError", "NoProducer"}

const (
	cannotWriteTries = 10
	cannotWriteWait  = time.Minute
)

// cannotWriteChange is the workflow.GetVersion change ID that guards
// asking again after a worker that cannot write a late record answered.
const cannotWriteChange = "sagabridge.late-dlq-ask-again"

// deadLetterLate runs the DeadLetter activity for a late record (see
// cannotWrite).
func (r *runner[S]) deadLetterLate(in contract.DeadLetterInput) error {
	for try := 1; ; try++ {
		err := deadLetter(r.ctx, in, cannotWrite...)
		var appErr *temporal.ApplicationError
		if err == nil || try >= cannotWriteTries || !errors.As(err, &appErr) || !slices.Contains(cannotWrite, appErr.Type()) ||
			workflow.GetVersion(r.ctx, cannotWriteChange, workflow.DefaultVersion, 1) < 1 {
			return err
		}
		workflow.GetLogger(r.ctx).Warn("the worker cannot write a late record to the DLQ; asking again",
			"position", in.Event.Position().String(), "try", try, "err", err)
		_ = workflow.Sleep(r.ctx, cannotWriteWait) // a cancelled run asks again at once, cannotWriteTries in all
	}
}

// late handles a record that arrived after the final status:
//   - "new_run": kept, and handed to a new run when this one ends (newRun);
//   - "dlq": written to the DLQ with class workflow_closed (the DeadLetter
//     activity) and listed as a rejection;
//   - "drop": listed as a rejection;
//   - no policy (a signal that did not come from the bridge): listed as a
//     rejection.
func (r *runner[S]) late(e event.Envelope) {
	reason := fmt.Sprintf("arrived after the final status %s", r.c.Status)
	policy := r.in.OnClosed
	if policy != "" && workflow.GetVersion(r.ctx, lateRecordsChange, workflow.DefaultVersion, 1) < 1 {
		policy = "" // a run from before late records followed the policy: rejected, as it did then
	}
	if policy == "new_run" && r.newRunFull(e) {
		policy, reason = "dlq", reason+"; the new run's input is full (Entity.MaxCarryBytes)"
		if workflow.GetVersion(r.ctx, lateRemembersChange, workflow.DefaultVersion, 1) >= 1 {
			// Not applied, here or by the new run, which remembers this
			// run's keys: a redrive of it must not be a duplicate there,
			// and its key must not grow the new run's input.
			r.in.forgetKey(e)
		}
	}
	switch policy {
	case "new_run":
		r.lateRecords = append(r.lateRecords, e)
		r.lateBytes += e.JSONSize()
		workflow.GetLogger(r.ctx).Info("record arrived after the final status; a new run will apply it",
			"position", e.Position().String())
		return
	case "drop":
		reason += "; dropped (on_closed_workflow: drop)"
	case "dlq":
		in := contract.DeadLetterInput{Event: e, Error: reason, Class: contract.ClassWorkflowClosed}
		if err := r.deadLetterLate(in); err != nil {
			reason += "; could not be dead-lettered: " + err.Error()
		} else {
			reason += "; dead-lettered (on_closed_workflow: " + r.in.OnClosed + ")"
		}
	}
	r.rejectRecord(e, r.count(e), reason)
}

// newRunFull reports whether the new run's input has no room for e within
// Entity.MaxCarryBytes, now or since an earlier record found none (so that
// the late records it takes stay in order). Its input is otherwise
// unbounded: a hot key whose Finish took a while made one over Temporal's
// payload limit, the continue-as-new was refused and the run terminated.
// Runs recorded before the bound took every record.
func (r *runner[S]) newRunFull(e event.Envelope) bool {
	if !r.lateFull && jsonSize(r.newRunInput(nil))+r.lateBytes+e.JSONSize() > r.maxCarryBytes() {
		r.lateFull = workflow.GetVersion(r.ctx, lateBoundChange, workflow.DefaultVersion, 1) >= 1
	}
	return r.lateFull
}

// lateBoundChange is the workflow.GetVersion change ID that guards bounding
// the new run's input (newRunFull).
const lateBoundChange = "sagabridge.late-records-bound"

// newRunInput is the input of the new run for the late records: a fresh
// state, the watermarks rewound to just before them, and the records as
// its inbox (see Snapshot.fresh), with this run's own watermarks as
// LateWatermarks and the records counted as admitted (InboxAdmitted). The
// new run starts from LateWatermarks: from the rewound ones alone it
// applied a later record this run had dead-lettered or dropped, when
// Kafka delivered it again. Runs recorded before LateWatermarks sent the
// rewound ones only.
func (r *runner[S]) newRunInput(late []event.Envelope) *Snapshot[S] {
	marks := event.NewWatermarks()
	for k, v := range r.in.Watermarks {
		marks[k] = v
	}
	next := &Snapshot[S]{Watermarks: marks, Inbox: late, OnClosed: r.in.OnClosed, PreviousRunError: r.finishErr,
		Progress: Progress{CompletedSteps: []string{}, Compensations: []CompensationResult{}}}
	if workflow.GetVersion(r.ctx, lateAdmittedChange, workflow.DefaultVersion, 1) >= 1 {
		next.InboxAdmitted, next.LateWatermarks = len(late), maps.Clone(marks)
	}
	if workflow.GetVersion(r.ctx, lateRemembersChange, workflow.DefaultVersion, 1) >= 1 {
		next.RecentKeys, next.RecentUpdates = r.in.RecentKeys(), slices.Clone(r.c.RecentUpdates)
	}
	for _, e := range late {
		marks.Rewind(e.Position())
	}
	return next
}

// lateAdmittedChange is the workflow.GetVersion change ID that guards
// handing late records to the new run admitted (newRunInput).
const lateAdmittedChange = "sagabridge.late-records-admitted"

// lateRemembersChange is the workflow.GetVersion change ID that guards
// handing the idempotency keys and the updates' answers to the new run of
// the late records (newRunInput): it is a ContinueAsNew, and a producer's
// retry of a record, or a client's of an update, reaches it.
const lateRemembersChange = "sagabridge.late-records-remember"

// newRun is the ContinueAsNew that hands the late records of the new_run
// policy to a new run of the entity (newRunInput).
func (r *runner[S]) newRun() error {
	workflow.GetLogger(r.ctx).Info("starting a new run for records that arrived after the final status",
		"records", len(r.lateRecords), "status", r.c.Status)
	next := r.newRunInput(r.lateRecords)
	encodableTimestamps(next)
	return workflow.NewContinueAsNewError(r.ctx, workflow.GetInfo(r.ctx).WorkflowType.Name, next)
}

// fitPreviousRunError cuts msg to 1,000 bytes, and shorter (to nothing
// if need be) so that the new run's input, sized when its records were
// taken (newRunFull), stays within MaxCarryBytes with it.
func (r *runner[S]) fitPreviousRunError(msg string) string {
	in := r.newRunInput(r.lateRecords)
	encodableTimestamps(in) // as newRun sends it
	room := r.maxCarryBytes() - jsonSize(in) - len(`,"previous_run_error":`)
	msg = truncate(msg, 1000)
	for msg != "" && jsonSize(msg) > room {
		msg = truncate(msg, len(msg)/2)
	}
	return msg
}

// truncate cuts s to at most n bytes, at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
