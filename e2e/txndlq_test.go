package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// With dlq.transactional the bridge commits each partition's offset in a
// Kafka transaction together with the DLQ records it passes. The bridge
// binary is killed three times while 6,000 records and 40 poison records
// (empty keys) flow: every ledger applies its records once and in order,
// and kcat, reading read_committed, finds each poison record in the DLQ
// exactly once.
func TestTransactionalDLQWritesEachPoisonRecordOnceThroughKills(t *testing.T) {
	e := newEnv(t, 4)
	recs := ledger.Stream(e.id+"-", 100, 6_000, 1.1, 61)
	wait := e.produceInBackground(recs, 4*time.Second)
	const poisonRounds, poisonPerRound = 4, 10
	poisonDone, stopPoison := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stopPoison); <-poisonDone }) // before the producer is closed
	go func() {
		defer close(poisonDone)
		for round := range poisonRounds {
			for i := range poisonPerRound {
				_, _, err := e.producer.SendMessage(&sarama.ProducerMessage{
					Topic: e.ledgerTopic, Value: sarama.StringEncoder(fmt.Sprintf(`{"poison":%d}`, round*poisonPerRound+i)),
				})
				if err != nil {
					t.Errorf("produce poison: %v", err)
					return
				}
			}
			select {
			case <-stopPoison:
				return
			case <-time.After(time.Second):
			}
		}
	}()

	extra := map[string]any{"dlq": map[string]any{"transactional": true, "transactional_id_prefix": "e2e-" + e.id}}
	rng := seededRand(t, 3)
	var out syncBuffer
	for kill := range 3 {
		assigned := strings.Count(out.String(), "partitions assigned")
		p := e.startBridgeProcessWith(e.topic, e.temporal, extra, &out)
		require.Eventually(t, func() bool { return strings.Count(out.String(), "partitions assigned") > assigned },
			60*time.Second, 20*time.Millisecond, "bridge %d never got partitions", kill+1)
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		p.Kill()
		t.Logf("kill %d done", kill+1)
	}
	p := e.startBridgeProcessWith(e.topic, e.temporal, extra, &out)
	at := wait()
	<-poisonDone
	e.assertLedgers(at, 3*time.Minute)

	dlqTopic := dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix)
	const poison = poisonRounds * poisonPerRound
	var dead []kcatRecord
	require.Eventually(t, func() bool {
		dead = kcat(t, dlqTopic, "read_committed")
		return len(dead) >= poison
	}, time.Minute, 500*time.Millisecond, "the DLQ never held every poison record")
	require.NoError(t, p.Stop(20*time.Second), "bridge output:\n%s", lastLines(out.String(), 40))

	dead = kcat(t, dlqTopic, "read_committed")
	seen := map[string]int{}
	for _, r := range dead {
		seen[r.Value]++
		assert.Equal(t, e.ledgerTopic, r.Headers[dlq.HeaderTopic])
	}
	assert.Len(t, dead, poison, "DLQ records, read_committed")
	for v, n := range seen {
		assert.Equal(t, 1, n, "DLQ record %s", v)
	}
	all := kcat(t, dlqTopic, "read_uncommitted")
	t.Logf("DLQ: %d records committed, %d in the log including aborted transactions", len(dead), len(all))
	assert.Contains(t, out.String(), "record dead-lettered", "dead letters are logged when their transaction commits")
}
