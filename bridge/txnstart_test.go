package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// With dlq.transactional, a claimed partition whose transactional producer
// cannot start yet (its coordinator loading after a broker restart, or the
// transactional ID's ACL granted a moment late) retries the start until it
// can, or until the session ends, and /readyz says why meanwhile; then its
// records are delivered and committed. (The claim gave up at once: the
// partition stayed assigned to the member with nothing reading it until
// the next rebalance, and /readyz said ok.)
func TestAPartitionWhoseTransactionalProducerCannotStartYetRetries(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	var allowed atomic.Bool
	inits := refuse(cluster, kmsg.InitProducerID, kerr.TransactionalIDAuthorizationFailed.Code, func(int32) bool { return !allowed.Load() })
	b := newTxnBridge(t, cluster)
	b.running.Store(true)
	b.joined.Store(true)
	b.dispatcher.start(2)
	defer b.dispatcher.stop()
	ch := make(chan *sarama.ConsumerMessage, 3)
	for i := range 3 {
		ch <- msg(int64(i), "k", `{}`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- claimHandler{b: b}.ConsumeClaim(&simpleSession{fakeSession{ctx: ctx}}, fakeClaim{ch: ch})
	}()

	require.Eventually(t, func() bool { return inits.Load() >= 2 }, 30*time.Second, time.Millisecond)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), "orders/0")
	assert.Contains(t, rec.Body.String(), "cannot start")
	allowed.Store(true) // the ACL is granted

	requireGroupOffset(t, b.cfg.Kafka.Brokers, 3, "the partition's records were never committed")
	rec = httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	close(ch)
	require.NoError(t, <-done)
}
