package eos

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/topicname"
)

// Config configures a Processor. Zero fields take the defaults named in
// their comments (all set in one place, defaultConfig); Validate names the
// field of every error.
type Config struct {
	// Brokers are the Kafka bootstrap brokers. Required.
	Brokers []string
	// Group is the consumer group. Required.
	Group string
	// Topics are the input topics. Required.
	Topics []string
	// TransactionalIDPrefix starts every transactional ID (see
	// TransactionalID). It must stay the same across restarts and
	// deployments of the same pipeline, or a restarted instance will not
	// fence its predecessor; and differ between pipelines, since the ID
	// joins group and topic with '-' ("etl", "orders", "eu-payments" and
	// "etl", "orders-eu", "payments" make the same ID, and the two would
	// fence each other in turn). Required.
	TransactionalIDPrefix string
	// KafkaVersion is the protocol version to speak. Optional, default
	// "3.6.0"; it must be 2.5.0 or newer for group-metadata fencing.
	KafkaVersion string
	// ClientID names the client to the brokers. Optional, default
	// "sagabridge-eos".
	ClientID string
	// MaxBatch is how many records one transaction carries at most.
	// Optional, default 500.
	MaxBatch int
	// Linger is how long a batch waits for more records after its first.
	// Optional, default 50ms.
	Linger time.Duration
	// MaxAttempts is how many times the function may fail on one record
	// before the record is dead-lettered. Optional, default 5.
	MaxAttempts int
	// RetryInitial and RetryMax bound the jittered exponential backoff
	// between attempts. Optional, defaults 100ms and 5s.
	RetryInitial, RetryMax time.Duration
	// DLQSuffix names the dead-letter topic of each input topic.
	// Optional, default dlq.DefaultSuffix (".dlq").
	DLQSuffix string
	// SessionTimeout and RebalanceTimeout are the consumer group's. The
	// broker refuses a SessionTimeout outside its
	// group.min/max.session.timeout.ms (6s to 30m by default), and Run
	// then stops with an error naming it. RebalanceTimeout must be at
	// least TransactionTimeout: a revoked claim finishes its record and
	// commits before the rebalance goes on. Optional, defaults 10s and 20s.
	SessionTimeout, RebalanceTimeout time.Duration
	// TransactionTimeout is how long the broker lets one transaction stay
	// open before it aborts it and fences its producer (the producer's
	// transaction.timeout.ms; the broker refuses one over its
	// transaction.max.timeout.ms, 15 minutes by default). A transaction
	// commits early, with the records processed so far, once it has been
	// open half this long, so a slow function does not outlive it; the
	// function must take less than half of it for one record (raise
	// RebalanceTimeout with it). It also
	// bounds how long a crash between a transaction's offsets and its
	// commit stalls the partition's next owner, whose group join reads the
	// offsets (require_stable) before its producer could abort the
	// transaction. Optional, default 10s (Kafka Streams' for exactly-once;
	// the producer's own default, 60s, stalled a new owner 63 s).
	TransactionTimeout time.Duration
	// StartWarnAfter is how long the start of a partition's transactional
	// producer (its InitProducerId, which fences the partition's earlier
	// producer) may go unanswered before it is logged as a warning, and
	// again each time as long again passes. Optional, default 15s.
	StartWarnAfter time.Duration
	// Sarama, when set, is called on the sarama configuration after the
	// Processor's own settings, for TLS, SASL and other connection settings.
	// It must not change the transactional or isolation settings, the
	// rebalance strategy, or lower Version below 2.5.0 (Validate refuses a
	// hook that does, naming the setting). It is called from every claimed
	// partition's goroutine at once: it must be safe for concurrent use.
	// Optional.
	Sarama func(*sarama.Config)
}

func defaultConfig() Config {
	return Config{
		KafkaVersion: "3.6.0", ClientID: "sagabridge-eos",
		MaxBatch: 500, Linger: 50 * time.Millisecond, MaxAttempts: 5,
		RetryInitial: 100 * time.Millisecond, RetryMax: 5 * time.Second,
		DLQSuffix:      dlq.DefaultSuffix,
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 20 * time.Second,
		TransactionTimeout: 10 * time.Second, StartWarnAfter: 15 * time.Second,
	}
}

