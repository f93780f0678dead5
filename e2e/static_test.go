package e2e

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/internal/ledger"
)

// assignedGenerations lists the generations of the "partitions assigned"
// lines in a bridge's JSON log, in order.
func assignedGenerations(log string) []int {
	var gens []int
	for _, line := range strings.Split(log, "\n") {
		var l struct {
			Msg        string `json:"msg"`
			Generation int    `json:"generation"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "partitions assigned" {
			gens = append(gens, l.Generation)
		}
	}
	return gens
}

// A static member (kafka.instance_id, KIP-345) killed and started again
// within the session timeout gets its partitions back in the same
// generation: no rebalance, as a rolling deploy wants. Every record is
// applied once, in order, across the restart.
func TestAStaticMemberRestartedWithinTheSessionTimeoutKeepsItsPartitions(t *testing.T) {
	e := newEnv(t, 4)
	static := map[string]any{
		"kafka":  map[string]any{"brokers": stack.Kafka.Brokers, "group": e.ledgerTopic, "instance_id": "bridge-0"},
		"routes": e.ledgerRoute(),
	}
	at := e.produceLedger(ledger.Stream(e.id+"-s1-", 50, 500, 1.1, 91))
	var out syncBuffer
	p := e.startBridgeProcessWith(e.ledgerTopic, e.temporal, static, &out)
	e.assertLedgers(at, time.Minute)
	gens := assignedGenerations(out.String())
	require.Len(t, gens, 1)
	p.Kill()
	killed := time.Now()

	p = e.startBridgeProcessWith(e.ledgerTopic, e.temporal, static, &out)
	require.Eventually(t, func() bool { return len(assignedGenerations(out.String())) == 2 }, 30*time.Second, 20*time.Millisecond,
		"the restarted member never got partitions")
	back := time.Since(killed)
	assert.Equal(t, gens[0], assignedGenerations(out.String())[1], "the restart rebalanced the group")
	assert.Less(t, back, 10*time.Second, "partitions came back within the session timeout")
	maps.Copy(at, e.produceLedger(ledger.Stream(e.id+"-s2-", 50, 500, 1.1, 92)))
	e.assertLedgers(at, time.Minute)
	require.NoError(t, p.Stop(20*time.Second))
	t.Logf("the static member had its partitions back %s after the kill, in generation %d", back.Round(10*time.Millisecond), gens[0])
}
