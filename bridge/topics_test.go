package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/config"
)

// A route's topic that does not exist is a mistake in the configuration
// (a typo, or the wrong cluster): the bridge refuses to start, naming the
// topic and its route, and creates nothing, even where the broker would
// create topics on request (Kafka's auto.create.topics.enable defaults to
// true). It created the mistyped topic, with dlq.create_topics its DLQ
// topic too, and then waited for ever on a topic no one writes to; without
// dlq.create_topics it said only that the DLQ topic did not exist.
func TestARouteWhoseTopicDoesNotExistIsRefusedAndNotCreated(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	for _, createDLQ := range []bool{false, true} {
		cfg := config.Config{
			Kafka:        config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g"},
			DLQ:          config.DLQ{CreateTopics: createDLQ},
			Backpressure: config.Backpressure{Backlog: config.Backlog{Disabled: true}},
			Routes: []config.Route{
				{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"},
				{Topic: "paymnets", TypeHeader: "event-type", WorkflowType: "P", WorkflowID: "payment-{key}", TaskQueue: "q"},
			},
		}.WithDefaults()
		b, err := New(cfg, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = b.Run(ctx)
		cancel()
		require.Error(t, err, "dlq.create_topics %v: the bridge ran with a route on a missing topic", createDLQ)
		assert.Contains(t, err.Error(), `routes[1].topic "paymnets" does not exist`, "dlq.create_topics %v", createDLQ)

		admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
		require.NoError(t, err)
		topics, err := admin.ListTopics()
		require.NoError(t, err)
		require.NoError(t, admin.Close())
		assert.NotContains(t, topics, "paymnets", "dlq.create_topics %v: the mistyped topic was created", createDLQ)
		assert.NotContains(t, topics, "paymnets.dlq", "dlq.create_topics %v: its DLQ topic was created", createDLQ)
	}
}

// A route's topic, or its DLQ topic, that the bridge's principal may not
// describe is a missing ACL, not a missing topic: the error says so and
// names the grant, and dlq.create_topics does not claim to create a topic
// that is there. (Kafka leaves such a topic out of the cluster's topic
// list, and the bridge said "does not exist ... create the topic first".)
func TestATopicTheBridgeMayNotDescribeIsAMissingACL(t *testing.T) {
	allow := func(resource kmsg.ACLResourceType, name string, op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: resource, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "admin"),
		kfake.User("SCRAM-SHA-256", "bridge", "secret",
			allow(kmsg.ACLResourceTypeGroup, "g", kmsg.ACLOperationAll),
			allow(kmsg.ACLResourceTypeTopic, "orders", kmsg.ACLOperationAll),
			allow(kmsg.ACLResourceTypeTopic, "payments.dlq", kmsg.ACLOperationAll)),
		kfake.SeedTopics(1, "orders", "orders.dlq", "payments", "payments.dlq"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	for _, tc := range []struct {
		routes []string
		want   string
	}{
		{[]string{"orders", "payments"}, `routes[1].topic "payments": the bridge's principal may not describe it`},
		{[]string{"orders"}, `DLQ topic orders.dlq: the bridge's principal may not describe it`},
	} {
		cfg := config.Config{
			Kafka: config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g",
				SASL: config.SASL{Mechanism: "SCRAM-SHA-256", Username: "bridge", Password: "secret"}},
			DLQ:          config.DLQ{CreateTopics: true},
			Backpressure: config.Backpressure{Backlog: config.Backlog{Disabled: true}},
		}
		for _, topic := range tc.routes {
			cfg.Routes = append(cfg.Routes, config.Route{Topic: topic, TypeHeader: "event-type", WorkflowType: "O", WorkflowID: topic + "-{key}", TaskQueue: "q"})
		}
		b, err := New(cfg.WithDefaults(), Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = b.Run(ctx)
		cancel()
		require.Error(t, err, "routes %v", tc.routes)
		assert.Contains(t, err.Error(), tc.want)
		assert.NotContains(t, err.Error(), "does not exist")
	}
}
