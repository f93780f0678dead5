package txntest

import (
	"sync"
	"testing"

	"github.com/IBM/sarama"
)

// RealProducer starts a transactional producer with ID id on brokers (a
// real broker: kfake in tests) for a test to write transactions with
// (commit markers, aborted or open transactions), and closes it when t
// ends.
func RealProducer(t testing.TB, brokers []string, id string) sarama.SyncProducer {
	t.Helper()
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.Producer.Idempotent, c.Producer.RequiredAcks, c.Producer.Return.Successes = true, sarama.WaitForAll, true
	c.Producer.Transaction.ID = id
	c.Net.MaxOpenRequests = 1
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		t.Fatalf("start the transactional producer %s: %v", id, err)
	}
	once := &closeOnce{SyncProducer: p}
	t.Cleanup(func() { _ = once.Close() })
	return once
}

// closeOnce is a producer whose Close may be called again (by the test,
// then by its cleanup): sarama's panics on a second.
type closeOnce struct {
	sarama.SyncProducer
	once sync.Once
	err  error
}

// Close closes the producer the first time.
func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.SyncProducer.Close() })
	return c.err
}
