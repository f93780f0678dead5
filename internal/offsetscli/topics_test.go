package offsetscli

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// A mistyped -topic, on a broker that creates topics on first use (Kafka's
// default), is refused with an error that names it, and no topic is
// created: neither show nor move may write anywhere else than asked.
// (sarama asked for the topic's metadata with auto-creation allowed: the
// broker created "ordres", move committed its partitions, printed that it
// moved them and exited 0, and "orders" was left as it was.)
func TestAMistypedTopicIsRefusedNotCreated(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]
	for _, args := range [][]string{
		{"show", "-brokers", brokers, "-group", "g", "-topic", "ordres"},
		{"move", "-brokers", brokers, "-group", "g", "-topic", "ordres", "--to-time", "2026-01-01T00:00:00Z"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, nil, &out, &errOut)
		assert.NotEqual(t, exitOK, code, "%v: %s", args, out.String())
		assert.Contains(t, errOut.String(), `"ordres"`, "%v", args)
		assert.Contains(t, errOut.String(), "no such topic", "%v", args)
	}
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	defer admin.Close()
	topics, err := admin.ListTopics()
	require.NoError(t, err)
	assert.Equal(t, []string{"orders"}, slices.Sorted(maps.Keys(topics)), "topics on the broker")
}
