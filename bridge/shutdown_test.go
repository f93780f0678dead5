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
func TestAStopWhoseFinalCommitFailsIsAnError(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	var refusing atomic.Bool
	refusing.Store(true)
	cluster.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if refusing.Load() {
			return nil, fmt.Errorf("refused"), true // the connection is closed, as a broker going away does
		}
		return nil, nil, false
	})
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
	cancel()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the bridge did not stop")
	}
	require.Error(t, err, "the final commit failed")
	assert.ErrorIs(t, err, ErrFinalCommit)
	assert.Contains(t, err.Error(), "orders/0")
	assert.Contains(t, err.Error(), "5")
}
