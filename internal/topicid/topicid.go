// Package topicid reads Kafka topic IDs (KIP-516): a topic deleted and
// created again under the same name gets a new ID, and its offsets start
// again, so what is remembered by offset is remembered by ID too.
package topicid

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// Lookup reads the IDs of topics with a Metadata request (v10 and later
// carry them; sarama's client keeps no IDs of its own). A topic the broker
// serves no ID for (older than Kafka 2.8, or the client's version set below
// it) is left out. A topic it answers with an error (one it does not know,
// as a broker whose metadata lags a topic created again answers) is an
// error naming it, with the IDs of the others: taken for one without an
// ID, it left the caller with the ID of the topic's earlier generation.
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
	var errs []error
	for _, tm := range resp.Topics {
		if tm.Err != sarama.ErrNoError {
			errs = append(errs, fmt.Errorf("read the ID of topic %s from %s: %w", tm.Name, broker.Addr(), tm.Err))
			continue
		}
		if tm.Uuid != (sarama.Uuid{}) {
			ids[tm.Name] = tm.Uuid.String()
		}
	}
	return ids, errors.Join(errs...)
}
