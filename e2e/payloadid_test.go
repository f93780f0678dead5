package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
)

// The Kafka key is a customer ID; the saga is per order, named by a field
// of the payload: workflow_id "ledger-{json:order}". Every order's records
// reach its own workflow once, in order; a record without the field goes
// to the DLQ as a routing failure, and the partition moves on.
func TestTheWorkflowIDComesFromAPayloadField(t *testing.T) {
	e := newEnv(t, 2)
	const orders, perOrder = 6, 5
	at := map[string][]int64{}
	for seq := 1; seq <= perOrder; seq++ {
		for o := range orders {
			order := fmt.Sprintf("%s-order-%d", e.id, o)
			v, err := json.Marshal(map[string]any{"seq": seq, "total": perOrder, "order": order})
			require.NoError(t, err)
			_, off, err := e.producer.SendMessage(&sarama.ProducerMessage{
				Topic: e.ledgerTopic, Key: sarama.StringEncoder(fmt.Sprintf("customer-%d", o%2)), Value: sarama.ByteEncoder(v),
			})
			require.NoError(t, err)
			at[order] = append(at[order], off)
		}
	}
	_, _, err := e.producer.SendMessage(&sarama.ProducerMessage{
		Topic: e.ledgerTopic, Key: sarama.StringEncoder("customer-0"), Value: sarama.StringEncoder(`{"seq":1,"total":1}`),
	})
	require.NoError(t, err)
	_, stop := e.runBridgeWith(e.ledgerTopic, func(c *config.Config) {
		for i := range c.Routes {
			if c.Routes[i].Topic == e.ledgerTopic {
				c.Routes[i].WorkflowID = "ledger-{json:order}"
			}
		}
	})
	defer stop()
	e.assertLedgers(at, time.Minute)
	got := readAll(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix), 1, 30*time.Second)
	require.Len(t, got, 1)
	f, err := dlq.Parse(got[0])
	require.NoError(t, err)
	assert.Equal(t, dlq.ClassRoute, f.Class)
	assert.Contains(t, f.Err, "{json:order}")
}
