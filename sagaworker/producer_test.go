package sagaworker

import (
	"context"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagabridge/sagabridge/config"
)

// The worker's producer, which publishes saga outcomes as well as dead
// letters, takes a record its topic takes, whatever dlq.max_message_bytes
// says: that setting is the DLQ's (DeadLetterer reduces a dead letter over
// it before sending). Set to a small DLQ topic's limit, it capped every
// outcome, and an outcome its topic would take failed the saga step for
// good as OutcomeTooLarge.
func TestTheWorkersProducerTakesRecordsOverTheDLQLimit(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "outcomes"))
	require.NoError(t, err)
	defer cluster.Close()
	k := config.Default().Kafka
	k.Brokers = cluster.ListenAddrs()
	for _, alone := range []bool{false, true} {
		p, err := kafkaProducer(context.Background(), k, 64<<10, "worker", alone)
		require.NoError(t, err)
		_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "outcomes", Value: sarama.ByteEncoder(make([]byte, 100<<10))})
		assert.NoError(t, err, "a 100 KB outcome with dlq.max_message_bytes 64 KiB (alone %v)", alone)
		require.NoError(t, p.Close())
	}
}
