package temporalsdk

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestPendingTaskLagCountsFromTheFirstSchedule(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ts := func(ago time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-ago)) }
	assert.Zero(t, pendingTaskLag(nil, now), "no pending task")
	assert.Equal(t, 3*time.Second, pendingTaskLag(&workflowpb.PendingWorkflowTaskInfo{
		State: enumspb.PENDING_WORKFLOW_TASK_STATE_SCHEDULED, ScheduledTime: ts(time.Second), OriginalScheduledTime: ts(3 * time.Second),
	}, now), "a sticky task scheduled again counts from its first schedule")
	assert.Equal(t, time.Second, pendingTaskLag(&workflowpb.PendingWorkflowTaskInfo{
		State: enumspb.PENDING_WORKFLOW_TASK_STATE_SCHEDULED, ScheduledTime: ts(time.Second),
	}, now))
	assert.Equal(t, 500*time.Millisecond, pendingTaskLag(&workflowpb.PendingWorkflowTaskInfo{
		State: enumspb.PENDING_WORKFLOW_TASK_STATE_STARTED, ScheduledTime: ts(2 * time.Second),
		OriginalScheduledTime: ts(2 * time.Second), StartedTime: ts(1500 * time.Millisecond),
	}, now), "a started task waited until it started")
}
