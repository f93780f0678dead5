package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/internal/ledger"
)

// recordEnv names the directory recordHistory writes workflow histories to.
// The replay tests of the examples run over the histories checked in under
// their testdata/; refresh them with
//
//	SAGABRIDGE_RECORD_HISTORIES=$PWD/examples go test -run 'TestSagasReachTheirExpectedState|TestFailedActivity' ./e2e/
//
// which writes <dir>/<example>/testdata/<name>.json.
const recordEnv = "SAGABRIDGE_RECORD_HISTORIES"

// recordHistory exports one run's history with the real Temporal CLI
// (`temporal workflow show --output json`, the format the SDK's replayer
// reads) when recordEnv is set; otherwise it does nothing.
func recordHistory(t *testing.T, example, name, workflowID, runID string) {
	t.Helper()
	dir := os.Getenv(recordEnv)
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"workflow", "show", "--address", stack.Temporal.Address, "--workflow-id", workflowID, "--output", "json"}
	if runID != "" {
		args = append(args, "--run-id", runID)
	}
	out, err := exec.CommandContext(ctx, stack.Temporal.Bin, args...).Output()
	require.NoError(t, err, "temporal workflow show %s", workflowID)
	path := filepath.Join(dir, example, "testdata", name+".json")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, out, 0o644))
	t.Logf("recorded the history of %s to %s", workflowID, path)
}

// replayRuns replays, against workflowFn registered as the ledger type,
// the history of every run of workflowID the server has, fetched live, and
// returns their run IDs, newest first.
func replayRuns(t *testing.T, c client.Client, workflowID string, workflowFn any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = %q", workflowID),
	})
	require.NoError(t, err)
	logger := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var ids []string
	for _, ex := range resp.GetExecutions() {
		runID := ex.GetExecution().GetRunId()
		ids = append(ids, runID)
		var events []*historypb.HistoryEvent
		it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			events = append(events, ev)
		}
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflowWithOptions(workflowFn, workflow.RegisterOptions{Name: ledger.WorkflowType})
		require.NoError(t, r.ReplayWorkflowHistory(logger, &historypb.History{Events: events}), "replay run %s of %s", runID, workflowID)
	}
	return ids
}
