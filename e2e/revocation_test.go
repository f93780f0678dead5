package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// A member joins while Temporal is down, the moment an autoscaler adds one
// because lag grows. The first member's claims are all waiting (the circuit
// is open, calls retry, partitions are paused); the cooperative rebalance
// revokes some of them, and each must let go within the rebalance timeout,
// or sarama ends the member's whole session. When Temporal is back, every
// record is applied once, in order.
func TestAMemberJoinsWhileTemporalIsDown(t *testing.T) {
	e := newEnv(t, 8)
	temporal := startProxy(t, e.temporal)
	ledgerOnly := map[string]any{
		"routes": []map[string]any{{
			"topic": e.ledgerTopic, "workflow_type": ledger.WorkflowType, "workflow_id": "ledger-{key}", "task_queue": e.taskQueue,
		}},
		"backpressure": map[string]any{"circuit": map[string]any{"failures": 3, "open_for": "1s"}},
	}
	first := e.produceLedger(ledger.Stream(e.id+"-a-", 200, 2000, 1.1, 81))
	var outA, outB syncBuffer
	a := e.startBridgeProcessWith(e.ledgerTopic, temporal.Addr(), ledgerOnly, &outA)
	require.Eventually(t, func() bool { return strings.Contains(outA.String(), "partition claimed") }, 60*time.Second, 20*time.Millisecond)

	temporal.Down(true)
	more := e.produceLedger(ledger.Stream(e.id+"-b-", 200, 2000, 1.1, 82))
	require.Eventually(t, func() bool { return strings.Contains(outA.String(), "circuit to Temporal opened") },
		60*time.Second, 20*time.Millisecond, "the circuit never opened; output:\n%s", outA.String())

	joined := time.Now()
	b := e.startBridgeProcessWith(e.ledgerTopic, temporal.Addr(), ledgerOnly, &outB)
	// B gets partitions only after A has let its revoked ones go.
	require.Eventually(t, func() bool { return strings.Contains(outB.String(), "partition claimed") },
		config.RebalanceTimeout+30*time.Second, 20*time.Millisecond, "B never got a partition; A:\n%s", outA.String())
	// Every revocation (the rebalance starts when B joins) ends within the
	// rebalance timeout: A's "partition released" lines say when.
	var released []time.Duration
	for _, line := range strings.Split(outA.String(), "\n") {
		var l struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "partition released" && l.Time.After(joined) {
			released = append(released, l.Time.Sub(joined))
		}
	}
	t.Logf("B claimed partitions %s after it started; A released %d partitions after %v",
		time.Since(joined).Round(time.Millisecond), len(released), released)
	require.NotEmpty(t, released, "A let no revoked partition go")
	for _, d := range released {
		assert.Less(t, d, config.RebalanceTimeout, "a revoked partition was let go after the rebalance timeout")
	}

	temporal.Down(false)
	at := map[string][]int64{}
	for k, v := range first {
		at[k] = append(at[k], v...)
	}
	for k, v := range more {
		at[k] = append(at[k], v...)
	}
	e.assertLedgers(at, 3*time.Minute)
	timedOut := regexp.MustCompile(`Rebalance.Timeout|rebalance timed out|did not exit within`)
	assert.False(t, timedOut.MatchString(outA.String()), "A timed a rebalance out:\n%s", outA.String())
	assert.False(t, timedOut.MatchString(outB.String()), "B timed a rebalance out:\n%s", outB.String())
	require.NoError(t, a.Stop(20*time.Second))
	require.NoError(t, b.Stop(20*time.Second))
}
