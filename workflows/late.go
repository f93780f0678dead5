package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// Records that arrive after the final status. Once an entity has reached
// its final status (or was cancelled) it applies nothing more, but it is
// still open while it drains and runs Finish, and the bridge keeps
// signalling it. Such a record is treated as the bridge treats one that
// arrives a moment later, after the workflow closed: by the bridge's
// dispatch.on_closed_workflow policy, which every batch carries
// (event.Batch.OnClosed).

// lateDLQAttempts bounds the DeadLetter activity for a late record, so a
// worker without the activities.DeadLetterer registered cannot keep the run
// open for ever; the record is then kept as a rejection.
const lateDLQAttempts = 8

// late handles a record that arrived after the final status:
//   - "new_run": kept, and handed to a new run when this one ends (newRun);
//   - "dlq": written to the DLQ with class workflow_closed (the DeadLetter
//     activity) and listed as a rejection;
//   - "drop": listed as a rejection;
//   - no policy (a signal that did not come from the bridge): listed as a
//     rejection.
func (r *runner[S]) late(e event.Envelope) {
	reason := fmt.Sprintf("arrived after the final status %s", r.c.Status)
	switch r.in.OnClosed {
	case "new_run":
		r.lateRecords = append(r.lateRecords, e)
		workflow.GetLogger(r.ctx).Info("record arrived after the final status; a new run will apply it",
			"position", e.Position().String())
		return
	case "drop":
		reason += "; dropped (on_closed_workflow: drop)"
	case "dlq":
		if err := r.deadLetterLate(e, reason); err != nil {
			reason += "; could not be dead-lettered: " + err.Error()
		} else {
			reason += "; dead-lettered (on_closed_workflow: dlq)"
		}
	}
	pos := r.count(e)
	r.reject(Rejection{AppliedEvent: &pos, Reason: reason})
	workflow.GetLogger(r.ctx).Warn("event rejected", "type", e.Type, "position", e.Position().String(), "reason", reason)
}

// deadLetterLate writes a late record to its DLQ topic.
func (r *runner[S]) deadLetterLate(e event.Envelope, reason string) error {
	ctx := workflow.WithActivityOptions(r.ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: lateDLQAttempts},
	})
	in := activities.DeadLetterInput{Event: e, Error: reason, Class: dlq.ClassWorkflowClosed}
	return workflow.ExecuteActivity(ctx, activities.DeadLetterActivity, in).Get(ctx, nil)
}

// newRun is the ContinueAsNew that hands the late records of the new_run
// policy to a new run of the entity: a fresh state, the watermarks
// rewound to just before them, and the records as its inbox (see
// Carry.fresh).
func (r *runner[S]) newRun() error {
	marks := event.NewWatermarks()
	for k, v := range r.in.Watermarks {
		marks[k] = v
	}
	for _, e := range r.lateRecords {
		marks.Rewind(e.Position())
	}
	next := &Carry[S]{Watermarks: marks, Inbox: r.lateRecords}
	workflow.GetLogger(r.ctx).Info("starting a new run for records that arrived after the final status",
		"records", len(r.lateRecords), "status", r.c.Status)
	return workflow.NewContinueAsNewError(r.ctx, workflow.GetInfo(r.ctx).WorkflowType.Name, next)
}
