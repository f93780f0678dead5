package dlq

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

// Dead letters written at once to one DLQ partition (from several source
// partitions) go in one batch, which the broker refuses whole when they
// exceed the topic's max.message.bytes together; sarama fails each, and
// the bridge wrote each in reduced form, its value dropped, though it fit
// alone. A dead letter refused so is written again alone.
func TestDeadLettersRefusedTogetherAsTooLargeAreWrittenAgainAlone(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	limit := "3000"
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	require.NoError(t, admin.CreateTopic("orders"+DefaultSuffix, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false))
	require.NoError(t, admin.Close())
	var once sync.Once
	var together atomic.Bool // a request carried a batch over the DLQ's limit: the path under test ran
	cluster.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		for _, tp := range kr.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				if len(p.Records) > 3000 {
					together.Store(true)
				}
			}
		}
		once.Do(func() { cluster.SleepControl(func() { time.Sleep(300 * time.Millisecond) }) }) // the others queue meanwhile
		return nil, nil, false
	})
	pc := sarama.NewConfig()
	pc.Version = sarama.V3_6_0_0
	pc.Producer.RequiredAcks, pc.Producer.Return.Successes = sarama.WaitForAll, true
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	alone, err := sarama.NewSyncProducer(cluster.ListenAddrs(), AloneConfig(pc))
	require.NoError(t, err)
	t.Cleanup(func() { _ = alone.Close() })
	w := ProducerWriter{Producer: prod, Alone: alone, Suffix: DefaultSuffix}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 50 * time.Millisecond)
			errs[i] = w.Write(context.Background(), Failure{Topic: "orders", Partition: int32(i), Offset: 1, Value: bytes.Repeat([]byte("v"), 1200),
				Class: ClassDecode, Err: "bad", FailedAt: time.Now()})
		})
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "dead letter %d (1.2 KB, DLQ limit 3,000 bytes)", i)
	}
	assert.True(t, together.Load(), "no batch over the DLQ's limit was sent: the writes were not refused together")
}

// A send that panics (sarama's SyncProducer panics when sent to after
// Close) fails with an error: Send runs it on a goroutine of its own, where
// no caller's recovery (the SDK's, for an activity) reaches, and the
// panic took the whole process down.
func TestASendThatPanicsFails(t *testing.T) {
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	require.NoError(t, p.Close())
	err = Send(context.Background(), p, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("v")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "panicked")
}

// stuckProducer is a SyncProducer whose sends never end until release is
// closed, counting those under way.
type stuckProducer struct {
	sarama.SyncProducer
	release        chan struct{}
	inFlight, most atomic.Int32
}

func (p *stuckProducer) SendMessage(*sarama.ProducerMessage) (int32, int64, error) {
	n := p.inFlight.Add(1)
	for m := p.most.Load(); n > m && !p.most.CompareAndSwap(m, n); m = p.most.Load() {
	}
	<-p.release
	p.inFlight.Add(-1)
	return 0, 0, nil
}

// A send given up on goes on in sarama until its retries end, its
// goroutine and record held; against a broker that takes connections and
// never answers, every attempt of every activity added one (500 attempts
// of 100 KB: 523 goroutines, 108 MiB). Through Bounded at most n are under
// way, and a send whose context ends while it waits for room is not sent.
func TestABoundedProducerHoldsAtMostItsSendsInFlight(t *testing.T) {
	stuck := &stuckProducer{release: make(chan struct{})}
	p := Bounded(stuck, 3)
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		err := Send(ctx, p, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("v")})
		cancel()
		require.Error(t, err)
	}
	assert.Equal(t, int32(3), stuck.most.Load(), "sends under way at most")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	err := Send(ctx, p, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("v")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not sent")
	close(stuck.release)
	require.Eventually(t, func() bool { return stuck.inFlight.Load() == 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, Send(context.Background(), p, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("v")}), "room again once they ended")
}
