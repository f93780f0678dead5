package e2e

import (
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// Stranded partitions are visible: each member exports the committed offset
// and the lag of every partition of every routed topic, including those
// another member consumes (or none does), and which ones it consumes itself.
func TestEveryMemberReportsEveryPartitionsCommittedOffset(t *testing.T) {
	e := newEnv(t, 4)
	ledgerOnly := func(c *config.Config) { c.Routes = c.Routes[1:] }
	a, _ := e.runBridgeWith(e.ledgerTopic, ledgerOnly)
	b, _ := e.runBridgeWith(e.ledgerTopic, ledgerOnly)
	srvA := httptest.NewServer(a.Handler())
	defer srvA.Close()
	srvB := httptest.NewServer(b.Handler())
	defer srvB.Close()

	recs := ledger.Stream(e.id+"-", 40, 400, 1.1, 121)
	at := e.produceLedger(recs)
	e.assertLedgers(at, time.Minute)
	partitionOf := map[string]string{}
	for _, m := range readAll(t, e.ledgerTopic, len(recs), 30*time.Second) {
		partitionOf[string(m.Key)] = strconv.Itoa(int(m.Partition))
	}
	perPartition := map[string]float64{}
	for key, offs := range at {
		p := partitionOf[key]
		perPartition[p] = max(perPartition[p], float64(slices.Max(offs)+1))
	}

	require.Eventually(t, func() bool {
		fams := scrape(srvA.URL)
		for p, want := range perPartition {
			got, ok := fams.Sum("sagabridge_committed_offset", map[string]string{"topic": e.ledgerTopic, "partition": p})
			if !ok || got != want {
				return false
			}
		}
		lag, _ := fams.Sum("sagabridge_group_lag", map[string]string{"topic": e.ledgerTopic})
		return lag == 0
	}, 30*time.Second, 100*time.Millisecond, "member A does not report every partition's committed offset")
	mine := func(url string) float64 {
		n, _ := scrape(url).Sum("sagabridge_partition_claimed", map[string]string{"topic": e.ledgerTopic})
		return n
	}
	var claimedA, claimedB float64
	require.Eventually(t, func() bool {
		claimedA, claimedB = mine(srvA.URL), mine(srvB.URL)
		return claimedA+claimedB == 4 && claimedA > 0 && claimedB > 0
	}, 30*time.Second, 100*time.Millisecond, "the members never shared the partitions (A %.0f, B %.0f)", claimedA, claimedB)
	t.Logf("A consumes %.0f partitions, B %.0f; each reports all %d", claimedA, claimedB, len(perPartition))
}
