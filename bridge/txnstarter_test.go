package bridge

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/config"
)

// The next claim of a partition waits for a producer start the previous
// claim gave up on (its InitProducerId slow to be answered) and takes its
// producer, rather than start a second one that the late answer fences.
// (Each claim had a starter of its own: the late answer bumped the epoch,
// the new claim's first commit was fenced, and the partition released.)
func TestTheNextClaimWaitsForAProducerStartTheLastGaveUpOn(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders.dlq"))
	require.NoError(t, err)
	defer cluster.Close()
	var inits atomic.Int32
	cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if inits.Add(1) == 1 { // the first start's InitProducerId is slow to be answered
			cluster.SleepControl(func() { time.Sleep(2500 * time.Millisecond) })
		}
		return nil, nil, false
	})
	b := newTxnBridge(t, cluster, func(c *config.Config) { c.Kafka.ConnectTimeout = time.Second })

	// Claim 1: the start is given up on, and the session ends.
	ctx1, end1 := context.WithCancel(context.Background())
	go func() { time.Sleep(1500 * time.Millisecond); end1() }()
	_, err = b.startTxnCommitter(&simpleSession{fakeSession{ctx: ctx1}}, "orders", 0, 0, func() {})
	require.Error(t, err, "the first claim's producer cannot start")

	// Claim 2, a new session, starts the partition again, after claim 1's
	// InitProducerId was answered.
	c, err := b.startTxnCommitter(&simpleSession{fakeSession{ctx: context.Background()}}, "orders", 0, 0, func() { t.Error("the partition was released") })
	require.NoError(t, err)
	c.start(func(error) {}, func(error) {}, nil)
	defer c.close(time.Minute)
	c.advance(5)
	requireGroupOffset(t, b.cfg.Kafka.Brokers, 5, "offset 5 never committed: the next claim's producer was fenced")
	assert.Equal(t, int32(1), inits.Load(), "one InitProducerId: the next claim took the producer the first claim's start got")
}
