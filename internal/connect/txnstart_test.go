package connect

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/kafkatxn/txntest"
)

// slowFirstStart starts a broker whose first InitProducerId is answered
// after 2.5 s, and returns it, a configuration that gives a start up after
// 1 s, transactional producer txn-a's, the count of InitProducerId
// requests, and a channel closed once the first is answered (kfake handles
// it next, before any later request).
func slowFirstStart(t *testing.T) (*kfake.Cluster, config.Kafka, *sarama.Config, *atomic.Int32, <-chan struct{}) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	n := new(atomic.Int32)
	firstAnswered := make(chan struct{})
	c.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if n.Add(1) == 1 { // the first start's InitProducerId is slow to be answered
			c.SleepControl(func() { time.Sleep(2500 * time.Millisecond) })
			close(firstAnswered)
		}
		return nil, nil, false
	})
	k := config.Kafka{Brokers: c.ListenAddrs(), Version: "3.6.0", ClientID: "t", ConnectTimeout: time.Second}
	pc, err := TransactionalProducerConfig(k, 0, "txn-a")
	require.NoError(t, err)
	return c, k, pc, n, firstAnswered
}

// A transactional producer start given up on (its InitProducerId slow to be
// answered) is not raced by the retry: the retry waits for it, and takes its
// producer when it gets through, so the later answer fences nothing. (The
// retry started a second producer, which the first start's late
// InitProducerId fenced: PRODUCER_FENCED on its first commit, and the
// bridge released the partition.)
func TestATransactionalStartGivenUpOnDoesNotFenceTheRetry(t *testing.T) {
	_, k, pc, n, firstAnswered := slowFirstStart(t)
	var starter TxnStarter
	defer starter.Close()
	_, err := starter.Start(k, pc)
	require.ErrorContains(t, err, "no answer within")
	var p sarama.SyncProducer
	for try := 0; p == nil; try++ { // the caller retries, as startTxnCommitter does
		require.Less(t, try, 5, "the retry never started")
		if p, err = starter.Start(k, pc); err != nil {
			assert.ErrorContains(t, err, "an earlier start of transactional producer txn-a is still waiting")
		}
	}
	defer func() { _ = p.Close() }()
	<-firstAnswered

	require.NoError(t, p.BeginTxn())
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "out", Value: sarama.StringEncoder("x")})
	if err == nil {
		err = p.CommitTxn()
	}
	require.NoError(t, err, "the live producer was fenced; InitProducerId calls: %d", n.Load())
	assert.Equal(t, int32(1), n.Load(), "one start: the retry took the first start's producer")
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The per-partition transactional producers hold the metadata of the
// topics they write, not of the whole cluster. (With sarama's default,
// Metadata.Full, each held every topic's: 1.8 MiB per claimed partition on
// a cluster of 9,600 partitions, against a 32 MiB memory soft limit.)
func TestAProducerHoldsOnlyTheMetadataOfItsTopics(t *testing.T) {
	topics := make([]string, 200)
	for i := range topics {
		topics[i] = fmt.Sprintf("other-topic-%03d", i)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(24, topics...)) // 4,800 partitions
	require.NoError(t, err)
	t.Cleanup(c.Close)
	k := config.Kafka{Brokers: c.ListenAddrs(), Version: "3.6.0", ClientID: "t", ConnectTimeout: 10 * time.Second}
	const producers = 8
	before := heapInUse()
	var ps []sarama.SyncProducer
	for i := range producers {
		pc, err := TransactionalProducerConfig(k, 0, fmt.Sprintf("txn-%d", i))
		require.NoError(t, err)
		var s TxnStarter
		p, err := s.Start(k, pc)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	held := heapInUse() - before
	for _, p := range ps {
		_ = p.Close()
	}
	t.Logf("%d producers hold %d KiB", producers, held>>10)
	assert.Less(t, held, uint64(3<<20), "the producers hold the cluster's metadata")
}

// The DLQ producer (idempotent, not transactional) starts while one of the
// seed brokers is down. (With Metadata.Full off it asked the first seed
// for its producer ID on every try: starts failed about one time in two
// with two seeds.) Six starts: sarama shuffles the seeds.
func TestTheDLQProducerStartsWithASeedBrokerDown(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	require.NoError(t, l.Close())
	k := config.Kafka{Brokers: []string{dead, c.ListenAddrs()[0]}, Version: "3.6.0", ClientID: "t", ConnectTimeout: 20 * time.Second}
	for try := range 6 {
		pc, err := DLQProducerConfig(k, 0)
		require.NoError(t, err)
		p, err := SyncProducer(context.Background(), k, pc)
		require.NoError(t, err, "start %d", try)
		_ = p.Close()
	}
}

// A start given up on that has answered by the time of the next Start is
// closed, and a new one made: another owner of the partition may have
// initialised the ID since, fencing it. (It was handed over, and its
// first commit failed with PRODUCER_FENCED, releasing a partition the
// bridge rightly owned.) One still waiting for its answer is still taken
// (TestATransactionalStartGivenUpOnDoesNotFenceTheRetry).
func TestAStartThatAnsweredBeforeTheNextIsNotHandedOver(t *testing.T) {
	c, k, pc, n, _ := slowFirstStart(t)
	var starter TxnStarter
	defer starter.Close()
	_, err := starter.Start(k, pc)
	require.ErrorContains(t, err, "no answer within")
	require.Eventually(t, func() bool {
		starter.mu.Lock()
		defer starter.mu.Unlock()
		return len(starter.pending) == 1
	}, 30*time.Second, 10*time.Millisecond, "the start given up on never got its producer")

	// The partition's next owner, another instance, initialises the ID.
	other := txntest.RealProducer(t, c.ListenAddrs(), "txn-a")
	require.NoError(t, other.BeginTxn())

	// The partition comes back to this bridge.
	p, err := starter.Start(k, pc)
	require.NoError(t, err)
	defer func() { _ = p.Close() }()
	require.NoError(t, p.BeginTxn())
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "out", Value: sarama.StringEncoder("x")})
	if err == nil {
		err = p.CommitTxn()
	}
	require.NoError(t, err, "the producer Start returned was already fenced (InitProducerId calls: %d)", n.Load())
}
