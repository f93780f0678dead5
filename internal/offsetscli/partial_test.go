package offsetscli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/connect"
)

// A move that Kafka applies to some partitions and refuses for others
// (the tool may read one topic but not the other: OffsetCommit is
// authorized per topic, while everything before it needs only DESCRIBE)
// says which partitions moved and which did not, and that the move was
// partly applied. (It named only the refused partitions and printed no
// table, as if nothing had moved, though the other topic had.)
func TestAPartlyRefusedMoveSaysWhatMoved(t *testing.T) {
	allow := func(res kmsg.ACLResourceType, name string, op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: res, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "payments"), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "admin-pw"),
		kfake.User("SCRAM-SHA-256", "tool", "tool-pw",
			allow(kmsg.ACLResourceTypeTopic, "orders", kmsg.ACLOperationDescribe),
			allow(kmsg.ACLResourceTypeTopic, "orders", kmsg.ACLOperationRead),
			allow(kmsg.ACLResourceTypeTopic, "payments", kmsg.ACLOperationDescribe), // not Read: its offsets cannot be committed
			allow(kmsg.ACLResourceTypeGroup, "g", kmsg.ACLOperationDescribe),
			allow(kmsg.ACLResourceTypeGroup, "g", kmsg.ACLOperationRead),
		))
	require.NoError(t, err)
	defer cluster.Close()

	// Records to move over, as the superuser.
	pc := sarama.NewConfig()
	require.NoError(t, connect.Secure(pc, config.Kafka{SASL: config.SASL{Mechanism: "SCRAM-SHA-256", Username: "admin", Password: "admin-pw"}}))
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	for _, topic := range []string{"orders", "payments"} {
		for range 3 {
			_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("v")})
			require.NoError(t, err)
		}
	}
	require.NoError(t, prod.Close())

	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`kafka:
  brokers: [%q]
  group: g
  sasl: {mechanism: SCRAM-SHA-256, username: tool, password: tool-pw}
routes: [{topic: orders, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]
`, cluster.ListenAddrs()[0])), 0o600))
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"move", "-config", path, "-topic", "orders,payments", "--to-time", "2000-01-01T00:00:00Z"}, nil, &out, &errOut)
	assert.Equal(t, exitFail, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	assert.Regexp(t, `orders\s+0\s+-\s+0\s+first commit`, out.String(), "the partition that moved is in the table")
	assert.Regexp(t, `payments\s+0\s+-\s+0\s+NOT MOVED`, out.String(), "the partition that did not move is in the table")
	assert.Contains(t, errOut.String(), "partly applied: 1 of 2 partition(s) moved")
	assert.NotContains(t, errOut.String(), "reads back", "orders moved: its offset read back as committed")
}
