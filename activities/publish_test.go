package activities

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
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
