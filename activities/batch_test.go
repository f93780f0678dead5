package activities

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// batchingBroker starts a broker with topic limited to limit bytes per
// record batch (max.message.bytes), whose first produce is answered late:
// the records sent meanwhile through one producer queue and go in one
// batch, larger than the limit though each fits alone. At the test's end
// it checks that such a batch was sent, or the test proved nothing.
func batchingBroker(t *testing.T, topic, limit string) *kfake.Cluster {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	require.NoError(t, admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false))
	require.NoError(t, admin.Close())
	max, err := strconv.Atoi(limit)
	require.NoError(t, err)
	var once sync.Once
	var together atomic.Bool
	cluster.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		for _, tp := range kr.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				if len(p.Records) > max {
					together.Store(true)
				}
			}
		}
		once.Do(func() { cluster.SleepControl(func() { time.Sleep(300 * time.Millisecond) }) })
		return nil, nil, false
	})
	t.Cleanup(func() {
		assert.True(t, together.Load(), "no batch over %s bytes was sent: the records were not refused together", limit)
	})
	return cluster
}

// producers are the shared producer and the one-record producer
// (AloneConfig) of cluster.
func producers(t *testing.T, cluster *kfake.Cluster, cfg *sarama.Config) (shared, alone sarama.SyncProducer) {
	t.Helper()
	shared, err := sarama.NewSyncProducer(cluster.ListenAddrs(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = shared.Close() })
	alone, err = sarama.NewSyncProducer(cluster.ListenAddrs(), dlq.AloneConfig(cfg))
	require.NoError(t, err)
	t.Cleanup(func() { _ = alone.Close() })
	return shared, alone
}

// concurrently runs run(i) for i in [0, n) at once, 50 ms apart, and
// returns their errors.
func concurrently(n int, run func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 50 * time.Millisecond)
			errs[i] = run(i)
		})
	}
	wg.Wait()
	return errs
}

// A broker refuses a whole batch as too large when the records sarama put
// in it together exceed the topic's max.message.bytes; sarama never splits
// it, and every record in it failed with MESSAGE_TOO_LARGE. Publish took
// that for an outcome too large for its topic (a non-retryable failure:
// the saga step failed for good and its compensations ran), and
// DeadLetter wrote dead letters that fit whole in reduced form, their
// values dropped. A record refused so is now sent again alone.
func TestRecordsRefusedTogetherAsTooLargeAreSentAgainAlone(t *testing.T) {
	t.Run("Publish", func(t *testing.T) {
		cluster := batchingBroker(t, "small", "2000")
		shared, alone := producers(t, cluster, ProducerConfig(sarama.V3_6_0_0))
		errs := concurrently(4, func(i int) error {
			_, err := activityEnv(0, &Publisher{Producer: shared, Alone: alone}).ExecuteActivity("Publish",
				Outcome{Topic: "small", Type: "X", Key: fmt.Sprint(i), Value: []byte(`"` + strings.Repeat("a", 1200) + `"`)})
			return err
		})
		for i, err := range errs {
			assert.NoError(t, err, "outcome %d (1.2 KB, topic limit 2,000 bytes)", i)
		}
	})
	t.Run("DeadLetter", func(t *testing.T) {
		cluster := batchingBroker(t, "orders"+dlq.DefaultSuffix, "3000")
		shared, alone := producers(t, cluster, ProducerConfig(sarama.V3_6_0_0))
		errs := concurrently(4, func(i int) error {
			_, err := activityEnv(0, &DeadLetterer{Producer: shared, Alone: alone}).ExecuteActivity(DeadLetterActivity,
				DeadLetterInput{Event: event.Envelope{Topic: "orders", Offset: int64(i), Key: "k", Raw: []byte(strings.Repeat("v", 1200))},
					ActivityType: "X", Error: "e"})
			return err
		})
		for i, err := range errs {
			require.NoError(t, err, "dead letter %d", i)
		}
		c, err := sarama.NewConsumer(cluster.ListenAddrs(), sarama.NewConfig())
		require.NoError(t, err)
		defer c.Close()
		pc, err := c.ConsumePartition("orders"+dlq.DefaultSuffix, 0, sarama.OffsetOldest)
		require.NoError(t, err)
		defer pc.Close()
		for range 4 {
			select {
			case m := <-pc.Messages():
				f, err := dlq.Parse(m)
				require.NoError(t, err)
				assert.False(t, f.IsReduced(), "dead letter of offset %d (1.2 KB, DLQ limit 3,000 bytes) was written reduced", f.Offset)
			case <-time.After(30 * time.Second):
				t.Fatal("a dead letter is missing")
			}
		}
	})
}
