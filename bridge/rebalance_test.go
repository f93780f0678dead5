package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// acceptedFrom reports whether f accepted every offset in [from, to) of
// each of the orders topic's partitions.
func (f *fakeTemporal) acceptedFrom(partitions int32, from, to int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	got := map[event.Position]bool{}
	for _, e := range f.accepted {
		got[event.Position{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset}] = true
	}
	for p := range partitions {
		for o := from; o < to; o++ {
			if !got[event.Position{Topic: "orders", Partition: p, Offset: o}] {
				return false
			}
		}
	}
	return true
}

// A member that released a partition while it was paused at its in-flight
// cap, and is given it back when the member that took it leaves, goes on
// reading it. Real consumer group, real broker: sarama's consumer keeps a
// partition's pause across its reassignment and starts the new claim
// paused, and the new claim has nothing in flight, so nothing ever resumed
// it: the partition's lag grew until the process restarted.
func TestAPartitionGivenBackAfterItWasReleasedPausedIsReadAgain(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	t.Cleanup(cluster.Close) // after the bridges' cleanups, which leave the group
	produce := func(from, to int64) {
		pc := sarama.NewConfig()
		pc.Producer.Return.Successes = true
		pc.Producer.Partitioner = sarama.NewManualPartitioner
		p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
		require.NoError(t, err)
		defer p.Close()
		for part := range int32(2) {
			for o := from; o < to; o++ {
				_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "orders", Partition: part,
					Key: sarama.StringEncoder(fmt.Sprintf("p%d-k%d", part, o)), Value: sarama.StringEncoder(`{}`),
					Headers: []sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte("E")}}})
				require.NoError(t, err)
			}
		}
	}
	cfg := config.Config{
		Kafka:        config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g"},
		Batch:        config.Batch{MaxRecords: 1, MaxInFlight: 2},
		Dispatch:     config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 100 * time.Millisecond},
		Backpressure: config.Backpressure{Backlog: config.Backlog{Disabled: true}},
		Routes:       []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults()
	start := func(tc Temporal) (*Bridge, context.CancelFunc) {
		b, err := New(cfg, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		stop := func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(time.Minute):
				t.Error("the bridge did not stop")
			}
		}
		t.Cleanup(func() {
			if ctx.Err() == nil {
				stop()
			}
		})
		return b, stop
	}

	produce(0, 5)
	gate := gateTemporal{fakeTemporal: &fakeTemporal{}, open: make(chan struct{})}
	a, _ := start(gate)
	require.Eventually(t, func() bool { return a.pressure.nCapped.Load() == 2 }, time.Minute, 10*time.Millisecond,
		"A's partitions never reached their in-flight cap")

	// B joins and takes one partition, which A releases paused; B leaves
	// and A is given it back.
	tb := &fakeTemporal{}
	b, stopB := start(tb)
	require.Eventually(t, func() bool { return len(b.pressure.claimed()) == 1 }, time.Minute, 10*time.Millisecond,
		"B never got a partition")
	stopB()
	require.Eventually(t, func() bool { return len(a.pressure.claimed()) == 2 }, time.Minute, 10*time.Millisecond,
		"A never got the partition back")

	close(gate.open)
	produce(5, 10)
	if !assert.Eventually(t, func() bool { return gate.acceptedFrom(2, 5, 10) }, time.Minute, 20*time.Millisecond) {
		paused, _, _, _ := a.pressure.snapshot()
		t.Fatalf("A never delivered the new records of both partitions; the partitions it counts as paused: %v", paused)
	}
}
