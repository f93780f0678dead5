package saga

import (
	"fmt"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/event"
)

// Produce sends msgs to topic, keyed by order ID with the event type in the
// TypeHeader header, and returns where each order's events landed, in order.
func Produce(p sarama.SyncProducer, topic string, msgs []Message) (map[string][]event.Position, error) {
	at := make(map[string][]event.Position)
	for _, m := range msgs {
		pm := &sarama.ProducerMessage{
			Topic:   topic,
			Key:     sarama.StringEncoder(m.OrderID),
			Value:   sarama.ByteEncoder(m.Value),
			Headers: []sarama.RecordHeader{{Key: []byte(TypeHeader), Value: []byte(m.Type)}},
		}
		part, off, err := p.SendMessage(pm)
		if err != nil {
			return at, fmt.Errorf("produce %s for order %s: %w", m.Type, m.OrderID, err)
		}
		at[m.OrderID] = append(at[m.OrderID], event.Position{Topic: topic, Partition: part, Offset: off})
	}
	return at, nil
}

// ProducerConfig is an idempotent producer config for the demo and tests.
func ProducerConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	return c
}
