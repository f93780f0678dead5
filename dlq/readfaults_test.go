package dlq

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// transactionalDLQ starts a broker with a one-partition DLQ topic holding
// n dead letters written in one transaction (so its last offset is the
// commit marker, as in a bridge's transactional DLQ), and a client to read
// it.
func transactionalDLQ(t *testing.T, n int) (*kfake.Cluster, sarama.Client) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"+DefaultSuffix))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	pc := sarama.NewConfig()
	pc.Version = sarama.V3_6_0_0
	pc.Producer.Idempotent, pc.Net.MaxOpenRequests = true, 1
	pc.Producer.RequiredAcks, pc.Producer.Return.Successes = sarama.WaitForAll, true
	pc.Producer.Transaction.ID = "dlq-writer"
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	defer prod.Close()
	require.NoError(t, prod.BeginTxn())
	for i := range n {
		f := Failure{Topic: "orders", Offset: int64(i), Key: []byte("k"), Value: []byte("{}"), Class: ClassDecode, Err: "bad", FailedAt: time.Now()}
		_, _, err := prod.SendMessage(f.Message(DefaultSuffix))
		require.NoError(t, err)
	}
	require.NoError(t, prod.CommitTxn())
	client, err := sarama.NewClient(cluster.ListenAddrs(), ConsumerConfig(sarama.V3_6_0_0))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	return cluster, client
}

// failFetches makes the broker answer the DLQ partition's next fetches
// with code instead of records, times times.
func failFetches(cluster *kfake.Cluster, code int16, times int32) *atomic.Int32 {
	return failFetchesFrom(cluster, code, times, 0)
}

// failFetchesFrom is failFetches for the fetches from offset from on.
func failFetchesFrom(cluster *kfake.Cluster, code int16, times int32, from int64) *atomic.Int32 {
	var n atomic.Int32
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		r := req.(*kmsg.FetchRequest)
		if len(r.Topics) != 1 || len(r.Topics[0].Partitions) != 1 || r.Topics[0].Partitions[0].FetchOffset < from || n.Add(1) > times {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return &n
}

// A fetch error that passes after the last record (a broker restarting
// while the read waits for the end, which a transactional DLQ's commit
// marker makes it do) does not fail the read: it failed with "nothing
// arrived for 2s", every record read.
func TestAPassingFetchErrorAfterTheLastRecordDoesNotFailTheRead(t *testing.T) {
	cluster, client := transactionalDLQ(t, 3)
	fails := failFetchesFrom(cluster, kerr.KafkaStorageError.Code, 1, 3)
	entries, err := Read(context.Background(), client, "orders"+DefaultSuffix, Filter{})
	require.Equal(t, int32(1), min(fails.Load(), 1), "the fault was never injected")
	require.NoError(t, err)
	assert.Len(t, entries, 3)
}

// A fetch error that passes (the client retries it) does not fail a read
// that then got every record. (The error was kept to the end, and a
// transactional DLQ's read always ends on the idle timeout, its last offset
// being the commit marker: Read failed although nothing was missing.)
func TestAPassingFetchErrorDoesNotFailTheRead(t *testing.T) {
	cluster, client := transactionalDLQ(t, 3)
	fails := failFetches(cluster, kerr.KafkaStorageError.Code, 1)
	entries, err := Read(context.Background(), client, "orders"+DefaultSuffix, Filter{})
	require.NoError(t, err)
	assert.Len(t, entries, 3)
	assert.Greater(t, fails.Load(), int32(1), "the fetch error was never injected")
}

// When the broker ends the read (retention removed the records being read:
// the client stops the partition with OFFSET_OUT_OF_RANGE), Read returns
// an error naming the partition and the cause. (It crashed on the nil
// record of the closed channel.)
func TestAReadTheBrokerEndsIsAnError(t *testing.T) {
	cluster, client := transactionalDLQ(t, 3)
	failFetches(cluster, kerr.OffsetOutOfRange.Code, 1_000_000)
	_, err := Read(context.Background(), client, "orders"+DefaultSuffix, Filter{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "orders.dlq/0")
	assert.ErrorIs(t, err, sarama.ErrOffsetOutOfRange)
}

// A partition whose fetch the broker answers NOT_LEADER (its leader moving
// in a rolling restart) goes silent while the client backs off, without an
// error on the consumer's error channel; the read waits for the records
// still below its end rather than taking the silence for its end. (Read
// returned no entry and no error after 2 s: redrive -all would redrive
// none of them, and list showed an empty DLQ.)
func TestASilentLeaderMoveDoesNotEndTheReadEarly(t *testing.T) {
	cluster, client := transactionalDLQ(t, 3)
	fails := failFetches(cluster, kerr.NotLeaderForPartition.Code, 1)
	entries, err := Read(context.Background(), client, "orders"+DefaultSuffix, Filter{})
	require.NoError(t, err)
	assert.Len(t, entries, 3)
	assert.GreaterOrEqual(t, fails.Load(), int32(1), "the fetch error was never injected")
}

// The same for the ledger of redrives: a silent leader move while it is
// read must not make an entry look never redriven, or the redrive tool
// would redrive it again without -force. (ReadRedrives returned an empty
// ledger.)
func TestASilentLeaderMoveDoesNotEmptyTheRedriveLedger(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, RedrivesTopic("orders"+DefaultSuffix)))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	m, err := Redrive{Partition: 0, Offset: 7, At: time.Now(), To: "orders/0@12"}.Message("orders" + DefaultSuffix)
	require.NoError(t, err)
	_, _, err = prod.SendMessage(m)
	require.NoError(t, err)
	require.NoError(t, prod.Close())
	client, err := sarama.NewClient(cluster.ListenAddrs(), ConsumerConfig(sarama.V3_6_0_0))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })

	fails := failFetches(cluster, kerr.NotLeaderForPartition.Code, 1)
	ledger, err := ReadRedrives(context.Background(), client, "orders"+DefaultSuffix)
	require.NoError(t, err)
	_, ok := ledger.Of("", 0, 7)
	assert.True(t, ok, "the redrive of 0@7 is read")
	assert.GreaterOrEqual(t, fails.Load(), int32(1), "no fetch met the fault: the test proved nothing")
}
