package ledger

import (
	"testing"

	"github.com/sagabridge/sagabridge/internal/replaytest"
)

// The recorded history of a ledger run that continued as new (the first
// run of e2e's hot key; it ends in ContinueAsNew with a carried input)
// replays against today's code: the carry bound, the applied query and the
// inbox must not change the commands of runs under way.
func TestRecordedHistoriesReplay(t *testing.T) {
	replaytest.Run(t, WorkflowType, Workflow(Options{MaxHistoryEvents: 200}))
}
