package trip

import (
	"testing"

	"github.com/sagabridge/sagabridge/internal/replaytest"
)

// TestReplayRecordedHistories replays the histories in testdata/, recorded on
// a real server, against today's TripSaga: a change that would break sagas
// already running fails here (see package replaytest).
func TestReplayRecordedHistories(t *testing.T) {
	replaytest.Run(t, WorkflowType, TripSaga)
}
