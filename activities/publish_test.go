package activities

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// An outcome that can never be published (no topic or type, or larger
// than the producer or its topic takes) fails the activity without
// retries, with an error that names what is wrong: retrying could only
// fail again, for as long as the activity's retry policy allows, which by
// default is for ever, and the saga would never go on. (Both failed with
// retryable errors.) A topic that does not exist yet stays retryable.
func TestAnOutcomeThatCanNeverBePublishedFailsWithoutRetries(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "outcomes"))
	require.NoError(t, err)
	defer cluster.Close()
	limit := "2000"
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	require.NoError(t, admin.CreateTopic("small", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false))
	require.NoError(t, admin.Close())
	env := publishEnv(t, cluster)

	for name, c := range map[string]struct {
		o    Outcome
		kind string
		says string
	}{
		"no topic": {Outcome{Type: "Booked", Value: []byte(`{}`)}, "InvalidOutcome", "Outcome.Topic"},
		"no type":  {Outcome{Topic: "outcomes", Value: []byte(`{}`)}, "InvalidOutcome", "Outcome.Type"},
		// Kafka refuses the name: retried for ever under retry-until-done.
		"illegal topic":     {Outcome{Topic: "trip outcomes", Type: "Booked", Value: []byte(`{}`)}, "InvalidOutcome", `Outcome.Topic "trip outcomes"`},
		"over the producer": {Outcome{Topic: "outcomes", Type: "Booked", Value: bigJSON(2 << 20)}, "OutcomeTooLarge", "outcomes"},
		"over the topic":    {Outcome{Topic: "small", Type: "Booked", Value: bigJSON(3000)}, "OutcomeTooLarge", "small"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := env.ExecuteActivity("Publish", c.o)
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr, "%v", err)
			assert.True(t, appErr.NonRetryable(), "%v", err)
			assert.Equal(t, c.kind, appErr.Type())
			assert.Contains(t, err.Error(), c.says)
		})
	}
	_, err = env.ExecuteActivity("Publish", Outcome{Topic: "outcomes", Type: "Booked", Value: []byte(`{}`)})
	assert.NoError(t, err, "an outcome that fits is published")
}

// bigJSON is a JSON string of about n bytes.
func bigJSON(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("a", n) + `"`) }

// An outcome without a key is a record with a null key, as Kafka's
// keyless records are: spread over the partitions. It was written with the
// empty key "", which hashes every such outcome to one partition. (A
// compacted topic refuses a null key: see the next test.)
func TestAnOutcomeWithoutAKeyHasANullKey(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "outcomes"))
	require.NoError(t, err)
	defer cluster.Close()
	env := publishEnv(t, cluster)
	for _, key := range []string{"", "k"} {
		_, err := env.ExecuteActivity("Publish", Outcome{Topic: "outcomes", Key: key, Type: "DailyReport", Value: []byte(`{}`)})
		require.NoError(t, err)
	}
	c, err := sarama.NewConsumer(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	defer c.Close()
	pc, err := c.ConsumePartition("outcomes", 0, sarama.OffsetOldest)
	require.NoError(t, err)
	defer pc.Close()
	first, second := <-pc.Messages(), <-pc.Messages()
	assert.Nil(t, first.Key, "no key: a null key")
	assert.Equal(t, []byte("k"), second.Key)
}

// refusingProducer answers every send with err, as a broker would.
type refusingProducer struct {
	sarama.SyncProducer
	err error
}

func (r refusingProducer) SendMessage(*sarama.ProducerMessage) (int32, int64, error) {
	return 0, 0, r.err
}
func (r refusingProducer) SendMessages([]*sarama.ProducerMessage) error { return r.err }

