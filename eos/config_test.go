package eos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

func validConfig() Config {
	return Config{Brokers: []string{"b:9092"}, Group: "g", Topics: []string{"orders"}, TransactionalIDPrefix: "enrich"}
}

func TestDefaultsApplyAndValidate(t *testing.T) {
	c := validConfig().withDefaults()
	require.NoError(t, c.Validate())
	assert.Equal(t, 500, c.MaxBatch)
	assert.Equal(t, 50*time.Millisecond, c.Linger)
	assert.Equal(t, 5, c.MaxAttempts)
	assert.Equal(t, ".dlq", c.DLQSuffix)
	assert.Equal(t, "3.6.0", c.KafkaVersion)
}

func TestValidateNamesTheField(t *testing.T) {
	cases := map[string]struct {
		edit func(*Config)
		want string
	}{
		"no brokers":        {func(c *Config) { c.Brokers = nil }, "Brokers: at least one broker"},
		"no group":          {func(c *Config) { c.Group = "" }, "Group: is required"},
		"no topics":         {func(c *Config) { c.Topics = nil }, "Topics: at least one input topic"},
		"empty topic":       {func(c *Config) { c.Topics = []string{" "} }, "Topics[0]: is empty"},
		"dlq as input":      {func(c *Config) { c.Topics = []string{"orders.dlq"} }, `Topics[0]: "orders.dlq" is a dead-letter topic`},
		"no prefix":         {func(c *Config) { c.TransactionalIDPrefix = "" }, "TransactionalIDPrefix: is required"},
		"old kafka":         {func(c *Config) { c.KafkaVersion = "2.4.0" }, "KafkaVersion: 2.4.0 is older than 2.5.0"},
		"bad kafka":         {func(c *Config) { c.KafkaVersion = "three" }, "KafkaVersion: "},
		"negative batch":    {func(c *Config) { c.MaxBatch = -1 }, "MaxBatch: must be at least 1"},
		"negative linger":   {func(c *Config) { c.Linger = -time.Second }, "Linger: must not be negative"},
		"zero attempts":     {func(c *Config) { c.MaxAttempts = -2 }, "MaxAttempts: must be at least 1"},
		"inverted backoff":  {func(c *Config) { c.RetryInitial, c.RetryMax = time.Second, time.Millisecond }, "RetryInitial/RetryMax"},
		"short txn timeout": {func(c *Config) { c.TransactionTimeout = 10 * time.Millisecond }, "TransactionTimeout: must be at least 1s"},
		// The hook runs last; what it undoes of exactly-once is refused.
		// (It was applied silently: read_uncommitted let a new owner start
		// below a commit in flight.)
		"hook reads uncommitted": {func(c *Config) {
			c.Sarama = func(s *sarama.Config) { s.Consumer.IsolationLevel = sarama.ReadUncommitted }
		}, "Sarama: must not change Consumer.IsolationLevel"},
		"hook cooperative": {func(c *Config) {
			c.Sarama = func(s *sarama.Config) {
				s.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
			}
		}, "Sarama: must not use the cooperative-sticky rebalance strategy"},
		// Ways past the checks above: the deprecated strategy field,
		// which sarama prefers over GroupStrategies, and a version below
		// KIP-447's, with which the commits carry no generation (no
		// fencing of a stale member) and the offset fetch no
		// require_stable. (Both were accepted.)
		"hook cooperative, deprecated field": {func(c *Config) {
			c.Sarama = func(s *sarama.Config) {
				s.Consumer.Group.Rebalance.Strategy = sarama.NewBalanceStrategyCooperativeSticky()
			}
		}, "Sarama: must not use the cooperative-sticky rebalance strategy"},
		// sarama goes by what a strategy declares, not by its name: one
		// named otherwise that declares cooperative rebalancing passed.
		"hook cooperative under another name": {func(c *Config) {
			c.Sarama = func(s *sarama.Config) {
				s.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{renamed{sarama.NewBalanceStrategyCooperativeSticky().(sarama.RebalanceProtocolBalanceStrategy)}}
			}
		}, "Sarama: must not use the my-sticky rebalance strategy"},
		"hook old version": {func(c *Config) { c.Sarama = func(s *sarama.Config) { s.Version = sarama.V2_4_0_0 } },
			"Sarama: must not set Version below 2.5.0"},
		// Topic names Kafka refuses are named here: a DLQ suffix with a
		// slash had every dead letter refused (INVALID_TOPIC_EXCEPTION),
		// retried for ever, the partition stuck.
		"bad topic":      {func(c *Config) { c.Topics = []string{"my orders"} }, "Topics[0]: "},
		"bad dlq suffix": {func(c *Config) { c.DLQSuffix = "/dlq" }, "DLQSuffix: "},
		"dlq name too long": {func(c *Config) { c.Topics = []string{strings.Repeat("t", 247)} },
			"Topics[0]: its DLQ topic"},
		// A fetch cap lets sarama skip a record larger than it
		// (ErrMessageTooLarge, offset+1): the next transaction committed
		// past it, neither processed nor dead-lettered. (Accepted.)
		"hook fetch max": {func(c *Config) { c.Sarama = func(s *sarama.Config) { s.Consumer.Fetch.Max = 1 << 20 } },
			"Sarama: must not set Consumer.Fetch.Max"},
		// A claim revoked finishes its record (up to half the
		// TransactionTimeout) and commits; the coordinator waits the
		// RebalanceTimeout for it, then the new owner fences it and the
		// whole Processor stops. (Accepted: a 6s function, 20s and 2s.)
		"rebalance shorter than a record": {func(c *Config) { c.TransactionTimeout, c.RebalanceTimeout = 20*time.Second, 2*time.Second },
			"RebalanceTimeout: must be at least TransactionTimeout (20s), not 2s"},
		"hook shortens the rebalance": {func(c *Config) {
			c.Sarama = func(s *sarama.Config) { s.Consumer.Group.Rebalance.Timeout = time.Second }
		},
			"Sarama: must not set Consumer.Group.Rebalance.Timeout (1s) below TransactionTimeout (10s)"},
		"hook not idempotent": {func(c *Config) { c.Sarama = func(s *sarama.Config) { s.Producer.Idempotent = false } }, "Sarama: must not turn off Producer.Idempotent"},
		// Every producer setting the hook undid is named, not the first
		// only (a user fixed one and met the next on the next start).
		"hook acks and idempotence": {func(c *Config) {
			c.Sarama = func(s *sarama.Config) { s.Producer.Idempotent, s.Producer.RequiredAcks = false, sarama.WaitForLocal }
		}, "Sarama: must not turn off Producer.Idempotent\neos config Sarama: must not change Producer.RequiredAcks"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := validConfig()
			tc.edit(&c)
			err := c.withDefaults().Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), "eos config "+tc.want)
		})
	}
}

