package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/kafkatxn/txntest"
)

// A stop whose final commit does not reach Kafka ends Run with an error
// naming the partitions and what the restart will read again, so the
// process exits non-zero: sarama reports a failed commit only on the
// group's error channel, which the bridge logs as a warning. Real group,
// real broker that refuses every OffsetCommit. (Run returned nil and the
// bridge logged "left the group": exit 0 with nothing committed.)
//
// Also when leaving the group fails too (the broker gone at shutdown, or
// sarama's Close reporting the commit's failure as its own): the check
// runs all the same. (Run returned only "leave consumer group", naming no
// partition; under -race it did so now and then for the commit alone.)
func TestAStopWhoseFinalCommitFailsIsAnError(t *testing.T) {
	for name, refused := range map[string][]kmsg.Key{
		"commit":                  {kmsg.OffsetCommit},
		"commit and leaving":      {kmsg.OffsetCommit, kmsg.LeaveGroup},
		"every group request too": {kmsg.OffsetCommit, kmsg.LeaveGroup, kmsg.OffsetFetch, kmsg.FindCoordinator},
	} {
		t.Run(name, func(t *testing.T) { stopWithFailingCommit(t, refused) })
	}
}

func stopWithFailingCommit(t *testing.T, refused []kmsg.Key) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	var refusing atomic.Bool
	for _, key := range refused {
		if key != kmsg.OffsetCommit {
			continue
		}
		refusing.Store(true)
	}
	var stopping atomic.Bool // the other requests are refused once the stop begins
	for _, key := range refused {
		cluster.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			if key == kmsg.OffsetCommit && refusing.Load() || key != kmsg.OffsetCommit && stopping.Load() {
				return nil, fmt.Errorf("refused"), true // the connection is closed, as a broker going away does
			}
			return nil, nil, false
		})
	}
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	for i := range 5 {
		_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "orders", Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder(`{}`),
			Headers: []sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte("E")}}})
		require.NoError(t, err)
	}
	require.NoError(t, p.Close())

	cfg := config.Config{
		Kafka:        config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g", ConnectTimeout: 5 * time.Second},
		Dispatch:     config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 100 * time.Millisecond},
		Backpressure: config.Backpressure{Backlog: config.Backlog{Disabled: true}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults()
	tc := &fakeTemporal{}
	b, err := New(cfg, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	require.Eventually(t, func() bool { return tc.acceptedFrom(1, 0, 5) }, time.Minute, 10*time.Millisecond, "the records were never delivered")
	stopping.Store(true)
	cancel()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the bridge did not stop")
	}
	require.Error(t, err, "the final commit failed")
	assert.ErrorIs(t, err, ErrFinalCommit)
	if len(refused) < 4 { // with every group request refused, no partition can be named
		assert.Contains(t, err.Error(), "orders/0")
	}
}

