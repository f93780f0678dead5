package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// Where brokers do not create topics on their own (the production
// default), a missing DLQ topic would stall the partition of the first
// poison record. The bridge checks its DLQ topics at start: it refuses to
// start, naming the missing topic, or with dlq.create_topics creates it,
// and a poison record then lands there.
func TestAMissingDLQTopicIsFoundAtStart(t *testing.T) {
	k, err := devstack.StartKafkaWith(devstack.KafkaOptions{NoAutoCreateTopics: true})
	require.NoError(t, err)
	t.Cleanup(k.Close)
	e := newEnv(t, 1)
	topic := "orders-" + e.id
	require.NoError(t, k.Cluster.CreateTopic(topic, 2, nil))
	cfg := map[string]any{
		"kafka":  map[string]any{"brokers": k.Brokers, "group": topic},
		"routes": []map[string]any{{"topic": topic, "workflow_type": ledger.WorkflowType, "workflow_id": "ledger-{key}", "task_queue": e.taskQueue}},
	}
	var out syncBuffer
	p := e.startBridgeProcessWith(topic, e.temporal, cfg, &out)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("the bridge started without its DLQ topic; output:\n%s", out.String())
	}
	assert.Error(t, p.Err())
	assert.Contains(t, out.String(), "the DLQ topics "+topic+".dlq do not exist")

	cfg["dlq"] = map[string]any{"create_topics": true}
	var out2 syncBuffer
	p = e.startBridgeProcessWith(topic, e.temporal, cfg, &out2)
	prod, err := sarama.NewSyncProducer(k.Brokers, bigProducerConfig())
	require.NoError(t, err)
	defer prod.Close()
	_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("{not json")})
	require.NoError(t, err)
	dead := readFrom(t, k.Brokers, topic+".dlq", 1, 60*time.Second)
	require.Len(t, dead, 1, "the poison record never reached the created DLQ topic; output:\n%s", out2.String())
	assert.Contains(t, out2.String(), "created the DLQ topic")
	require.NoError(t, p.Stop(20*time.Second))
}

// A dead letter that cannot be written as it is never wedges its
// partition: a 3 MB record (over dispatch.max_call_bytes, and over the DLQ
// producer's 1 MiB) and a small record with 80,000 headers are dead-lettered
// in reduced form, saying what was dropped, and the records after them are
// applied.
func TestDeadLettersTooLargeForTheDLQAreReduced(t *testing.T) {
	e := newEnv(t, 1)
	admin, err := sarama.NewClusterAdmin(stack.Kafka.Brokers, saramaAdminConfig())
	require.NoError(t, err)
	tenMB := "10485760" // the source topic takes 10 MB records; its DLQ topic keeps the 1 MB default
	require.NoError(t, admin.AlterConfig(sarama.TopicResource, e.ledgerTopic, map[string]*string{"max.message.bytes": &tenMB}, false))
	_ = admin.Close()
	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, bigProducerConfig())
	require.NoError(t, err)
	defer p.Close()
	v, _ := json.Marshal(map[string]any{"seq": 1, "total": 1, "pad": strings.Repeat("x", 3<<20)})
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: e.ledgerTopic, Key: sarama.StringEncoder(e.id + "-big"), Value: sarama.ByteEncoder(v)})
	require.NoError(t, err)
	var headers []sarama.RecordHeader
	for i := range 80_000 {
		headers = append(headers, sarama.RecordHeader{Key: []byte(fmt.Sprint("h", i)), Value: []byte("v")})
	}
	small, _ := json.Marshal(ledger.Value{Seq: 1, Total: 1})
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: e.ledgerTopic, Key: sarama.StringEncoder(e.id + "-headers"),
		Value: sarama.ByteEncoder(small), Headers: headers})
	require.NoError(t, err)
	at := e.produceLedger(ledger.Stream(e.id+"-after-", 3, 30, 1.1, 131))

	b, stop := e.runBridge(e.topic)
	defer stop()
	e.assertLedgers(at, time.Minute) // the partition moved on
	dead := readAll(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix), 2, 30*time.Second)
	require.Len(t, dead, 2)
	for _, m := range dead {
		f, err := dlq.Parse(m)
		require.NoError(t, err)
		assert.True(t, f.IsReduced(), "offset %d: not reduced", f.Offset)
		assert.Equal(t, e.ledgerTopic, f.Topic)
		reduced := headerOf(m, dlq.HeaderReduced)
		t.Logf("offset %d (%s): %s; error: %.120s", f.Offset, f.Class, reduced, f.Err)
		assert.NotEmpty(t, reduced)
	}
	assert.Equal(t, uint64(2), b.Stats().DeadLettered)
}

// bigProducerConfig produces records of a few MB (kfake takes them).
func bigProducerConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Producer.Return.Successes = true
	c.Producer.MaxMessageBytes = 16 << 20
	return c
}

// readFrom is readAll on another cluster.
func readFrom(t *testing.T, brokers []string, topic string, want int, timeout time.Duration) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, sarama.NewConfig())
	require.NoError(t, err)
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	require.NoError(t, err)
	defer pc.Close()
	var got []*sarama.ConsumerMessage
	deadline := time.After(timeout)
	for len(got) < want {
		select {
		case m := <-pc.Messages():
			got = append(got, m)
		case <-deadline:
			return got
		}
	}
	return got
}