func TestNewRejectsBadConfigAndNilFunc(t *testing.T) {
	_, err := New(Config{}, func(context.Context, *sarama.ConsumerMessage) ([]Output, error) { return nil, nil }, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Brokers")
	_, err = New(validConfig(), nil, nil)
	require.ErrorContains(t, err, "Func is nil")
}

func TestProducerConfigIsTransactional(t *testing.T) {
	c := validConfig().withDefaults().producerConfig("enrich-g-orders-0")
	assert.Equal(t, "enrich-g-orders-0", c.Producer.Transaction.ID)
	assert.True(t, c.Producer.Idempotent)
	assert.Equal(t, sarama.WaitForAll, c.Producer.RequiredAcks)
	assert.Equal(t, 1, c.Net.MaxOpenRequests)
	require.NoError(t, c.Validate(), "sarama accepts it")

	cc := validConfig().withDefaults().consumerConfig()
	assert.Equal(t, sarama.ReadCommitted, cc.Consumer.IsolationLevel)
	assert.False(t, cc.Consumer.Offsets.AutoCommit.Enable, "offsets move only inside transactions")
	require.Len(t, cc.Consumer.Group.Rebalance.GroupStrategies, 1)
	assert.Equal(t, sarama.StickyBalanceStrategyName, cc.Consumer.Group.Rebalance.GroupStrategies[0].Name(),
		"eager: every rebalance starts a new session, so the generation in each transaction is current")
	require.NoError(t, cc.Validate(), "sarama accepts it")
	assert.False(t, cc.Metadata.AllowAutoTopicCreation, "a topic misnamed in Topics is not created, the Processor waiting on it for ever")
	assert.False(t, c.Metadata.Full, "each partition's producer holds only its topics' metadata, not the cluster's (8 held 8.1 MiB on 4,800 partitions)")
	assert.True(t, c.Metadata.AllowAutoTopicCreation, "output and DLQ topics the broker creates on first use")
}

func TestPermanentOutageAndFencedClassification(t *testing.T) {
	base := errors.New("bad bytes")
	assert.Nil(t, Permanent(nil))
	assert.True(t, IsPermanent(fmt.Errorf("wrapped: %w", Permanent(base))))
	assert.ErrorIs(t, Permanent(base), base)
	assert.False(t, IsPermanent(base))

	assert.Nil(t, Outage(nil))
	assert.True(t, IsOutage(fmt.Errorf("wrapped: %w", Outage(base))))
	assert.ErrorIs(t, Outage(base), base)
	assert.False(t, IsOutage(base))
	assert.False(t, IsOutage(Permanent(base)))
	assert.True(t, IsOutage(fmt.Errorf("signal: %w", serviceerror.NewPermissionDenied("no", ""))), "Temporal's own error types")
	assert.True(t, IsOutage(serviceerror.NewUnavailable("down")))
	assert.False(t, IsOutage(serviceerror.NewInvalidArgument("bad")))
	assert.False(t, IsOutage(Permanent(sarama.ErrTopicAuthorizationFailed)), "the function said retrying cannot help")
	// The function's own access and reach, as other clients report them.
	// (Each was taken for the record's fault, and a mistyped namespace or a
	// revoked ACL dead-lettered every record after MaxAttempts.)
	for name, err := range map[string]error{
		"namespace not found":     serviceerror.NewNamespaceNotFound("orders"),
		"namespace not active":    serviceerror.NewNamespaceNotActive("orders", "a", "b"),
		"namespace invalid state": serviceerror.NewNamespaceInvalidState("orders", 0, nil),
		"Temporal overloaded":     serviceerror.NewResourceExhausted(0, "rate limit"),
		"ACL in a producer's send errors": fmt.Errorf("publish: %w",
			sarama.ProducerErrors{{Msg: &sarama.ProducerMessage{Topic: "prices"}, Err: sarama.ErrTopicAuthorizationFailed}}),
		"SASL mechanism":     sarama.ErrUnsupportedSASLMechanism,
		"SASL state":         sarama.ErrIllegalSASLState,
		"not enough ISR":     sarama.ErrNotEnoughReplicas,
		"not enough ISR yet": sarama.ErrNotEnoughReplicasAfterAppend,
		"no leader":          sarama.ErrLeaderNotAvailable,
		"leader moved":       sarama.ErrNotLeaderForPartition,
		"broker down":        sarama.ErrBrokerNotAvailable,
	} {
		assert.True(t, IsOutage(err), "%s: %v", name, err)
	}
	// gRPC's own limit on a message: the record made the request too large.
	assert.False(t, IsOutage(status.Error(codes.ResourceExhausted, "grpc: trying to send message larger than max (5242880 vs. 4194304)")))

	assert.True(t, isFenced(fmt.Errorf("send: %w", sarama.ErrProducerFenced)))
	assert.True(t, isFenced(kafkatxn.SendErrors(sarama.ProducerErrors{{Err: sarama.ErrInvalidProducerEpoch}})))
	assert.False(t, isFenced(sarama.ErrOutOfBrokers))
	assert.True(t, isStaleMember(fmt.Errorf("offsets: %w", sarama.ErrIllegalGeneration)))
	assert.False(t, isStaleMember(sarama.ErrProducerFenced))
}

func TestRunTwiceIsAnError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := validConfig()
	cfg.Brokers = []string{l.Addr().String()}
	require.NoError(t, l.Close()) // refused at once
	p, err := New(cfg, func(context.Context, *sarama.ConsumerMessage) ([]Output, error) { return nil, nil }, nil)
	require.NoError(t, err)
	err = p.Run(t.Context())
	require.Error(t, err, "no broker")
	assert.NotErrorIs(t, err, ErrAlreadyRun)
	assert.ErrorIs(t, p.Run(t.Context()), ErrAlreadyRun)
}

// renamed is a cooperative strategy under another name.
type renamed struct {
	sarama.RebalanceProtocolBalanceStrategy
}

func (renamed) Name() string { return "my-sticky" }

// An eager strategy whose name says cooperative is not refused: sarama
// rebalances eagerly with it.
func TestAnEagerStrategyNamedCooperativeIsAccepted(t *testing.T) {
	c := validConfig()
	c.Sarama = func(s *sarama.Config) {
		s.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{named{sarama.NewBalanceStrategyRange(), "not-cooperative"}}
	}
	require.NoError(t, c.withDefaults().Validate())
}

// named is a strategy under another name.
type named struct {
	sarama.BalanceStrategy
	name string
}

func (n named) Name() string { return n.name }
