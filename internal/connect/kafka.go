package connect

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
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
	if k.ConnectTimeout > 0 {
		c.Net.DialTimeout = k.ConnectTimeout
	}
	// A route's topic that does not exist is refused at start (a typo
	// would otherwise be created by a broker with Kafka's default
	// auto.create.topics.enable, and consumed for ever in vain); the
	// consumer's metadata requests never create one either.
	c.Metadata.AllowAutoTopicCreation = false
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
	c.Consumer.Group.InstanceId = k.InstanceID // static membership when set (KIP-345)
	c.ChannelBufferSize = ChannelBufferSize
	// What a partition fetched before it was paused still arrives (the
	// claim must be read to notice a revocation), so the in-flight budget
	// overshoots by up to one fetch per partition. With records of 40
	// bytes, 256 KiB per partition (sarama's default is 1 MiB) is ~4,000
	// records: 8 partitions held 42,000 against a budget of 20,000 and the
	// bridge's RSS reached 76-88 MiB (make membench ARGS='-records 100000
	// -size 40 -keys 1000'); 64 KiB held at most 28,000 and 61 MiB. A
	// fetch still carries about a thousand such records, or 60 of 1 KB.
	// Consumer.Fetch.Max stays 0: sarama grows a partition's fetch for a
	// record larger than this, and at a cap it would skip the record.
	c.Consumer.Fetch.Default = 64 << 10
	if err := Secure(c, k); err != nil {
		return nil, err
	}
	return c, nil
}

// TransactionalProducerConfig builds the configuration of the producer
// that commits one partition's offsets and DLQ records in transactions
// (dlq.transactional), with transactional ID txnID.
func TransactionalProducerConfig(k config.Kafka, maxMessageBytes int, txnID string) (*sarama.Config, error) {
	c, err := DLQProducerConfig(k, maxMessageBytes)
	if err != nil {
		return nil, err
	}
	c.Producer.Transaction.ID = txnID
	c.Producer.Transaction.Retry.Backoff = 50 * time.Millisecond
	c.Producer.Transaction.Timeout = TransactionTimeout
	// Only the metadata of the topics written to: each claimed partition
	// has a producer on a client of its own, and sarama's default (every
	// topic of the cluster, refreshed every 10 minutes) held 1.8 MiB per
	// partition on a cluster of 9,600 partitions
	// (TestAProducerHoldsOnlyTheMetadataOfItsTopics). Not for the other
	// producers: without a first full fetch, an idempotent producer's
	// InitProducerId goes to the first seed broker on every try, and fails
	// while that broker is down; a transactional one asks its coordinator,
	// found through any live broker.
	c.Metadata.Full = false
	return c, nil
}

// TransactionTimeout is how long the broker lets one of the bridge's
// transactions stay open before it aborts it. A transaction here lives for
// one commit (begin, the DLQ records, the offset, commit: milliseconds),
// but one left open by a member that crashed mid-commit keeps its
// partition's offsets unstable, and the next owner, which reads
// read_committed and so fetches offsets with require_stable (KIP-447),
// cannot start on that partition until the broker aborts it. sarama's
// default is a minute; a crash then stalled the partition that long.
const TransactionTimeout = 10 * time.Second

// DLQProducerConfig builds the configuration of the producer that writes
// DLQ records: idempotent and acknowledged by all in-sync replicas, so a
// record the bridge commits past is durably in the DLQ exactly once, and
// no larger than maxMessageBytes (dlq.max_message_bytes; 0 keeps sarama's
// 1 MiB).
func DLQProducerConfig(k config.Kafka, maxMessageBytes int) (*sarama.Config, error) {
	c, err := SaramaConfig(k)
	if err != nil {
		return nil, err
	}
	c.ClientID = k.ClientID + "-dlq"
	if maxMessageBytes > 0 {
		c.Producer.MaxMessageBytes = maxMessageBytes
	}
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 10
	c.Net.MaxOpenRequests = 1
	return c, nil
}

// Client starts a sarama client for k's brokers, or fails within
// kafka.connect_timeout (sarama alone waits minutes on a broker that
// accepts connections and never answers), or when ctx ends.
func Client(ctx context.Context, k config.Kafka, c *sarama.Config) (sarama.Client, error) {
	return within(ctx, k, func() (sarama.Client, error) { return sarama.NewClient(k.Brokers, c) })
}