// A partition the coordinator answers with an error (UNSTABLE_OFFSET_COMMIT
// while a transaction is open) shows no committed offset, and the other
// partitions' offsets are still read for the lag metrics. (With the read
// shared with the final-commit check, one partition's error failed the
// whole read, and every partition's metrics went stale.)
func TestOnePartitionsOffsetErrorLeavesTheOthersRead(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	cluster.ControlKey(int16(kmsg.OffsetFetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		resp := req.(*kmsg.OffsetFetchRequest).ResponseKind().(*kmsg.OffsetFetchResponse)
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = "orders"
		for p := range int32(2) {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset = p, 0
			if p == 1 {
				rp.Offset, rp.ErrorCode = -1, kerr.UnstableOffsetCommit.Code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	b, client := groupOffsetsBridge(t, cluster)
	b.group.set([]partitionOffsets{{topic: "orders", partition: 1, committed: 2}})
	parts, err := b.readGroupOffsets(client)
	require.NoError(t, err, "a pending transactional commit is routine, not a failure to report")
	require.Len(t, parts, 2)
	assert.Equal(t, int64(0), parts[0].committed)
	assert.Equal(t, int64(2), parts[1].committed, "as last read, not none (which made its lag the whole log)")
}

// One partition whose offsets cannot be listed (its leader out) or whose
// committed offset cannot be read (UNSTABLE_OFFSET_COMMIT while a
// transactional commit is pending) keeps its last values, and the other
// partitions' are read: the lag metrics neither freeze for every partition
// nor jump to the whole log for one. (One partition's error failed the
// whole read and every partition's metrics froze.)
func TestOnePartitionsListOffsetsErrorLeavesTheOthersRead(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	cluster.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.Offset, sp.Timestamp = rp.Partition, 0, -1
				if rp.Partition == 1 {
					sp.Offset, sp.ErrorCode = -1, kerr.UnknownServerError.Code
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	b, client := groupOffsetsBridge(t, cluster)
	b.group.set([]partitionOffsets{{topic: "orders", partition: 1, committed: 2, start: 0, end: 9}})
	parts, err := b.readGroupOffsets(client)
	require.Error(t, err, "the failure is reported")
	require.Len(t, parts, 2)
	assert.Equal(t, partitionOffsets{topic: "orders", partition: 0, committed: -1, start: 0, end: 0}, parts[0], "read")
	assert.Equal(t, partitionOffsets{topic: "orders", partition: 1, committed: 2, start: 0, end: 9}, parts[1], "the last values kept")
}

// A partition written in transactions ends in a commit marker (and may
// hold aborted records) that no read_committed consumer delivers: at rest
// its group lag is 0, not 1 (or the aborted records), so "commits stalled"
// does not fire on an idle, healthy partition. The lag is checked against
// what is left to deliver once the committed offset has not moved between
// two reads. (The lag stayed 1 for ever.)
func TestTheGroupLagOfATransactionalTopicAtRestIsZero(t *testing.T) {
	cluster, prod, txn := transactionalOrders(t)
	txn(true, "a", "b", "c") // 0-2, marker 3
	txn(false, "x", "y")     // 4-5 aborted, marker 6
	b, client := groupOffsetsBridge(t, cluster)
	commitGroupOffset(t, cluster, "g", "orders", 0, 3) // the group read a, b and c

	for read := 1; read <= 2; read++ {
		parts, err := b.readGroupOffsets(client)
		require.NoError(t, err)
		b.group.set(parts)
		require.Len(t, parts, 1)
		if read == 2 {
			assert.Zero(t, parts[0].lag(), "nothing is left to deliver: a marker, two aborted records and a marker")
		}
	}
	txn(true, "d") // 7, marker 8: one record to deliver
	require.NoError(t, prod.Close())
	parts, err := b.readGroupOffsets(client)
	require.NoError(t, err)
	assert.Equal(t, int64(6), parts[0].lag(), "a record to deliver: the lag by offsets")
}

// A claimed partition of a transactional topic read to its end shows a
// consumer lag of 0, not 1: what is left past its resume offset is a
// commit marker (and aborted records) that no read_committed consumer
// delivers. (sagabridge_consumer_lag stayed 1 at rest for ever.)
func TestTheConsumerLagOfATransactionalTopicReadToItsEndIsZero(t *testing.T) {
	cluster, prod, txn := transactionalOrders(t)
	txn(true, "a", "b", "c") // 0-2, marker 3
	txn(false, "x")          // 4 aborted, marker 5
	b, client := groupOffsetsBridge(t, cluster)
	b.client = client
	b.newest = func(topic string, partition int32) (int64, error) {
		return client.GetOffset(topic, partition, sarama.OffsetNewest)
	}
	f := &flow{topic: "orders", partition: 0, tracker: newTracker(3, func(int64) {}), hwm: func() int64 { return 0 }, pressure: b.pressure}
	b.pressure.register(f)
	t.Cleanup(func() { b.pressure.unregister(f) })

	b.readLogEnds()
	lag, ok := f.lag()
	require.True(t, ok)
	assert.Zero(t, lag, "a marker, an aborted record and a marker: nothing to deliver")

	txn(true, "d") // 6, marker 7: one record to deliver
	require.NoError(t, prod.Close())
	b.readLogEnds()
	lag, _ = f.lag()
	assert.Equal(t, int64(5), lag, "a record to deliver: the lag by offsets")
}

// transactionalOrders starts a cluster with the topic orders and a
// transactional producer to it; txn writes values in one transaction and
// commits or aborts it.
func transactionalOrders(t *testing.T) (cluster *kfake.Cluster, prod sarama.SyncProducer, txn func(commit bool, values ...string)) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	prod = txntest.RealProducer(t, cluster.ListenAddrs(), "app")
	return cluster, prod, func(commit bool, values ...string) {
		require.NoError(t, prod.BeginTxn())
		for _, v := range values {
			_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder(v)})
			require.NoError(t, err)
		}
		if commit {
			require.NoError(t, prod.CommitTxn())
		} else {
			require.NoError(t, prod.AbortTxn())
		}
	}
}

// commitGroupOffset commits offset for group on topic/partition from
// outside the group, as an admin reset does.
func commitGroupOffset(t *testing.T, cluster *kfake.Cluster, group, topic string, partition int32, offset int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.MaxVersions(kversion.V3_6_0()))
	require.NoError(t, err)
	defer cl.Close()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8 // by topic name
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = partition, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	require.NoError(t, err)
	require.Zero(t, resp.Topics[0].Partitions[0].ErrorCode)
}

// Records held back by a transaction still open are records to deliver: a
// read_committed consumer stops at the open transaction, so the group lag
// stays what the offsets say. (It read 0: the walk stopped there and took
// that for the end.)
func TestTheGroupLagBehindAnOpenTransactionIsNotZero(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	txp := txntest.RealProducer(t, cluster.ListenAddrs(), "app")
	require.NoError(t, txp.BeginTxn())
	_, _, err = txp.SendMessage(&sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("open")}) // 0, left open
	require.NoError(t, err)
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	plain, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	for range 100 {
		_, _, err := plain.SendMessage(&sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("v")})
		require.NoError(t, err)
	}
	require.NoError(t, plain.Close())
	commitGroupOffset(t, cluster, "g", "orders", 0, 0)
	b, client := groupOffsetsBridge(t, cluster)
	for range 2 {
		parts, err := b.readGroupOffsets(client)
		require.NoError(t, err)
		b.group.set(parts)
	}
	parts := b.group.get()
	require.Len(t, parts, 1)
	assert.Equal(t, int64(101), parts[0].lag())
}

// groupOffsetsBridge is a bridge routing orders on cluster, for reading
// the group's offsets (readGroupOffsets) with client, closed when t ends.
func groupOffsetsBridge(t *testing.T, cluster *kfake.Cluster) (*Bridge, sarama.Client) {
	t.Helper()
	cfg := config.Config{
		Kafka:  config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g"},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults()
	b, err := New(cfg, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	client, err := sarama.NewClient(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	return b, client
}
