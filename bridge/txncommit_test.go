package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

// simpleSession commits outside any group generation (generation -1, no
// member), as a TxnOffsetCommit without KIP-447's member check.
type simpleSession struct{ fakeSession }

func (*simpleSession) GenerationID() int32 { return -1 }
func (*simpleSession) MemberID() string    { return "" }

// newTxnBridge returns a bridge on cluster, group "g", that commits its
// offsets in transactions (dlq.transactional).
func newTxnBridge(t *testing.T, cluster *kfake.Cluster, tune ...func(*config.Config)) *Bridge {
	t.Helper()
	cfg := config.Config{
		Kafka:  config.Kafka{Brokers: cluster.ListenAddrs(), Group: "g"},
		DLQ:    config.DLQ{Transactional: true, TransactionalIDPrefix: "txn"},
		Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}
	for _, f := range tune {
		f(&cfg)
	}
	b, err := New(cfg.WithDefaults(), Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	return b
}

// connectIn sets kafka.connect_timeout to d.
func connectIn(d time.Duration) func(*config.Config) {
	return func(c *config.Config) { c.Kafka.ConnectTimeout = d }
}

// A bridge whose partition's transactional ID was taken over by a newer
// owner (it stalled past its session; the group gave the partition to
// another instance, whose producer fenced ours) releases the partition and
// leaves the new owner alone. (Its final commit on close used to find the
// fenced producer in sarama's fatal state and replace it: a new producer
// of the same transactional ID, which fenced the rightful owner in turn
// and aborted its open transaction.)
func TestAFencedCommitterDoesNotFenceTheNewOwner(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	b := newTxnBridge(t, cluster)
	kc := b.cfg.Kafka

	lost := make(chan struct{})
	old, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() { close(lost) }, &connect.TxnStarter{})
	require.NoError(t, err)
	old.start(func(error) {}, func(error) {}, nil)

	// The new owner's producer, of the same transactional ID, fences ours.
	pc, err := connect.TransactionalProducerConfig(kc, 0, old.txnID)
	require.NoError(t, err)
	owner, err := sarama.NewSyncProducer(kc.Brokers, pc)
	require.NoError(t, err)
	defer owner.Close()

	old.advance(5) // committed on the next tick, which finds the producer fenced
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("the fenced committer did not release its partition")
	}
	_ = old.close(time.Minute)

	// The new owner commits, undisturbed.
	require.NoError(t, owner.BeginTxn())
	offsets := map[string][]*sarama.PartitionOffsetMetadata{"orders": {{Partition: 0, Offset: 7}}}
	require.NoError(t, owner.AddOffsetsToTxnWithGroupMetadata(offsets,
		sarama.NewConsumerGroupMetadataFromSession(&simpleSession{}, "g", nil)))
	err = owner.CommitTxn()
	assert.NoError(t, err, "the new owner was fenced by the old one")
	assert.False(t, kafkatxn.Fenced(err))
}

// Offsets go on committing after the transaction coordinator was out of
// reach for longer than sarama retries an end of transaction: the commit
// and then its abort both run out of retries, which leaves sarama's
// producer between transactions (EndTransaction, not fatal), and only
// another abort gets it out. (The committer did not abort again, so every
// later BeginTxn failed: offsets never committed again while delivery
// went on.)
func TestOffsetsCommitAgainAfterAnAbortRanOutOfRetries(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	const refused = 2 * 51 // the commit's and then the abort's attempts (Retry.Max 50)
	// Retriable: sarama retries, then gives up; then the coordinator is back.
	ends := refuse(cluster, kmsg.EndTxn, kerr.ConcurrentTransactions.Code, func(n int32) bool { return n <= refused })
	b := newTxnBridge(t, cluster)
	c, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() { t.Error("the partition was released") }, &connect.TxnStarter{})
	require.NoError(t, err)
	c.start(func(error) {}, func(error) {}, nil)
	defer c.close(time.Minute)

	c.advance(5)
	requireGroupOffset(t, b.cfg.Kafka.Brokers, 5, "offset 5 never committed")
	assert.Greater(t, ends.Load(), int32(refused), "the coordinator was never out of reach")
}

