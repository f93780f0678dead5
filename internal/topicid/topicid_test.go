package topicid

import (
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A topic the broker answers with an error (a broker whose metadata lags
// a topic created again answers UNKNOWN_TOPIC_OR_PARTITION) is an error,
// naming it, not a topic left out: the bridge then kept the ID of the
// topic's earlier generation and skipped the new topic's records at
// offsets the old one had applied.
func TestATopicAnsweredWithAnErrorIsAnError(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "payments"))
	require.NoError(t, err)
	defer cluster.Close()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	client, err := sarama.NewClient(cluster.ListenAddrs(), cfg)
	require.NoError(t, err)
	defer client.Close()

	ids, err := Lookup(client, []string{"orders", "payments"})
	require.NoError(t, err)
	require.Len(t, ids, 2)

	cluster.ControlKey(int16(kmsg.Metadata), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.MetadataRequest)
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		for _, rt := range req.Topics {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = rt.Topic
			if *rt.Topic == "orders" {
				mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				mt.TopicID = [16]byte{1}
			}
			resp.Topics = append(resp.Topics, mt)
		}
		return resp, nil, true
	})
	_, err = Lookup(client, []string{"orders", "payments"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "orders")
	assert.NotContains(t, err.Error(), "payments")
}
