package activities

import (
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sagabridge/sagabridge/activities/contract"
	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// The classes workflow code writes through package contract are the DLQ's
// own, string for string (the header value is the contract).
func TestContractClassesAreTheDLQClasses(t *testing.T) {
	for got, want := range map[contract.Class]dlq.Class{
		contract.ClassActivity:       dlq.ClassActivity,
		contract.ClassWorkflowClosed: dlq.ClassWorkflowClosed,
	} {
		if dlq.Class(got) != want {
			t.Errorf("contract class %q, dlq class %q", got, want)
		}
	}
	if DeadLetterActivity != "DeadLetter" {
		t.Errorf("DeadLetterActivity = %q: renaming it breaks running workflows", DeadLetterActivity)
	}
}

// deadLetterer starts a broker with the orders topic and returns a
// DeadLetterer on it, in an activity environment, and the broker.
func deadLetterer(t *testing.T, dlqTopicLimit string) (*testsuite.TestActivityEnvironment, *kfake.Cluster) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	cfg := map[string]*string{}
	if dlqTopicLimit != "" {
		cfg["max.message.bytes"] = &dlqTopicLimit
	}
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	require.NoError(t, admin.CreateTopic("orders"+dlq.DefaultSuffix, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1, ConfigEntries: cfg}, false))
	require.NoError(t, admin.Close())
	p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), ProducerConfig(sarama.V3_6_0_0))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(&DeadLetterer{Producer: p})
	return env, cluster
}

// readDLQ reads the orders DLQ's first record.
func readDLQ(t *testing.T, cluster *kfake.Cluster) dlq.Failure {
	t.Helper()
	c, err := sarama.NewConsumer(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	defer c.Close()
	pc, err := c.ConsumePartition("orders"+dlq.DefaultSuffix, 0, sarama.OffsetOldest)
	require.NoError(t, err)
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		f, err := dlq.Parse(m)
		require.NoError(t, err)
		return f
	case <-time.After(30 * time.Second):
		t.Fatal("no dead letter in the DLQ")
		return dlq.Failure{}
	}
}

// A dead letter too large for the producer (its value near Kafka's default
// limit, legal in the source topic, plus the DLQ's headers) or for the DLQ
// topic is written in reduced form, as the bridge writes its own. (The
// activity failed on every attempt, and DeadLetter retries without limit:
// the saga waited for ever and its compensations never ran.)
func TestADeadLetterThatDoesNotFitIsWrittenReduced(t *testing.T) {
	for _, tc := range []struct {
		name, topicLimit string
		value            int
	}{
		// Legal in a source topic of Kafka's default max.message.bytes
		// (1,048,588), over sarama's 1 MiB with the DLQ's headers.
		{"over the producer's limit", "", 1<<20 - 100},
		{"over the DLQ topic's limit", "10000", 20_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, cluster := deadLetterer(t, tc.topicLimit)
			in := DeadLetterInput{
				Event:        event.Envelope{Topic: "orders", Partition: 0, Offset: 7, Key: "trip-1", Raw: []byte(strings.Repeat("x", tc.value))},
				ActivityType: "BookHotel", Attempts: 3, Error: "no rooms",
			}
			_, err := env.ExecuteActivity(DeadLetterActivity, in)
			require.NoError(t, err)
			f := readDLQ(t, cluster)
			assert.True(t, f.IsReduced(), "the dead letter is not in reduced form")
			assert.Equal(t, int64(7), f.Offset)
			assert.Equal(t, "trip-1", string(f.Key))
			assert.Equal(t, "BookHotel", f.ActivityType)
			assert.Zero(t, len(f.Value), "the value was kept")
		})
	}
}

// A dead letter that can never be written fails at once, naming the field,
// instead of being retried for ever.
func TestADeadLetterWithoutATopicFailsWithoutRetries(t *testing.T) {
	env, _ := deadLetterer(t, "")
	_, err := env.ExecuteActivity(DeadLetterActivity, DeadLetterInput{Event: event.Envelope{Offset: 3}, ActivityType: "BookHotel"})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.True(t, appErr.NonRetryable(), "%v", err)
	assert.Contains(t, err.Error(), "Event.Topic")
}

// A record whose key is not text (an Avro key after its schema ID, say) is
// dead-lettered with the key it had. Workflows get it in JSON, where a
// string turns each byte of invalid UTF-8 into U+FFFD: the dead letter had
// a key no redrive could route back to its workflow.
func TestADeadLetterKeepsABinaryRecordKey(t *testing.T) {
	env, cluster := deadLetterer(t, "")
	router, err := bridge.NewRouter([]config.Route{{Topic: "orders", WorkflowType: "O", WorkflowID: "order-{json:id}", TaskQueue: "q"}}, dlq.DefaultSuffix)
	require.NoError(t, err)
	key := []byte{0, 0, 0, 0, 42, 0xc3, 0x28, 0xff, 'k'}
	at := time.Date(2020, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	_, e, err := router.Route(&sarama.ConsumerMessage{Topic: "orders", Offset: 3, Key: key, Value: []byte(`{"id":"7"}`), Timestamp: at})
	require.NoError(t, err)
	_, err = env.ExecuteActivity(DeadLetterActivity, DeadLetterInput{Event: e, ActivityType: "Charge", Attempts: 3, Error: "declined"})
	require.NoError(t, err)
	got := readDLQ(t, cluster)
	assert.Equal(t, key, got.Key)
	assert.Equal(t, at, got.Timestamp, "the record's own timestamp, kept for a redrive (it was lost)")
}

// A record with a null key (a route that names its workflow by a header or
// a JSON field needs none) and an empty value (a bytes route's header-only
// event) is dead-lettered as it was: null key, empty value. JSON drops
// both distinctions on the way through Temporal (Key "" and Raw omitted),
// and the dead letter had an empty key and a null value, which a redrive
// writes as a tombstone: on a compacted topic, the key's deletion.
func TestADeadLetterKeepsANullKeyAndAnEmptyValue(t *testing.T) {
	env, cluster := deadLetterer(t, "")
	router, err := bridge.NewRouter([]config.Route{{Topic: "orders", WorkflowType: "O", WorkflowID: "order-{header:id}", TaskQueue: "q", Payload: config.PayloadBytes}}, dlq.DefaultSuffix)
	require.NoError(t, err)
	_, e, err := router.Route(&sarama.ConsumerMessage{Topic: "orders", Offset: 3, Key: nil, Value: []byte{},
		Headers: []*sarama.RecordHeader{{Key: []byte("id"), Value: []byte("7")}}})
	require.NoError(t, err)
	_, err = env.ExecuteActivity(DeadLetterActivity, DeadLetterInput{Event: e, ActivityType: "Charge", Attempts: 3, Error: "declined"})
	require.NoError(t, err)
	got := readDLQ(t, cluster)
	assert.Nil(t, got.Key, "a null key")
	assert.NotNil(t, got.Value, "an empty value, not a null one")
	assert.Empty(t, got.Value)
}