// withDefaults fills every zero field from defaultConfig.
func (c Config) withDefaults() Config {
	d := defaultConfig()
	fill := func(dst *string, def string) {
		if *dst == "" {
			*dst = def
		}
	}
	fillInt := func(dst *int, def int) {
		if *dst == 0 {
			*dst = def
		}
	}
	fillDur := func(dst *time.Duration, def time.Duration) {
		if *dst == 0 {
			*dst = def
		}
	}
	fill(&c.KafkaVersion, d.KafkaVersion)
	fill(&c.ClientID, d.ClientID)
	fill(&c.DLQSuffix, d.DLQSuffix)
	fillInt(&c.MaxBatch, d.MaxBatch)
	fillInt(&c.MaxAttempts, d.MaxAttempts)
	fillDur(&c.Linger, d.Linger)
	fillDur(&c.RetryInitial, d.RetryInitial)
	fillDur(&c.RetryMax, d.RetryMax)
	fillDur(&c.SessionTimeout, d.SessionTimeout)
	fillDur(&c.RebalanceTimeout, d.RebalanceTimeout)
	fillDur(&c.TransactionTimeout, d.TransactionTimeout)
	fillDur(&c.StartWarnAfter, d.StartWarnAfter)
	return c
}

// Validate checks a configuration after defaults; every error names its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("eos config %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Brokers) == 0 {
		bad("Brokers", "at least one broker is required")
	}
	if c.Group == "" {
		bad("Group", "is required")
	}
	if len(c.Topics) == 0 {
		bad("Topics", "at least one input topic is required")
	}
	suffixOK := true
	if err := topicname.Check("t" + c.DLQSuffix); err != nil {
		bad("DLQSuffix", "%q makes no Kafka topic name: letters, digits, '.', '_' and '-' only", c.DLQSuffix)
		suffixOK = false
	}
	for i, t := range c.Topics {
		if strings.TrimSpace(t) == "" {
			bad(fmt.Sprintf("Topics[%d]", i), "is empty")
		} else if err := topicname.Check(t); err != nil {
			bad(fmt.Sprintf("Topics[%d]", i), "%v", err)
		} else if d := t + c.DLQSuffix; suffixOK && len(d) > topicname.MaxLen {
			bad(fmt.Sprintf("Topics[%d]", i), "its DLQ topic %s is longer than Kafka's %d characters", d, topicname.MaxLen)
		}
		if strings.HasSuffix(t, c.DLQSuffix) {
			bad(fmt.Sprintf("Topics[%d]", i), "%q is a dead-letter topic (suffix %q); consuming it would dead-letter into %q", t, c.DLQSuffix, t+c.DLQSuffix)
		}
	}
	if c.TransactionalIDPrefix == "" {
		bad("TransactionalIDPrefix", "is required, and must stay the same across restarts")
	}
	if v, err := sarama.ParseKafkaVersion(c.KafkaVersion); err != nil {
		bad("KafkaVersion", "%v", err)
	} else if !v.IsAtLeast(sarama.V2_5_0_0) {
		bad("KafkaVersion", "%s is older than 2.5.0, which group-metadata fencing (KIP-447) needs", c.KafkaVersion)
	}
	if c.MaxBatch < 1 {
		bad("MaxBatch", "must be at least 1, not %d", c.MaxBatch)
	}
	if c.Linger < 0 {
		bad("Linger", "must not be negative")
	}
	if c.MaxAttempts < 1 {
		bad("MaxAttempts", "must be at least 1, not %d", c.MaxAttempts)
	}
	if c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		bad("RetryInitial/RetryMax", "need 0 < RetryInitial <= RetryMax, got %s and %s", c.RetryInitial, c.RetryMax)
	}
	if c.TransactionTimeout < time.Second {
		bad("TransactionTimeout", "must be at least 1s, not %s", c.TransactionTimeout)
	}
	if c.StartWarnAfter < 0 {
		bad("StartWarnAfter", "must not be negative")
	}
	if c.SessionTimeout <= 0 || c.RebalanceTimeout <= 0 {
		bad("SessionTimeout/RebalanceTimeout", "must be positive")
	} else if c.RebalanceTimeout < c.TransactionTimeout {
		// A claim revoked finishes the record under way (up to half the
		// TransactionTimeout) and commits before it lets go; a coordinator
		// that stops waiting first drops the member, and the new owner's
		// start fences it, which stops the Processor.
		bad("RebalanceTimeout", "must be at least TransactionTimeout (%s), not %s: a revoked claim finishes its record (up to half of it) and commits before the rebalance may go on",
			c.TransactionTimeout, c.RebalanceTimeout)
	}
	if c.Sarama != nil {
		c.checkSarama(func(format string, args ...any) { bad("Sarama", format, args...) })
	}
	return errors.Join(errs...)
}