// claimTen starts b's dispatcher and a claim of orders/0 with ten records
// of their own keys queued on ch, for a minute at most; done yields the
// claim's end once ch is closed.
func claimTen(t *testing.T, b *Bridge) (ch chan *sarama.ConsumerMessage, done <-chan error) {
	t.Helper()
	b.dispatcher.start(4)
	t.Cleanup(b.dispatcher.stop)
	ch = make(chan *sarama.ConsumerMessage, 10)
	for i := range 10 {
		ch <- msg(int64(i), fmt.Sprint("k", i), `{}`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	end := make(chan error, 1)
	go func() {
		end <- claimHandler{b: b}.ConsumeClaim(&simpleSession{fakeSession{ctx: ctx}}, fakeClaim{ch: ch})
	}()
	return ch, end
}

// With dlq.transactional, offsets that cannot be committed, with no dead
// letter among them (here the group's ACL refuses the transactions'
// offsets), make /readyz say so while delivery goes on, and a commit that
// succeeds clears it. (Only sagabridge_commit_failures_total counted them:
// /readyz said ok while nothing committed, and a restart would redeliver
// everything since.)
func TestTransactionalOffsetsThatCannotCommitAreReported(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	var allowed atomic.Bool
	refused := refuse(cluster, kmsg.AddOffsetsToTxn, kerr.GroupAuthorizationFailed.Code, func(int32) bool { return !allowed.Load() })
	b := newTxnBridge(t, cluster)
	b.running.Store(true)
	b.joined.Store(true)
	ch, done := claimTen(t, b)
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}

	require.Eventually(t, func() bool { return refused.Load() >= 2 }, 30*time.Second, 10*time.Millisecond, "no commit was refused")
	require.Eventually(t, func() bool { code, _ := readyz(); return code != http.StatusOK }, 30*time.Second, 10*time.Millisecond,
		"/readyz said ok after %d refused commits", refused.Load())
	_, body := readyz()
	assert.Contains(t, body, "offsets of orders/0 cannot be committed")
	assert.Contains(t, body, "not authorized to access this group")
	assert.Zero(t, b.Stats().DeadLettered)

	allowed.Store(true)
	requireGroupOffset(t, b.cfg.Kafka.Brokers, 10, "offset 10 never committed")
	require.Eventually(t, func() bool { code, _ := readyz(); return code == http.StatusOK }, 30*time.Second, 10*time.Millisecond,
		"/readyz did not clear once the offsets committed")
	close(ch)
	require.NoError(t, <-done)
}

// With dlq.transactional, a partition whose dead letters cannot be
// committed (here the DLQ topic does not exist) is paused and /readyz says
// so, as without transactions: its dead letters wait in memory until a
// transaction commits them, and must not pile up while delivery goes on.
// Once the DLQ topic exists the partition resumes and everything commits.
// (The partition went on reading and dead-lettering, its queue of dead
// letters grew without bound, and /readyz said ok.)
func TestATransactionalPartitionWhoseDeadLettersCannotCommitIsPaused(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	b := newTxnBridge(t, cluster)
	tc := b.deps.Temporal.(*fakeTemporal)
	tc.set(serviceerror.NewInvalidArgument("the workflow rejects the payload")) // every record is dead-lettered
	ch, done := claimTen(t, b)

	require.Eventually(t, func() bool { return len(b.pressure.dlqFailing()) > 0 }, 30*time.Second, 10*time.Millisecond,
		"the partition was not paused while its dead letters could not commit")
	assert.Contains(t, b.pressure.dlqFailing(), "orders/0")
	b.running.Store(true)
	b.joined.Store(true)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "dead letters of orders/0 cannot be written")

	require.NoError(t, cluster.CreateTopic("orders"+dlq.DefaultSuffix, 1, nil))
	require.Eventually(t, func() bool { return len(b.pressure.dlqFailing()) == 0 && b.Stats().DeadLettered == 10 }, 30*time.Second, 10*time.Millisecond,
		"the partition did not resume once its dead letters committed")
	close(ch)
	require.NoError(t, <-done)
}

// Of a transaction's dead letters, only one too large for the producer
// (dlq.max_message_bytes) is sent in reduced form, and in the first
// transaction; the others keep their values, so the DLQ tool can still
// redrive them. (Every dead letter of the transaction was reduced; then the
// oversized one failed the first transaction, the path on which sarama
// races: cmd/saramarace.)
func TestOnlyTheDeadLetterTooLargeForTheDLQIsReduced(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	b := newTxnBridge(t, cluster)
	c, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() { t.Error("the partition was released") }, &connect.TxnStarter{})
	require.NoError(t, err)
	defer c.close(time.Minute)
	big := `{"pad":"` + strings.Repeat("x", 2<<20) + `"}` // over dlq.max_message_bytes (1 MB)
	for i, v := range []string{`{"n":0}`, big, `{"n":2}`} {
		c.enqueue(dlq.FromMessage(msg(int64(i), fmt.Sprint("k", i), v), dlq.ClassRejected, errors.New("rejected"), 1, time.Now()), 0)
	}
	c.advance(3)
	_, err = c.commit()
	require.NoError(t, err, "the oversized dead letter was reduced before it was sent")
	assert.Equal(t, map[int64]bool{0: false, 1: true, 2: false}, readDeadLetters(t, cluster, 3))
	assert.Equal(t, uint64(1), b.reducedDeadLetters.Load())
}

