// Package replaytest replays workflow histories recorded on a real Temporal
// server (testdata/*.json of the calling package, as `temporal workflow show
// --output json` writes them; e2e/histories_test.go records them) against
// today's workflow code. A change that would break runs already under way (a
// new activity before an old one, a removed timer) fails the replay: guard
// such a change with workflow.GetVersion.
//
// It is test support: only _test.go files may import it.
package replaytest

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Run replays every testdata/*.json as a run of workflowFn registered under
// name, one subtest per file. It fails when there is no history to replay.
func Run(t *testing.T, name string, workflowFn any) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in testdata/")
	logger := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflowFn, workflow.RegisterOptions{Name: name})
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(logger, f))
		})
	}
}
