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
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
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
	cfg := config.Config{
		Kafka:  config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g"},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults()
	b, err := New(cfg, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	client, err := sarama.NewClient(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	defer client.Close()
	parts, err := b.readGroupOffsets(client)
	require.NoError(t, err)
	require.Len(t, parts, 2)
	assert.Equal(t, int64(0), parts[0].committed)
	assert.Equal(t, int64(-1), parts[1].committed)
}