// A dead letter the broker refuses (the DLQ topic's max.message.bytes,
// which the producer does not know) fails its transaction; the next one
// sends it in reduced form.
func TestADeadLetterTheBrokerRefusesGoesInReducedFormInTheNextTransaction(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	limit := "10000"
	require.NoError(t, admin.CreateTopic("orders"+dlq.DefaultSuffix, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false))
	require.NoError(t, admin.Close())
	b := newTxnBridge(t, cluster)
	c, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() { t.Error("the partition was released") }, &connect.TxnStarter{})
	require.NoError(t, err)
	defer c.close(time.Minute)
	big := `{"pad":"` + strings.Repeat("x", 20_000) + `"}` // under dlq.max_message_bytes, over the topic's limit
	c.enqueue(dlq.FromMessage(msg(0, "k0", big), dlq.ClassRejected, errors.New("rejected"), 1, time.Now()), 0)
	c.advance(1)
	_, err = c.commit()
	require.Error(t, err)
	require.True(t, dlq.TooLarge(err), "%v", err)
	_, err = c.commit()
	require.NoError(t, err)
	assert.Equal(t, map[int64]bool{0: true}, readDeadLetters(t, cluster, 1))
	assert.Equal(t, uint64(1), b.reducedDeadLetters.Load())
}

// readDeadLetters reads n committed records of the orders DLQ and says
// which source offsets are in reduced form.
func readDeadLetters(t *testing.T, cluster *kfake.Cluster, n int) map[int64]bool {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	cons, err := sarama.NewConsumer(cluster.ListenAddrs(), cfg)
	require.NoError(t, err)
	defer cons.Close()
	pc, err := cons.ConsumePartition("orders"+dlq.DefaultSuffix, 0, sarama.OffsetOldest)
	require.NoError(t, err)
	defer pc.Close()
	reduced := map[int64]bool{}
	for len(reduced) < n {
		select {
		case m := <-pc.Messages():
			f, err := dlq.Parse(m)
			require.NoError(t, err)
			reduced[f.Offset] = f.IsReduced()
		case <-time.After(30 * time.Second):
			t.Fatalf("read %d of %d dead letters", len(reduced), n)
		}
	}
	return reduced
}

// A committer whose producer sarama put in its fatal state (the
// coordinator said the transactional ID's producer mapping expired), and
// whose replacement cannot start for a while (the transactional ID's ACL
// refused), retries and commits once it can. (The committer closed the
// dead producer again on every retry: sarama panics on a second Close, and
// the panic, on sarama's goroutine, took the process down.)
func TestACommitterWhoseNewProducerCannotStartYetRetries(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	refuse(cluster, kmsg.EndTxn, kerr.InvalidProducerIDMapping.Code, func(n int32) bool { return n == 1 }) // fatal to sarama
	const refused = 3                                                                                      // the replacement's starts refused after the first producer's
	inits := refuse(cluster, kmsg.InitProducerID, kerr.TransactionalIDAuthorizationFailed.Code,
		func(n int32) bool { return n > 1 && n <= 1+refused })
	b := newTxnBridge(t, cluster)
	c, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() { t.Error("the partition was released") }, &connect.TxnStarter{})
	require.NoError(t, err)
	c.start(func(error) {}, func(error) {}, nil)
	defer c.close(time.Minute)

	c.advance(5)
	requireGroupOffset(t, b.cfg.Kafka.Brokers, 5, "offset 5 never committed")
	assert.Greater(t, inits.Load(), int32(1+refused), "the replacement producer was never refused")
}

// requireGroupOffset waits up to a minute for group "g"'s committed offset
// of orders/0 to be want.
func requireGroupOffset(t *testing.T, brokers []string, want int64, msg string) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, sarama.NewConfig())
	require.NoError(t, err)
	defer admin.Close()
	require.Eventually(t, func() bool {
		offsets, err := admin.ListConsumerGroupOffsets("g", map[string][]int32{"orders": {0}})
		if err != nil {
			return false
		}
		block := offsets.GetBlock("orders", 0)
		return block != nil && block.Offset == want
	}, time.Minute, 50*time.Millisecond, msg)
}

