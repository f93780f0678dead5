package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
