package bridge

import (
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The check of the final commit waits a moment for offsets a transaction
// is still making stable (its markers written just after the commit
// returned), instead of taking UNSTABLE_OFFSET_COMMIT for a failed commit.
// (One such answer made a clean stop exit 1: "it cannot be checked".)
func TestTheFinalCommitCheckWaitsForATransactionsMarkers(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	b := newTxnBridge(t, cluster)
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient(cluster.ListenAddrs(), sc)
	require.NoError(t, err)
	defer client.Close()
	coord, err := client.Coordinator("g")
	require.NoError(t, err)
	req := sarama.NewOffsetCommitRequest(sc, "g")
	req.AddBlockWithLeaderEpoch("orders", 0, 5, -1, sarama.ReceiveTime, "")
	_, err = coord.CommitOffset(req)
	require.NoError(t, err)
	b.marked.mark("orders", 0, 5)

	cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetFetch}, Group: "g", Err: kerr.UnstableOffsetCommit, Count: 2})
	require.NoError(t, b.checkFinalCommit(client))
}
