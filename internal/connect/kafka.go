package connect

import (
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/config"
)

// ChannelBufferSize is how many fetched records sarama buffers per claimed
// partition; kept small because they stay in memory while a partition is
// paused, and a claim counts them in its in-flight budget as it drains
// them to notice a revocation.
const ChannelBufferSize = 64

// SaramaConfig builds the consumer group's client configuration.
//
// Offsets are auto-committed every second, but only offsets the bridge has
// marked, and it marks a record only after Temporal accepted it or the DLQ
// holds it. Rebalancing is cooperative-sticky, so partitions that do not move
// keep flowing during a rebalance.
func SaramaConfig(k config.Kafka) (*sarama.Config, error) {
	v, err := sarama.ParseKafkaVersion(k.Version)
	if err != nil {
		return nil, fmt.Errorf("kafka.version: %w", err)
	}
	c := sarama.NewConfig()
	c.Version = v
	c.ClientID = k.ClientID
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.AutoCommit.Enable = true
	c.Consumer.Offsets.AutoCommit.Interval = time.Second
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	if k.InitialOffset == "newest" {
		c.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	if k.IsolationLevel == config.ReadUncommitted {
		c.Consumer.IsolationLevel = sarama.ReadUncommitted
	}
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	c.Consumer.Group.Rebalance.Timeout = config.RebalanceTimeout
	c.ChannelBufferSize = ChannelBufferSize
	// Record values are slices of the fetch response they came in, so a
	// held record pins its whole response. 256 KiB per partition (sarama's
	// default is 1 MiB) keeps what the in-flight budget does not count
	// small; at these sizes a fetch still carries hundreds of records.
	c.Consumer.Fetch.Default = 256 << 10
	if err := Secure(c, k); err != nil {
		return nil, err
	}
	return c, nil
}

// TransactionalProducerConfig builds the configuration of the producer
// that commits one partition's offsets and DLQ records in transactions
// (dlq.transactional), with transactional ID txnID.
func TransactionalProducerConfig(k config.Kafka, txnID string) (*sarama.Config, error) {
	c, err := DLQProducerConfig(k)
	if err != nil {
		return nil, err
	}
	c.Producer.Transaction.ID = txnID
	c.Producer.Transaction.Retry.Backoff = 50 * time.Millisecond
	return c, nil
}

// DLQProducerConfig builds the configuration of the producer that writes
// DLQ records: idempotent and acknowledged by all in-sync replicas, so a
// record the bridge commits past is durably in the DLQ exactly once.
func DLQProducerConfig(k config.Kafka) (*sarama.Config, error) {
	c, err := SaramaConfig(k)
	if err != nil {
		return nil, err
	}
	c.ClientID = k.ClientID + "-dlq"
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 10
	c.Net.MaxOpenRequests = 1
	return c, nil
}
