package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
)

// A group whose committed offset lies past the log end (a truncated log, or
// a topic deleted and created again while a mark was still being retried)
// starts at kafka.initial_offset, as sarama resets it, and commits where it
// really is: nothing is skipped once the log grows past the stale offset.
// (sarama's MarkOffset only moves an offset forward: every mark below the
// stale offset was dropped, the stop looked clean, and the next start
// resumed at the stale offset, skipping the records before it.)
func TestACommittedOffsetPastTheLogEndIsMovedBackNotSkippedTo(t *testing.T) {
	produce, committed, run := staleGroup(t, false)
	first := &fakeTemporal{}
	require.NoError(t, run(first, func() bool { return first.acceptedFrom(1, 0, 5) }))
	require.Equal(t, int64(5), committed(), "after delivering offsets 0..4 and a stop, the group's offset is past them, not the stale 8")

	produce(5, 10)
	second := &fakeTemporal{}
	require.NoError(t, run(second, func() bool { return second.acceptedFrom(1, 9, 10) }))
	require.True(t, first.acceptedFrom(1, 5, 8) || second.acceptedFrom(1, 5, 8), "offsets 5, 6 and 7 were never delivered")
}

// staleGroup is a cluster whose orders/0 holds records 0..4 and whose
// group g has committed offset 8, past the log end; emptied deletes the
// records first (the log start is then 5 as well). It returns how to
// produce more, read g's committed offset, and run a bridge of g until a
// condition holds, then stop it.
func staleGroup(t *testing.T, emptied bool) (produce func(from, to int64), committed func() int64, run func(tc *fakeTemporal, until func() bool) error) {
	t.Helper()
	cluster, produce := ordersCluster(t)
	committed = func() int64 {
		c, err := sarama.NewClient(cluster.ListenAddrs(), sarama.NewConfig())
		require.NoError(t, err)
		defer c.Close()
		cfgK := config.Kafka{Group: "g", IsolationLevel: config.ReadCommitted}
		got, _, err := fetchCommitted(c, cfgK, map[string][]int32{"orders": {0}})
		require.NoError(t, err)
		return got["orders"][0]
	}
	// The group's stale offset: 8, beyond the log end (5).
	produce(0, 5)
	if emptied {
		admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
		require.NoError(t, err)
		require.NoError(t, admin.DeleteRecords("orders", map[int32]int64{0: 5}))
		require.NoError(t, admin.Close())
	}
	{
		sc := sarama.NewConfig()
		sc.Version = sarama.V2_8_0_0
		c, err := sarama.NewClient(cluster.ListenAddrs(), sc)
		require.NoError(t, err)
		coord, err := c.Coordinator("g")
		require.NoError(t, err)
		req := sarama.NewOffsetCommitRequest(sc, "g")
		req.AddBlockWithLeaderEpoch("orders", 0, 8, -1, sarama.ReceiveTime, "")
		resp, err := coord.CommitOffset(req)
		require.NoError(t, err)
		require.ErrorIs(t, resp.Errors["orders"][0], sarama.ErrNoError)
		require.NoError(t, c.Close())
	}
	require.Equal(t, int64(8), committed())

	cfg := ordersRunConfig(cluster.ListenAddrs())
	run = func(tc *fakeTemporal, until func() bool) error {
		b, err := New(cfg, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		require.Eventually(t, until, time.Minute, 20*time.Millisecond)
		cancel() // the stop commits what was delivered

		return <-done
	}
	return produce, committed, run
}

// A stale offset past the end of an emptied log (nothing to read) is
// replaced by the log start as soon as the partition is claimed, so the
// records produced while the bridge is down are not skipped. (The offset
// was moved back only at the first record read: a claim that read nothing
// left it, and the next start skipped what was produced below it.)
func TestAStaleOffsetPastAnEmptiedLogIsReplacedWithoutARecordRead(t *testing.T) {
	produce, committed, run := staleGroup(t, true)
	require.NoError(t, run(&fakeTemporal{}, func() bool { return committed() == 5 }), "the log start replaced the stale offset")
	produce(5, 10)
	second := &fakeTemporal{}
	require.NoError(t, run(second, func() bool { return second.acceptedFrom(1, 9, 10) }))
	require.True(t, second.acceptedFrom(1, 5, 8), "offsets 5, 6 and 7 were never delivered")
}

// ordersCluster is a kfake cluster with one partition of orders and its
// DLQ topic, and a way to produce records from..to-1 to orders/0 (each at
// its offset, keyed k<offset>, type E).
func ordersCluster(t *testing.T) (cluster *kfake.Cluster, produce func(from, to int64)) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	produce = func(from, to int64) {
		pc := sarama.NewConfig()
		pc.Producer.Return.Successes = true
		p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
		require.NoError(t, err)
		defer p.Close()
		for o := from; o < to; o++ {
			_, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: "orders",
				Key: sarama.StringEncoder(fmt.Sprintf("k%d", o)), Value: sarama.StringEncoder(`{}`),
				Headers: []sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte("E")}}})
			require.NoError(t, err)
			require.Equal(t, o, off)
		}
	}
	return cluster, produce
}

// ordersRunConfig is a bridge of group g on brokers reading orders, with
// fast retries, a short drain and no backlog polling.
func ordersRunConfig(brokers []string) config.Config {
	return config.Config{
		Kafka:        config.Kafka{Brokers: brokers, Group: "g"},
		Dispatch:     config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 100 * time.Millisecond},
		Backpressure: config.Backpressure{Backlog: config.Backlog{Disabled: true}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults()
}
