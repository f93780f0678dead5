package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// Records whose workflow ID or event type Temporal would refuse (a binary
// key from a schema-registry serializer, a key too long, a type header that
// is not text) go to the DLQ when routed, with the reason; the partition
// moves on and the records after them are applied.
func TestRecordsTemporalWouldRefuseGoToTheDLQAtOnce(t *testing.T) {
	e := newEnv(t, 1)
	value, _ := json.Marshal(ledger.Value{Seq: 1, Total: 1})
	send := func(topic string, key []byte, headers ...sarama.RecordHeader) {
		_, _, err := e.producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(key),
			Value: sarama.ByteEncoder(value), Headers: headers})
		require.NoError(t, err)
	}
	send(e.ledgerTopic, []byte{0x00, 0xff, 0xfe, 0x01, 0x02}) // Confluent wire format: magic byte, schema ID, ...
	send(e.ledgerTopic, []byte(strings.Repeat("k", 2000)))
	send(e.topic, []byte(e.id+"-order"), sarama.RecordHeader{Key: []byte(saga.TypeHeader), Value: []byte{0xc3, 0x28}})
	at := e.produceLedger(ledger.Stream(e.id+"-after-", 3, 30, 1.1, 91))

	_, stop := e.runBridge(e.topic)
	defer stop()
	e.assertLedgers(at, time.Minute) // the partitions moved on

	dead := readAll(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix), 2, 30*time.Second)
	dead = append(dead, readAll(t, dlq.TopicFor(e.topic, dlq.DefaultSuffix), 1, 30*time.Second)...)
	require.Len(t, dead, 3)
	var reasons []string
	for _, m := range dead {
		f, err := dlq.Parse(m)
		require.NoError(t, err)
		assert.Equal(t, dlq.ClassRoute, f.Class, f.Err)
		reasons = append(reasons, f.Err)
	}
	all := strings.Join(reasons, "\n")
	assert.Contains(t, all, "not valid UTF-8 (is the key binary?")
	assert.Contains(t, all, "is 2007 bytes, over Temporal's limit of 1000")
	assert.Contains(t, all, `"event-type" header (the event type) is not valid UTF-8`)
}

// The bridge reads read_committed by default: records of an aborted
// transaction (an eos.Processor's, say) never reach a saga. The aborted and
// the committed records share a key, so a bridge that read the aborted ones
// would apply them first and the ledger would show their offsets.
func TestAbortedTransactionsNeverReachASaga(t *testing.T) {
	e := newEnv(t, 1)
	pc, err := connect.TransactionalProducerConfig(config.Kafka{Version: "3.6.0", ClientID: "e2e-txn"}, 0, e.id+"-txn")
	require.NoError(t, err)
	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, pc)
	require.NoError(t, err)
	defer p.Close()

	key := e.id + "-k"
	require.NoError(t, p.BeginTxn())
	_, err = ledger.Produce(p, e.ledgerTopic, ledger.Stream(key, 1, 3, 1.1, 1)) // seq 1..3 of 3
	require.NoError(t, err)
	require.NoError(t, p.AbortTxn())
	require.NoError(t, p.BeginTxn())
	at, err := ledger.Produce(p, e.ledgerTopic, ledger.Stream(key, 1, 2, 1.1, 2)) // seq 1..2 of 2
	require.NoError(t, err)
	require.NoError(t, p.CommitTxn())

	_, stop := e.runBridge(e.topic)
	defer stop()
	e.assertLedgers(at, time.Minute)
}