// An outcome the topic refuses as it is (INVALID_RECORD: a keyless outcome
// on a compacted topic) fails the activity without retries, saying what to
// set; it was retried for ever, and the saga never went on.
func TestAnOutcomeTheTopicRefusesFailsWithoutRetries(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(&Publisher{Producer: refusingProducer{err: sarama.ErrInvalidRecord}})
	_, err := env.ExecuteActivity("Publish", Outcome{Topic: "compacted", Type: "Booked", Value: []byte(`{}`)})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.True(t, appErr.NonRetryable())
	assert.Equal(t, "InvalidOutcome", appErr.Type())
	assert.Contains(t, err.Error(), "set Outcome.Key")

	// Without Publisher.Alone a keyed outcome cannot be told from one
	// refused with its batch (another sender's keyless record): retried.
	_, err = env.ExecuteActivity("Publish", Outcome{Topic: "compacted", Key: "order-1", Type: "Booked", Value: []byte(`{}`)})
	require.ErrorAs(t, err, &appErr)
	assert.False(t, appErr.NonRetryable(), "%v", err)

	// With Alone, a keyed outcome refused alone fails for good, naming
	// no key to set: it has one.
	env.RegisterActivity(&Publisher{Producer: refusingProducer{err: sarama.ErrInvalidRecord}, Alone: refusingProducer{err: sarama.ErrInvalidRecord}})
	_, err = env.ExecuteActivity("Publish", Outcome{Topic: "compacted", Key: "order-1", Type: "Booked", Value: []byte(`{}`)})
	require.ErrorAs(t, err, &appErr)
	assert.True(t, appErr.NonRetryable())
	assert.NotContains(t, err.Error(), "set Outcome.Key")
	assert.Contains(t, err.Error(), "refuses the record sent alone")
}

// publishEnv is an activity environment with a Publisher producing to
// cluster.
func publishEnv(t *testing.T, cluster *kfake.Cluster) *testsuite.TestActivityEnvironment {
	t.Helper()
	p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), ProducerConfig(sarama.V3_6_0_0))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(&Publisher{Producer: p})
	return env
}

// A keyed outcome that the shared producer batched with another
// workflow's keyless one on a compacted topic is published: the broker
// refuses the whole batch (INVALID_RECORD), and each record is sent again
// alone, where only the keyless one is refused, for good. (The keyed one
// failed for good too, "set Outcome.Key", and its saga compensated.)
func TestAnOutcomeRefusedWithItsBatchIsSentAgainAlone(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "compacted"))
	require.NoError(t, err)
	defer cluster.Close()
	cluster.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl() // as a compacted topic's broker: a batch holding a keyless record is refused whole
		req := kr.(*kmsg.ProduceRequest)
		refuse := false
		for _, tp := range req.Topics {
			for _, p := range tp.Partitions {
				refuse = refuse || holdsKeyless(t, p.Records)
			}
		}
		if !refuse {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.InvalidRecord.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	cfg := ProducerConfig(sarama.V3_6_0_0)
	cfg.Producer.Flush.Messages, cfg.Producer.Flush.Frequency = 2, time.Minute // the two outcomes in one batch
	shared, err := sarama.NewSyncProducer(cluster.ListenAddrs(), cfg)
	require.NoError(t, err)
	defer shared.Close()
	alone, err := sarama.NewSyncProducer(cluster.ListenAddrs(), dlq.AloneConfig(ProducerConfig(sarama.V3_6_0_0)))
	require.NoError(t, err)
	defer alone.Close()
	pub := &Publisher{Producer: shared, Alone: alone}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, key := range []string{"", "order-1"} {
		wg.Go(func() {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestActivityEnvironment()
			env.RegisterActivity(pub)
			_, errs[i] = env.ExecuteActivity("Publish", Outcome{Topic: "compacted", Key: key, Type: "Booked", Value: []byte(`{}`)})
		})
	}
	wg.Wait()
	require.NoError(t, errs[1], "the keyed outcome")
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, errs[0], &appErr, "the keyless outcome")
	assert.True(t, appErr.NonRetryable())
	assert.Contains(t, errs[0].Error(), "set Outcome.Key")
}

// holdsKeyless reports whether a produce request's record batch holds a
// record without a key.
func holdsKeyless(t *testing.T, records []byte) bool {
	var b kmsg.RecordBatch
	require.NoError(t, b.ReadFrom(records))
	raw := b.Records
	for range b.NumRecords {
		l, n := binary.Varint(raw)
		var r kmsg.Record
		require.NoError(t, r.ReadFrom(raw[:n+int(l)]))
		raw = raw[n+int(l):]
		if r.Key == nil {
			return true
		}
	}
	return false
}
