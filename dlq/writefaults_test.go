package dlq

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A write the broker does not answer (its partition leader hung) returns
// once the caller's context ends: the bridge's partition is being revoked
// or the bridge is shutting down, and must let go within
// dispatch.drain_timeout. (Write checked the context once and then waited
// for sarama's send: a read timeout per try, ten tries, during which the
// claim held up the group's rebalance past its timeout.)
func TestAWriteTheBrokerDoesNotAnswerEndsWithItsContext(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"+DefaultSuffix))
	require.NoError(t, err)
	t.Cleanup(cluster.Close) // also when the producer does not start; closing twice is safe
	pc := sarama.NewConfig()
	pc.Version = sarama.V3_6_0_0
	pc.Producer.RequiredAcks, pc.Producer.Return.Successes = sarama.WaitForAll, true
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	defer func() {
		cluster.Close() // first: the hung send then fails at once, and Close need not wait for it
		_ = prod.Close()
	}()
	produced := make(chan struct{}, 1)
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		select {
		case produced <- struct{}{}:
		default:
		}
		return nil, nil, true // never answered
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ProducerWriter{Producer: prod, Suffix: DefaultSuffix}.Write(ctx,
			Failure{Topic: "orders", Partition: 0, Offset: 7, Value: []byte("v"), Class: ClassRejected, Err: "rejected"})
	}()
	select {
	case <-produced:
	case <-time.After(30 * time.Second):
		t.Fatal("the write never reached the broker")
	}
	cancel()
	select {
	case err := <-done:
		assert.True(t, errors.Is(err, context.Canceled), "%v", err)
		assert.ErrorContains(t, err, "orders/0@7")
	case <-time.After(5 * time.Second):
		t.Fatal("Write had not returned 5 s after its context ended")
	}
}
