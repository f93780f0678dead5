package e2e

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// produceInBackground sends recs in slices over about spread, so the
// bridge works on a stream rather than a backlog.
func (e *env) produceInBackground(recs []ledger.Record, spread time.Duration) (wait func() map[string][]int64) {
	var (
		wg sync.WaitGroup
		at = map[string][]int64{}
	)
	const slices = 20
	wg.Go(func() {
		step := (len(recs) + slices - 1) / slices
		for start := 0; start < len(recs); start += step {
			part, err := ledger.Produce(e.producer, e.ledgerTopic, recs[start:min(start+step, len(recs))])
			if err != nil {
				e.t.Errorf("produce: %v", err)
				return
			}
			for k, offs := range part {
				at[k] = append(at[k], offs...)
			}
			time.Sleep(spread / slices)
		}
	})
	return func() map[string][]int64 { wg.Wait(); return at }
}

func TestTwentyThousandEventsSurviveThreeKills(t *testing.T) {
	e := newEnv(t, 8)
	recs := ledger.Stream(e.id+"-", 200, 20_000, 1.1, 51)
	wait := e.produceInBackground(recs, 6*time.Second)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	var out syncBuffer
	for kill := range 3 {
		assigned := strings.Count(out.String(), "partitions assigned")
		p := e.startBridgeProcess(e.topic, &out)
		require.Eventually(t, func() bool { return strings.Count(out.String(), "partitions assigned") > assigned },
			60*time.Second, 20*time.Millisecond, "bridge %d never got partitions", kill+1)
		time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
		p.Kill()
		t.Logf("kill %d done", kill+1)
	}
	p := e.startBridgeProcess(e.topic, &out)
	at := wait()
	e.assertLedgers(at, 3*time.Minute)
	require.NoError(t, p.Stop(20*time.Second))
}

func TestMembersJoinAndLeaveMidStream(t *testing.T) {
	e := newEnv(t, 8)
	recs := ledger.Stream(e.id+"-", 300, 20_000, 1.1, 61)
	wait := e.produceInBackground(recs, 30*time.Second)
	working := func(b *bridge.Bridge) func() bool { return func() bool { return b.Stats().Delivered > 0 } }
	const rebalance = 45 * time.Second // a cooperative handover takes two joins, paced by heartbeats

	// Every member consumes the ledger topic only: with the (empty) order
	// topic too, the balancer could hand a member only empty partitions,
	// and "delivered something" would not show that it took part.
	ledgerOnly := func(c *config.Config) {
		c.Routes = slices.DeleteFunc(c.Routes, func(r config.Route) bool { return r.Topic != e.ledgerTopic })
	}
	a, stopA := e.runBridgeWith(e.topic, ledgerOnly)
	b, stopB := e.runBridgeWith(e.topic, ledgerOnly)
	require.Eventually(t, working(a), rebalance, 50*time.Millisecond, "a never delivered")
	require.Eventually(t, working(b), rebalance, 50*time.Millisecond, "b never got partitions")
	c, stopC := e.runBridgeWith(e.topic, ledgerOnly) // a third member joins mid-stream
	require.Eventually(t, working(c), rebalance, 50*time.Millisecond, "c never got partitions")
	stopB() // one leaves
	stopA() // and another: c takes every partition
	at := wait()
	e.assertLedgers(at, 3*time.Minute)
	stopC()
	t.Logf("delivered a=%d b=%d c=%d of %d", a.Stats().Delivered, b.Stats().Delivered, c.Stats().Delivered, len(recs))
	assert.GreaterOrEqual(t, a.Stats().Delivered+b.Stats().Delivered+c.Stats().Delivered, uint64(len(recs)))
}

func TestHotKeyOfTenThousandEventsCompletesAcrossRuns(t *testing.T) {
	e := newEnv(t, 4)
	recs := ledger.Stream(e.id+"-hot-", 1, 10_000, 1.1, 71)
	at := e.produceLedger(recs)
	// Small batches make many signals, so the run's history crosses the limit.
	b, stop := e.runBridgeWith(e.topic, func(c *config.Config) { c.Batch.MaxRecords = 50 })
	defer stop()
	e.assertLedgers(at, 3*time.Minute)
	st, err := e.ledgerResult(t.Context(), e.id+"-hot-0")
	require.NoError(t, err)
	assert.Equal(t, 10_000, st.Count)
	assert.Greater(t, st.Runs, 1, "the hot key continued as new at %d history events", ledgerMaxHistory)
	st2 := b.Stats()
	t.Logf("10,000 events in %d calls (%.0f per call), %d runs", st2.Calls, float64(st2.Delivered)/float64(st2.Calls), st.Runs)
	assert.Less(t, st2.Calls, uint64(1000), "events were coalesced")
}
