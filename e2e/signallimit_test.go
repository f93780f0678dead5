package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// A workflow run takes only so many signals (the server's
// history.maximumSignalsPerExecution, 10,000 by default) and answers the
// next with InvalidArgument, the code of a bad request, though nothing is
// wrong with the record. Here a server allows two signals per run (with a
// limit of one it refused even the call that starts a run) and suggests
// continuing as new after three history events, so calls keep finding
// their workflow's run full: the bridge retries each until the ledger has
// continued as new, and every record is applied once, in order, with
// nothing dead-lettered. (The bridge dead-lettered such records as
// rejected and moved on: lost to the workflow.)
func TestARunAtItsSignalLimitTakesItsRecordsOnceItContinuesAsNew(t *testing.T) {
	logFile, err := os.Create(filepath.Join(t.TempDir(), "temporal.log"))
	require.NoError(t, err)
	temporal, err := devstack.StartTemporal(context.Background(), devstack.TemporalOptions{Output: logFile,
		DynamicConfig: []string{devstack.BoundedLongPolls, "history.maximumSignalsPerExecution=2", "limit.historyCount.suggestContinueAsNew=3"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = temporal.Close() })
	e := newEnvOn(t, 1, temporal.Address)

	var out syncBuffer
	p := e.startBridgeProcessWith(e.ledgerTopic, temporal.Address, nil, &out)
	// One record at a time, so that calls follow each other faster than a
	// run continues as new.
	at := map[string][]int64{}
	for _, r := range ledger.Stream(e.id+"-", 2, 60, 1.1, 91) {
		for k, offsets := range e.produceLedger([]ledger.Record{r}) {
			at[k] = append(at[k], offsets...)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.assertLedgers(at, 2*time.Minute)
	require.NoError(t, p.Stop(20*time.Second))
	logs := out.String()
	assert.Contains(t, logs, "the workflow's run has taken all the signals one run may", "no call found its run full; the test proved nothing")
	assert.Contains(t, logs, `"dead_lettered":0`, "records were dead-lettered:\n%s", lastLines(logs, 20))
}
