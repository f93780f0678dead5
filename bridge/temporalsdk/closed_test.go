package temporalsdk

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// describing answers DescribeWorkflowExecution with a run in status.
type describing struct {
	client.Client
	status enumspb.WorkflowExecutionStatus
}

func (d describing) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: d.status},
	}, nil
}

// A workflow that refused a signal as closed, and whose current run is
// running by the time its memo is read (an operator reset it, or started
// it again), has no closed run to ask: ClosedWatermarks fails, so the call
// is made again and signals the running run. (It answered "no memo", as
// for a terminated run: every record was treated as new, and with the
// default dlq policy dead-lettered, though a run would take it.)
func TestClosedWatermarksOfARunningWorkflowIsAnError(t *testing.T) {
	_, err := Client{Client: describing{status: enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING}}.ClosedWatermarks(context.Background(), "order-1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "order-1")
	assert.Contains(t, err.Error(), "running")

	w, err := Client{Client: describing{status: enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED}}.ClosedWatermarks(context.Background(), "order-1")
	require.NoError(t, err)
	assert.Nil(t, w, "a terminated run without a memo says nothing of what it applied")
}