// SyncProducer starts a sarama SyncProducer for k's brokers, or fails
// within kafka.connect_timeout, or when ctx ends.
func SyncProducer(ctx context.Context, k config.Kafka, c *sarama.Config) (sarama.SyncProducer, error) {
	return within(ctx, k, func() (sarama.SyncProducer, error) { return sarama.NewSyncProducer(k.Brokers, c) })
}

// TxnStarter starts the transactional producers of one transactional ID
// (kafkatxn.NewProducer, each on a client of its own), one at a time, each
// start given up on after kafka.connect_timeout: a coordinator that takes
// InitProducerId and never answers would hold a start for a read timeout
// per try, fifty tries. A start given up on goes on, and its
// InitProducerId, answered later, bumps the ID's epoch: a producer started
// meanwhile would be fenced by it, so the next Start waits for that start
// first, and takes its producer when it gets through then; one that got
// through before the next Start is closed instead, since another owner
// may have started the ID since. The zero value is ready to use; safe for
// concurrent use.
type TxnStarter struct {
	mu      sync.Mutex
	pending chan startResult // the start last given up on; nil when none
}

// startResult is the end of one start.
type startResult struct {
	p   sarama.SyncProducer
	err error
}

// Start returns a started transactional producer configured by c, or an
// error within kafka.connect_timeout (twice that when it first waits for a
// start given up on before).
func (s *TxnStarter) Start(k config.Kafka, c *sarama.Config) (sarama.SyncProducer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	timeout := connectTimeout(k)
	if s.pending != nil {
		select {
		case r := <-s.pending:
			// It answered before this start: another owner of the
			// partition may have started the ID since, fencing it. Its
			// answer is in; a new start races nothing.
			s.pending = nil
			if r.err == nil {
				_ = r.p.Close()
			}
		default:
		}
	}
	if s.pending != nil {
		t := time.NewTimer(timeout)
		select {
		case r := <-s.pending:
			t.Stop()
			s.pending = nil
			if r.err == nil {
				return r.p, nil // it got through: the ID's newest epoch
			}
		case <-t.C:
			return nil, KafkaError(k, fmt.Errorf("an earlier start of transactional producer %s is still waiting for its InitProducerId answer; "+
				"a new start would race it, and the later answer would fence the other producer", c.Producer.Transaction.ID))
		}
	}
	done := make(chan startResult, 1)
	go func() {
		p, err := kafkatxn.NewProducer(k.Brokers, c)
		done <- startResult{p, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, KafkaError(k, r.err)
		}
		return r.p, nil
	case <-t.C:
		s.pending = done
		return nil, KafkaError(k, fmt.Errorf("no answer within %s (kafka.connect_timeout)", timeout))
	}
}

// Close lets go of a start given up on: its producer, if it gets
// through, is closed.
func (s *TxnStarter) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if done := s.pending; done != nil {
		s.pending = nil
		go func() {
			if r := <-done; r.err == nil {
				_ = r.p.Close()
			}
		}()
	}
}

// connectTimeout is k's kafka.connect_timeout, 15 s when unset.
func connectTimeout(k config.Kafka) time.Duration {
	if k.ConnectTimeout <= 0 {
		return 15 * time.Second
	}
	return k.ConnectTimeout
}

// within runs open, giving up after k.ConnectTimeout with an error that
// names the brokers, or when ctx ends with one that wraps ctx's (a stop
// during the start waited out the timeout, and was then a failure); what
// open returns later is closed.
func within[T io.Closer](ctx context.Context, k config.Kafka, open func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := open()
		done <- result{v, err}
	}()
	timeout := connectTimeout(k)
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case r := <-done:
		if r.err != nil {
			return r.v, KafkaError(k, r.err)
		}
		return r.v, nil
	case <-t.C:
		err = fmt.Errorf("no answer within %s (kafka.connect_timeout)", timeout)
	case <-ctx.Done():
		err = fmt.Errorf("connect to Kafka %v: stopped: %w", k.Brokers, ctx.Err()) // not KafkaError's hint to check the credentials
	}
	go func() {
		if r := <-done; r.err == nil {
			_ = r.v.Close()
		}
	}()
	var zero T
	if ctx.Err() != nil {
		return zero, err
	}
	return zero, KafkaError(k, err)
}
