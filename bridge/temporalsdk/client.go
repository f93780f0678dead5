// Package temporalsdk implements the bridge's Temporal seam
// (bridge.Temporal) with the Temporal Go SDK: SignalWithStart with the
// bridge's ID policies, the memo of closed workflows, and task-queue
// backlogs. It translates the SDK's answers and nothing more; what an error
// means for a record (retry, dead-letter, pause) is the bridge's policy.
//
// It may import the bridge (for the seam's types); the bridge must not
// import it.
package temporalsdk

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/event"
)

// Client implements bridge.Temporal with the Go SDK. It does not own the
// SDK client; the caller closes it. Safe for concurrent use.
type Client struct {
	Client client.Client
	// Namespace is the client's namespace, used to describe task queues.
	// Optional, default "default".
	Namespace string
	// DataConverter decodes the memo of closed workflows; it must be the
	// client's (connect.DataConverter). Optional, default Temporal's.
	DataConverter converter.DataConverter
}

// SignalWithStart signals the workflow, starting it if none is open, with
// the route's start options (target.Start) when it starts it.
//
// Policies, chosen deliberately:
//   - WorkflowIDConflictPolicy USE_EXISTING: a running workflow is signalled,
//     never terminated.
//   - WorkflowIDReusePolicy REJECT_DUPLICATE: a closed workflow is never
//     started again by a record. A redelivered record for a finished saga
//     must not start a new run that would see its last events without its
//     first ones; the bridge asks the closed run's memo instead.
//
// With target.NewRun (the "new_run" closed-workflow policy) the reuse policy
// is ALLOW_DUPLICATE, so a closed ID starts a new run, with the closed
// run's watermarks as its input (event.StartInput) when it recorded them.
func (t Client) SignalWithStart(ctx context.Context, target bridge.Target, batch event.Batch) error {
	reuse := enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	if target.NewRun {
		reuse = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	}
	var args []any
	if target.NewRun && target.StartWatermarks != nil {
		args = append(args, event.StartInput{Watermarks: target.StartWatermarks})
	}
	opts := client.StartWorkflowOptions{
		ID:                       target.WorkflowID,
		TaskQueue:                target.TaskQueue,
		WorkflowIDReusePolicy:    reuse,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowRunTimeout:       target.Start.RunTimeout,
		WorkflowExecutionTimeout: target.Start.ExecutionTimeout,
		Memo:                     target.Start.Memo,
	}
	if len(target.Start.SearchAttributes) > 0 {
		sa, err := typedSearchAttributes(target.Start.SearchAttributes)
		if err != nil {
			return fmt.Errorf("search attributes of %s: %w", target.WorkflowID, err)
		}
		opts.TypedSearchAttributes = sa
	}
	_, err := t.Client.SignalWithStartWorkflow(ctx, target.WorkflowID, target.Signal, batch, opts, target.WorkflowType, args...)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("%w: %s", bridge.ErrWorkflowClosed, target.WorkflowID)
	}
	return err
}

// ClosedWatermarks reads the closed workflow's memo. A workflow whose
// current run is running again (reset, or started since it refused the
// signal) has no closed run to ask: that is an error, and the call is made
// again.
func (t Client) ClosedWatermarks(ctx context.Context, workflowID string) (event.Watermarks, error) {
	desc, err := t.Client.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", workflowID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, fmt.Errorf("workflow %s is running again (reset or started since it refused the signal as closed): signalling it again", workflowID)
	}
	p, ok := info.GetMemo().GetFields()[event.MemoKey]
	if !ok {
		return nil, nil
	}
	w := event.NewWatermarks()
	dc := t.DataConverter
	if dc == nil {
		dc = converter.GetDefaultDataConverter()
	}
	if err := dc.FromPayload(p, &w); err != nil {
		return nil, fmt.Errorf("decode memo %s of %s: %w", event.MemoKey, workflowID, err)
	}
	return w, nil
}

// WorkflowTaskLag describes the workflow's pending workflow task: how long
// it has waited since it was first scheduled (a sticky task that timed out
// and was scheduled again counts from the first time), or how long it
// waited before it started; zero when none is pending.
func (t Client) WorkflowTaskLag(ctx context.Context, workflowID string) (time.Duration, error) {
	desc, err := t.Client.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", workflowID, err)
	}
	return pendingTaskLag(desc.GetPendingWorkflowTask(), time.Now()), nil
}

// pendingTaskLag is how long task has waited to start at now, or waited
// before it started.
func pendingTaskLag(task *workflowpb.PendingWorkflowTaskInfo, now time.Time) time.Duration {
	if task == nil {
		return 0
	}
	scheduled := task.GetOriginalScheduledTime()
	if scheduled == nil {
		scheduled = task.GetScheduledTime()
	}
	if scheduled == nil {
		return 0
	}
	if started := task.GetStartedTime(); started != nil && task.GetState() == enumspb.PENDING_WORKFLOW_TASK_STATE_STARTED {
		return max(0, started.AsTime().Sub(scheduled.AsTime()))
	}
	return max(0, now.Sub(scheduled.AsTime()))
}

// AppliedWatermarks queries the workflow's event.AppliedQuery, rejected
// (ErrWorkflowClosed) when the workflow is no longer open: a closed run's
// answer would never cover what it did not apply.
func (t Client) AppliedWatermarks(ctx context.Context, workflowID string) (event.Watermarks, error) {
	resp, err := t.Client.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID: workflowID, QueryType: event.AppliedQuery,
		QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil {
		return nil, fmt.Errorf("query %s of %s: %w", event.AppliedQuery, workflowID, err)
	}
	if resp.QueryRejected != nil {
		return nil, fmt.Errorf("%w: %s (%s)", bridge.ErrWorkflowClosed, workflowID, resp.QueryRejected.GetStatus())
	}
	var w event.Watermarks
	if err := resp.QueryResult.Get(&w); err != nil {
		return nil, fmt.Errorf("decode %s of %s: %w", event.AppliedQuery, workflowID, err)
	}
	return w, nil
}

// CheckAccess describes the namespace.
func (t Client) CheckAccess(ctx context.Context) error {
	_, err := t.Client.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: t.namespace()})
	if err != nil {
		return fmt.Errorf("describe namespace %s: %w", t.namespace(), err)
	}
	return nil
}

// namespace is Namespace or "default".
func (t Client) namespace() string {
	if t.Namespace == "" {
		return "default"
	}
	return t.Namespace
}

// TaskQueueBacklog describes the task queue's workflow tasks with ReportStats.
func (t Client) TaskQueueBacklog(ctx context.Context, taskQueue string) (bridge.Backlog, error) {
	resp, err := t.Client.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
		Namespace:     t.namespace(),
		TaskQueue:     &taskqueuepb.TaskQueue{Name: taskQueue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW,
		ReportStats:   true,
	})
	if err != nil {
		return bridge.Backlog{}, fmt.Errorf("describe task queue %s: %w", taskQueue, err)
	}
	st := resp.GetStats()
	return bridge.Backlog{Tasks: st.GetApproximateBacklogCount(), Age: st.GetApproximateBacklogAge().AsDuration()}, nil
}

var _ bridge.WorkflowTaskLagReader = Client{}