// refuse makes the broker answer the requests of key (EndTxn,
// InitProducerID or AddOffsetsToTxn) with code while refusing says so of the request's number
// (from 1), and serve the others; it returns the count of requests seen.
func refuse(cluster *kfake.Cluster, key kmsg.Key, code int16, refusing func(n int32) bool) *atomic.Int32 {
	var seen atomic.Int32
	cluster.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if !refusing(seen.Add(1)) {
			return nil, nil, false
		}
		resp := req.ResponseKind()
		switch r := resp.(type) {
		case *kmsg.EndTxnResponse:
			r.ErrorCode = code
		case *kmsg.InitProducerIDResponse:
			r.ErrorCode = code
		case *kmsg.AddOffsetsToTxnResponse:
			r.ErrorCode = code
		}
		return resp, nil, true
	})
	return &seen
}

// A partition's final commit, when it is released or the bridge stops,
// against a coordinator that takes EndTxn and never answers gives up
// within kafka.connect_timeout: the partition's next owner fences the
// producer and redelivers from the last commit, as after a crash. (It
// waited a read timeout per try, fifty tries: the rebalance, or the
// bridge's stop, waited as long.) The commit it gave up on then sets no
// reason of the gone flow (one left /readyz failing for ever), and no new
// producer is started for it, which would fence the next owner.
func TestAFinalCommitWithoutAnAnswerGivesUpWithinTheConnectTimeout(t *testing.T) {
	t.Parallel() // its abandoned commit takes sarama's retries, about 45 s, to end
	for name, tc := range map[string]struct{ connect, within time.Duration }{
		"the connect timeout": {time.Second, time.Minute},
		// A partition released after a long drain: the commit gets what
		// the rebalance timeout leaves (finalCommitBound), or the member
		// would be dropped from the group (10 s of drain and 15 s of
		// connect timeout, the defaults, against a 20 s rebalance).
		"the rebalance's bound": {10 * time.Second, time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			finalCommitWithoutAnswer(t, tc.connect, tc.within)
		})
	}
	assert.Equal(t, 9*time.Second, finalCommitBound(10*time.Second), "a second left for the handler to return")
	// A drain that took the whole rebalance timeout (drain_timeout may be
	// up to just under it) still leaves the commit a moment: a bound of
	// zero gave it up before it was sent.
	assert.Equal(t, minFinalCommit, finalCommitBound(19900*time.Millisecond))
}

// finalCommitWithoutAnswer closes a committer, its connect timeout
// connectTimeout, within within, while the coordinator takes EndTxn and never
// answers, and checks that close gives up within the lesser of the two.
func finalCommitWithoutAnswer(t *testing.T, connectTimeout, within time.Duration) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	defer cluster.Close()
	var hang atomic.Bool
	held := make(chan struct{}, 100)
	cluster.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if !hang.Load() {
			return nil, nil, false
		}
		held <- struct{}{}
		return nil, nil, true // taken, never answered
	})
	b := newTxnBridge(t, cluster, connectIn(connectTimeout))
	c, err := b.newTxnCommitter(&simpleSession{}, "orders", 0, 0, func() { t.Error("the partition was released") }, &connect.TxnStarter{})
	require.NoError(t, err)
	var closed atomic.Bool
	told := func(error) {
		if closed.Load() {
			t.Error("a reason of the partition was set after close returned: its flow is gone")
		}
	}
	c.start(told, told, nil)
	c.advance(3)
	requireGroupOffset(t, b.cfg.Kafka.Brokers, 3, "offset 3 never committed")

	hang.Store(true)
	c.advance(5)
	select { // the loop's own commit is the one held
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no commit reached EndTxn")
	}
	start := time.Now()
	err = c.close(within)
	took := time.Since(start)
	closed.Store(true)
	assert.Error(t, err, "a final commit without an answer succeeded")
	bound := min(connectTimeout, within)
	assert.Less(t, took, bound+4*time.Second, "the final commit took %v against a bound of %v", took, bound)
	assert.True(t, c.isAbandoned())

	// The held commit fails once the broker goes: the abandoned loop
	// tells nobody, commits nothing more and starts no producer.
	cluster.Close()
	select {
	case <-c.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the abandoned loop never ended")
	}
	assert.ErrorIs(t, c.ready(), errCommitterAbandoned)
}
