package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/kafkatxn/txntest"
)

// A commit whose reply was lost (the coordinator out of reach for longer
// than sarama retries EndTxn, after the commit reached it) has an unknown
// outcome: it is finished by committing again, which the coordinator takes
// as a no-op if it committed. The committer aborted it instead; the
// coordinator, committed, refused (INVALID_TXN_STATE), sarama made the
// producer fatal, and the dead letters went again in a new transaction:
// twice in the DLQ, for read_committed readers too.
func TestACommitWhoseReplyWasLostIsFinishedNotSentAgain(t *testing.T) {
	coord := txntest.NewCoordinator(func(m *sarama.ProducerMessage) string {
		return headerOf(m, dlq.HeaderOffset)
	}, 2)
	var producers atomic.Int32
	newProducer := func() (sarama.SyncProducer, error) {
		producers.Add(1)
		return coord.Producer(), nil
	}
	prod, _ := newProducer()
	var committed []dlq.Failure
	c := &txnCommitter{
		prod: prod, newProducer: newProducer, failed: new(atomic.Uint64), reduced: new(atomic.Uint64),
		maxBytes: 1 << 20, topic: "orders", partition: 0, txnID: "txn-g-orders-0", suffix: dlq.DefaultSuffix,
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		onCommit: func(fs []dlq.Failure) { committed = append(committed, fs...) }, lost: func() { t.Error("lost") },
		kick: make(chan struct{}, 1), done: make(chan struct{}), held: map[int64]int{},
	}
	c.enqueue(dlq.Failure{Topic: "orders", Offset: 0, Class: dlq.ClassDecode, Err: "bad"}, 0)
	c.advance(1)
	for range 4 { // the first two replies are lost
		if _, err := c.commit(); err == nil {
			break
		}
	}
	assert.Equal(t, [][]string{{"0"}}, coord.Committed(), "the dead letter of offset 0, by committed transaction")
	require.Len(t, committed, 1, "dead letters counted as committed")
	assert.Equal(t, int64(1), c.committed)
	assert.Equal(t, int32(1), producers.Load(), "the producer was replaced, though the commit only had to be sent again")
}

// headerOf is the value of msg's header key.
func headerOf(msg *sarama.ProducerMessage, key string) string {
	for _, h := range msg.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// keyFails fails every call to workflowID with Unavailable, and accepts
// the others.
type keyFails struct {
	fakeTemporal
	workflowID string
}

func (k *keyFails) SignalWithStart(ctx context.Context, t Target, b event.Batch) error {
	if t.WorkflowID == k.workflowID {
		return serviceerror.NewUnavailable("down for this one")
	}
	return k.fakeTemporal.SignalWithStart(ctx, t, b)
}

// With dlq.transactional a dead letter waits in memory until a transaction
// commits it, which needs every earlier offset of its partition finished:
// it holds its share of the in-flight budget until then, as it does until
// the DLQ holds it without transactions. It released it when it was
// queued, so behind one record retried for a long time the partition read
// and queued dead letters up to batch.max_in_flight (20,000 records, GBs
// of large ones), never paused by backpressure.max_bytes.
func TestQueuedTransactionalDeadLettersHoldTheirBudget(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g"},
		DLQ:      config.DLQ{Transactional: true, TransactionalIDPrefix: "txn"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults(), Deps{Temporal: &keyFails{workflowID: "order-k0"}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	b.dispatcher.start(4)
	defer b.dispatcher.stop()
	ch := make(chan *sarama.ConsumerMessage, 10)
	ch <- msg(0, "k0", `{}`) // retried for as long as the test runs
	for i := range int64(9) {
		ch <- msg(i+1, fmt.Sprint("k", i+1), `{not json`+strings.Repeat("x", 1000)) // poison: dead-lettered
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- claimHandler{b: b}.ConsumeClaim(&simpleSession{fakeSession{ctx: ctx}}, fakeClaim{ch: ch})
	}()
	defer func() { close(ch); cancel(); <-done }()

	var queued func() int
	require.Eventually(t, func() bool {
		for _, f := range b.pressure.claimed() {
			if f.committer != nil {
				queued = func() int { f.committer.mu.Lock(); defer f.committer.mu.Unlock(); return len(f.committer.queued) }
			}
		}
		return queued != nil && queued() == 9
	}, 30*time.Second, time.Millisecond, "the nine dead letters were never queued")
	records, bytes := b.pressure.held()
	assert.Equal(t, int64(10), records, "records held: the retried one and the nine queued dead letters")
	assert.Greater(t, bytes, int64(9*1000), "bytes held")
}

// With static membership (kafka.instance_id) the transactions' group
// metadata carries the instance ID, so the group coordinator fences a
// stale instance by it (FENCED_INSTANCE_ID) as well as by member ID. It
// was always nil.
func TestTransactionalGroupMetadataCarriesTheInstanceID(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	b, err := New(config.Config{
		Kafka:  config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g", InstanceID: "bridge-0"},
		DLQ:    config.DLQ{Transactional: true, TransactionalIDPrefix: "txn"},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}.WithDefaults(), Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	c, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() {}, &connect.TxnStarter{})
	require.NoError(t, err)
	defer c.close(time.Minute)
	require.NotNil(t, c.meta.GroupInstanceID)
	assert.Equal(t, "bridge-0", *c.meta.GroupInstanceID)
}

// A transactional producer whose InitProducerId the coordinator takes and
// never answers gives up within kafka.connect_timeout, as every other
// Kafka client the bridge starts does: a claim retries its start, and a
// start held for minutes (a read timeout per try, fifty tries) held the
// group's rebalance past its timeout.
func TestATransactionalProducerStartGivesUpWithinTheConnectTimeout(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		return nil, nil, true // taken, never answered
	})
	b := newTxnBridge(t, cluster, connectIn(time.Second))
	start := time.Now()
	c, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() {}, &connect.TxnStarter{})
	took := time.Since(start)
	if err == nil {
		_ = c.close(time.Minute)
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, errTxnStart, "a start failure, retried by the claim")
	assert.Less(t, took, 5*time.Second, "the start took %v against a 1 s connect timeout", took)
}
