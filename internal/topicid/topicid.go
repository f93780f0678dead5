// Package topicid reads Kafka topic IDs (KIP-516): a topic deleted and
// created again under the same name gets a new ID, and its offsets start
// again, so what is remembered by offset is remembered by ID too.
package topicid

import (
	"fmt"

	"github.com/IBM/sarama"
)

// Lookup reads the IDs of topics with a Metadata request (v10 and later
// carry them; sarama's client keeps no IDs of its own). A topic the broker
// serves no ID for (older than Kafka 2.8, or the client's version set below
// it) or does not know is left out.
func Lookup(client sarama.Client, topics []string) (map[string]string, error) {
	broker := client.LeastLoadedBroker()
	if broker == nil {
		return nil, fmt.Errorf("read topic IDs: no broker available")
	}
	if err := broker.Open(client.Config()); err != nil && err != sarama.ErrAlreadyConnected {
		return nil, fmt.Errorf("read topic IDs: connect to %s: %w", broker.Addr(), err)
	}
	resp, err := broker.GetMetadata(sarama.NewMetadataRequest(client.Config().Version, topics))
	if err != nil {
		return nil, fmt.Errorf("read topic IDs from %s: %w", broker.Addr(), err)
	}
	ids := make(map[string]string, len(resp.Topics))
	for _, tm := range resp.Topics {
		if tm.Err != sarama.ErrNoError || tm.Uuid == (sarama.Uuid{}) {
			continue
		}
		ids[tm.Name] = tm.Uuid.String()
	}
	return ids, nil
}