// checkSarama reports what the Sarama hook changed that exactly-once needs
// as the Processor set it.
func (c Config) checkSarama(bad func(format string, args ...any)) {
	cc := c.consumerConfig()
	if cc.Consumer.IsolationLevel != sarama.ReadCommitted {
		bad("must not change Consumer.IsolationLevel from ReadCommitted: a new owner would then fetch its offsets without require_stable and could start below a commit in flight")
	}
	if rt := cc.Consumer.Group.Rebalance.Timeout; rt < c.TransactionTimeout {
		bad("must not set Consumer.Group.Rebalance.Timeout (%s) below TransactionTimeout (%s): a revoked claim finishes its record and commits before the rebalance may go on", rt, c.TransactionTimeout)
	}
	if cc.Consumer.Fetch.Max != 0 {
		bad("must not set Consumer.Fetch.Max (%d): sarama skips a record larger than it (ErrMessageTooLarge), and the next transaction would commit past it, neither processed nor dead-lettered", cc.Consumer.Fetch.Max)
	}
	if cc.Consumer.Offsets.AutoCommit.Enable {
		bad("must not enable Consumer.Offsets.AutoCommit: offsets move only inside transactions")
	}
	strategies := cc.Consumer.Group.Rebalance.GroupStrategies
	if st := cc.Consumer.Group.Rebalance.Strategy; st != nil { //nolint:staticcheck // sarama uses the deprecated field alone when set
		strategies = []sarama.BalanceStrategy{st}
	}
	// sarama rebalances cooperatively when every strategy declares it can
	// (sarama.RebalanceProtocolBalanceStrategy), whatever their names.
	cooperative := len(strategies) > 0
	var names []string
	for _, st := range strategies {
		names = append(names, st.Name())
		rp, ok := st.(sarama.RebalanceProtocolBalanceStrategy)
		cooperative = cooperative && ok && slices.Contains(rp.SupportedProtocols(), sarama.RebalanceProtocolCooperative)
	}
	if cooperative {
		bad("must not use the %s rebalance strategy: with it sarama rebalances cooperatively, and the Processor needs eager rebalancing (a member keeping its claims across generations has its transactional commits rejected as stale)", strings.Join(names, ", "))
	}
	if v := cc.Version; !v.IsAtLeast(sarama.V2_5_0_0) {
		bad("must not set Version below 2.5.0 (%s): with it the transactions' offset commits carry no group generation, so a stale member is not fenced (KIP-447), and a new owner's offset fetch is not require_stable", v)
	}
	const id = "check"
	pc := c.producerConfig(id)
	if !pc.Producer.Idempotent {
		bad("must not turn off Producer.Idempotent")
	}
	if pc.Producer.RequiredAcks != sarama.WaitForAll {
		bad("must not change Producer.RequiredAcks from WaitForAll")
	}
	if pc.Producer.Transaction.ID != id {
		bad("must not set Producer.Transaction.ID: it is one per partition, from TransactionalIDPrefix")
	}
	if pc.Net.MaxOpenRequests != 1 {
		bad("must not change Net.MaxOpenRequests from 1 (idempotent ordering)")
	}
}

// consumerConfig is the sarama configuration of the consumer group.
func (c Config) consumerConfig() *sarama.Config {
	s := c.base()
	s.Consumer.Return.Errors = true
	s.Consumer.IsolationLevel = sarama.ReadCommitted
	s.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Offsets move only inside transactions; sarama must never commit.
	s.Consumer.Offsets.AutoCommit.Enable = false
	s.Consumer.Group.Session.Timeout = c.SessionTimeout
	s.Consumer.Group.Heartbeat.Interval = c.SessionTimeout / 3
	s.Consumer.Group.Rebalance.Timeout = c.RebalanceTimeout
	// Eager (stop-the-world) rebalancing, on purpose: every rebalance ends
	// the session, so the generation a claim's transactions carry
	// (KIP-447) is always current. With cooperative rebalancing a member
	// keeps its claims across generations, and its offset commits would
	// be rejected as stale while it still owns the partition.
	s.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	// An input topic misnamed in Topics is reported missing, not created
	// empty (the Processor waited on it for ever). The producers still
	// ask for theirs: output and DLQ topics a broker creates on first
	// use (auto.create.topics.enable) are created.
	s.Metadata.AllowAutoTopicCreation = false
	if c.Sarama != nil {
		c.Sarama(s)
	}
	return s
}

// producerConfig is the sarama configuration of the transactional producer
// with ID txnID.
func (c Config) producerConfig(txnID string) *sarama.Config {
	s := c.base()
	s.Producer.Idempotent = true
	s.Producer.RequiredAcks = sarama.WaitForAll
	s.Producer.Return.Successes = true
	s.Producer.Return.Errors = true
	s.Producer.Transaction.ID = txnID
	s.Producer.Transaction.Retry.Backoff = 50 * time.Millisecond
	s.Producer.Transaction.Timeout = c.TransactionTimeout
	s.Net.MaxOpenRequests = 1
	// Every claimed partition has its own producer: each holds the
	// metadata of the topics it writes, not the whole cluster's (8
	// producers held 8.1 MiB on a 4,800-partition cluster).
	s.Metadata.Full = false
	if c.Sarama != nil {
		c.Sarama(s)
	}
	return s
}

func (c Config) base() *sarama.Config {
	s := sarama.NewConfig()
	s.Version, _ = sarama.ParseKafkaVersion(c.KafkaVersion) // checked by Validate
	s.ClientID = c.ClientID
	return s
}
