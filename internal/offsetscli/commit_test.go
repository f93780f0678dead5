package offsetscli

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/sagabridge/sagabridge/internal/kafkatxn/txntest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// outcomeCluster is a broker with 10 records in orders' one partition and
// group g committed at 3.
func outcomeCluster(t *testing.T) *kfake.Cluster {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(c.ListenAddrs(), pc)
	require.NoError(t, err)
	for range 10 {
		_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("v")})
		require.NoError(t, err)
	}
	require.NoError(t, prod.Close())
	commitAt(t, c, 3)
	return c
}

// commitAt commits offset for group g on orders/0, as a member outside
// the group may while it has none.
func commitAt(t *testing.T, c *kfake.Cluster, offset int64) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MaxVersions(kversion.V3_6_0()))
	require.NoError(t, err)
	defer cl.Close()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8 // by name; v10 names topics by ID
	req.Group, req.Generation = "g", -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "orders"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	require.NoError(t, err)
	require.Zero(t, resp.Topics[0].Partitions[0].ErrorCode)
}

func runOffsets(args ...string) (code int, stdout, stderr string) {
	return runOffsetsEnv(nil, args...)
}

// runOffsetsEnv is runOffsets with environ as the environment.
func runOffsetsEnv(environ []string, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, environ, &out, &errOut)
	return code, out.String(), errOut.String()
}

// A commit Kafka applied but answered with an error (REQUEST_TIMED_OUT:
// the broker answered, and the work still happened; or an answer lost on
// the network) is read back before it is reported: the row says MOVED.
// (It said NOT MOVED while the group read 4, and an operator who ran
// --skip-one again skipped a good record.)
func TestACommitAppliedDespiteItsAnswerIsReportedMoved(t *testing.T) {
	c := outcomeCluster(t)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Topic: "orders", Err: kerr.RequestTimedOut})
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--skip-one")
	assert.NotContains(t, stdout, "NOT MOVED", "stderr:\n%s", stderr)
	assert.Contains(t, stdout, "skips 1 offset(s)")
	assert.Equal(t, exitOK, code, "the group reads what was asked: stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stderr, "read back")
}

// A move Kafka refuses for every partition says nothing moved, not that it
// was partly applied. (It said "the move was partly applied: 0 of 1
// partition(s) moved".)
func TestAMoveRefusedEverywhereSaysNothingMoved(t *testing.T) {
	c := outcomeCluster(t)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Topic: "orders", Err: kerr.GroupAuthorizationFailed, Count: -1})
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--skip-one")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stdout, "NOT MOVED")
	assert.NotContains(t, stderr, "partly applied")
	assert.Contains(t, stderr, "nothing moved")
}

// --skip-one skips the record the group would read next, which is not
// always at the committed offset + 1: on a topic written in transactions
// the committed offset is often a commit marker (the bridge commits the
// last record's offset + 1), and aborted records or compaction leave gaps.
// The tool reads the next record as the group does (read_committed) and
// moves past it. (Here it moved from 2, a marker, to 3, the poison record
// itself, and said so as a success.)
func TestSkipOneSkipsTheNextRecordPastAGap(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	prod := txntest.RealProducer(t, c.ListenAddrs(), "app")
	txn := func(values ...string) {
		require.NoError(t, prod.BeginTxn())
		for _, v := range values {
			_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder(v)})
			require.NoError(t, err)
		}
		require.NoError(t, prod.CommitTxn())
	}
	txn("ok-0", "ok-1") // offsets 0, 1; marker 2
	txn("POISON")       // 3; marker 4
	txn("ok-5")         // 5; marker 6
	require.NoError(t, prod.Close())
	commitAt(t, c, 2) // what the bridge commits after ok-1

	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--skip-one")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "orders  0          2          4")
}

// A dry run answers as the move would: with a stopped transactional
// bridge's transaction still committing the partition's offset (open, as a
// SIGKILL leaves it), the move refuses, and so does its dry run. (The dry
// run said "the move would be allowed", exit 0; the move then refused.)
func TestADryRunRefusesWhereTheMoveWould(t *testing.T) {
	c := outcomeCluster(t)
	openTxnCommit(t, c, 7)

	args := []string{"move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--to-offset", "5"}
	code, _, moveErr := runOffsets(args...)
	require.Equal(t, exitFail, code, moveErr)
	code, stdout, stderr := runOffsets(append(args, "-dry-run")...)
	assert.Equal(t, exitFail, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stderr, "open transaction")
}

// A topic given twice is one topic: moved and counted once. (-topic
// orders,orders printed each partition twice and "moved 6 partition(s)"
// for 3.) And a Kafka version too old for the isolation level the bridge
// reads at is a bad flag, named. (It failed to connect, naming neither.)
func TestTheTopicListAndVersionAreChecked(t *testing.T) {
	c := outcomeCluster(t)
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders,orders", "--to-offset", "5", "-partition", "0")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Equal(t, 1, strings.Count(stdout, "orders  0"), stdout)
	assert.Contains(t, stderr, "moved 1 partition(s)")

	code, _, stderr = runOffsets("show", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-kafka-version", "0.10.2.0")
	assert.Equal(t, exitUsage, code, stderr)
	assert.Contains(t, stderr, "-kafka-version")
}

// openTxnCommit leaves a transaction open that commits offset for group g
// on orders/0, as a SIGKILLed transactional bridge leaves one.
func openTxnCommit(t *testing.T, c *kfake.Cluster, offset int64) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MaxVersions(kversion.V3_6_0()))
	require.NoError(t, err)
	defer cl.Close()
	ctx := context.Background()
	txn := "bridge-txn"
	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.TransactionalID, ip.TransactionTimeoutMillis = &txn, 60000
	ipr, err := ip.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.Zero(t, ipr.ErrorCode)
	ao := kmsg.NewPtrAddOffsetsToTxnRequest()
	ao.TransactionalID, ao.ProducerID, ao.ProducerEpoch, ao.Group = txn, ipr.ProducerID, ipr.ProducerEpoch, "g"
	aor, err := ao.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.Zero(t, aor.ErrorCode)
	to := kmsg.NewPtrTxnOffsetCommitRequest()
	to.TransactionalID, to.ProducerID, to.ProducerEpoch, to.Group, to.Generation = txn, ipr.ProducerID, ipr.ProducerEpoch, "g", -1
	tt := kmsg.NewTxnOffsetCommitRequestTopic()
	tt.Topic = "orders"
	tp0 := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	tp0.Partition, tp0.Offset = 0, offset
	tt.Partitions = append(tt.Partitions, tp0)
	to.Topics = append(to.Topics, tt)
	tor, err := to.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.Zero(t, tor.Topics[0].Partitions[0].ErrorCode)

}

// show says which partitions a still-open transaction is committing (the
// group's offset is about to change, and a move refuses until it ends).
// (It showed the stable offset alone, with no sign of it.)
func TestShowMarksAnOpenTransactionsCommit(t *testing.T) {
	c := outcomeCluster(t)
	openTxnCommit(t, c, 7)
	code, stdout, stderr := runOffsets("show", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders")
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stdout, "3+")
	assert.Contains(t, stdout, "+ a transaction still open is committing")
	code, stdout, _ = runOffsets("show", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-json")
	require.Equal(t, exitOK, code)
	assert.Contains(t, stdout, `"pending_transaction": true`)
}

type idleHandler struct{ joined chan struct{} }

func (h idleHandler) Setup(sarama.ConsumerGroupSession) error {
	select {
	case h.joined <- struct{}{}:
	default:
	}
	return nil
}
func (idleHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (idleHandler) ConsumeClaim(s sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-s.Context().Done()
	return nil
}

// A dry run while bridges run prints the plan and refuses for the group's
// members, naming them, even while one of their transactions is committing
// (with dlq.transactional, all the time). (It said "an open transaction of
// a stopped bridge is still committing", with no plan and no member.)
func TestADryRunWhileTheGroupRunsNamesItsMembers(t *testing.T) {
	c := outcomeCluster(t)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	group, err := sarama.NewConsumerGroup(c.ListenAddrs(), "g", cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h := idleHandler{joined: make(chan struct{}, 1)}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_ = group.Consume(ctx, []string{"orders"}, h)
		}
	}()
	defer func() { cancel(); <-done; _ = group.Close() }()
	select {
	case <-h.joined:
	case <-time.After(time.Minute):
		t.Fatal("the member never joined")
	}
	openTxnCommit(t, c, 7)
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--to-offset", "5", "-dry-run")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stdout, "WOULD-MOVE", "the plan is printed")
	assert.Contains(t, stderr, "member")
	assert.NotContains(t, stderr, "stopped bridge")
}

// --skip-one at a transaction still open (the group's committed offset at
// its first record, which read_committed does not deliver yet) moves past
// the committed offset at once, as before; it does not wait to read a
// record that cannot come. (It waited the read timeout, 30 s, and refused:
// "no record to skip".)
func TestSkipOneAtAnOpenTransactionDoesNotWait(t *testing.T) {
	c := outcomeCluster(t)
	prod := txntest.RealProducer(t, c.ListenAddrs(), "app")
	require.NoError(t, prod.BeginTxn())
	_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("open")}) // 10
	require.NoError(t, err)
	commitAt(t, c, 10)
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--skip-one")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "orders  0          10         11")
}

// A move is planned on one generation of a topic, and Kafka commits
// offsets by topic name: orders deleted and created again (a new topic
// ID) while the commit was made got offset 5, planned on the old log of
// 10 records, though the new one ends at 2, and the tool said "moved",
// exit 0. The move cannot be taken back, but it fails, naming the topic.
func TestAMoveDuringWhichTheTopicWasCreatedAgainFails(t *testing.T) {
	c := outcomeCluster(t) // orders: 10 records, g committed at 3
	done := recreateOrdersAt(t, c, kmsg.OffsetCommit)
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--to-offset", "5")
	require.True(t, done.Load(), "the commit was never made")
	assert.Equal(t, exitFail, code, "a move planned on the topic's earlier log was reported done:\n%s%s", stdout, stderr)
	assert.Contains(t, stderr, "topic orders was deleted and created again during the move")
}

// The same, the topic created again while the move is planned (its
// offsets read): nothing is committed.
func TestAMovePlannedAcrossATopicCreatedAgainCommitsNothing(t *testing.T) {
	c := outcomeCluster(t)
	done := recreateOrdersAt(t, c, kmsg.ListOffsets)
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--to-offset", "1")
	require.True(t, done.Load(), "the offsets were never read")
	assert.Equal(t, exitFail, code, "%s%s", stdout, stderr)
	assert.Contains(t, stderr, "topic orders was deleted and created again during the move")
	assert.Contains(t, stderr, "nothing committed")
	admin, err := sarama.NewClusterAdmin(c.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	defer admin.Close()
	got, err := admin.ListConsumerGroupOffsets("g", map[string][]int32{"orders": {0}})
	require.NoError(t, err)
	assert.NotEqual(t, int64(1), got.GetBlock("orders", 0).Offset, "the move committed")
}

// recreateOrdersAt deletes orders and creates it again with 2 records the
// first time the broker handles a request of key, before handling it; the
// flag says it did.
func recreateOrdersAt(t *testing.T, c *kfake.Cluster, key kmsg.Key) *atomic.Bool {
	var once atomic.Bool
	c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !once.CompareAndSwap(false, true) {
			return nil, nil, false
		}
		c.SleepControl(func() {
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MaxVersions(kversion.V3_6_0()))
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			ctx := context.Background()
			del := kmsg.NewPtrDeleteTopicsRequest()
			dt := kmsg.NewDeleteTopicsRequestTopic()
			name := "orders"
			dt.Topic = &name
			del.Topics, del.TopicNames = append(del.Topics, dt), []string{name}
			if _, err := del.RequestWith(ctx, cl); err != nil {
				t.Error(err)
			}
			cr := kmsg.NewPtrCreateTopicsRequest()
			ct := kmsg.NewCreateTopicsRequestTopic()
			ct.Topic, ct.NumPartitions, ct.ReplicationFactor = name, 1, 1
			cr.Topics = append(cr.Topics, ct)
			resp, err := cr.RequestWith(ctx, cl)
			if err != nil || resp.Topics[0].ErrorCode != 0 {
				t.Errorf("create: %v %+v", err, resp)
			}
			for range 2 {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: name, Value: []byte("new")}).FirstErr(); err != nil {
					t.Error(err)
				}
			}
		})
		return nil, nil, false // then the request as Kafka handles it
	})
	return &once
}

// The topics' IDs read again after the commit to check none was created
// again: when that read fails, the move's outcome is still what was read
// back (review: it was reported failed with "move again", and a second
// --skip-one skipped one more record).
func TestAMoveWhoseIDsCannotBeReadAgainReportsWhatWasReadBack(t *testing.T) {
	c := outcomeCluster(t)
	var committed, failed atomic.Bool
	c.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		committed.Store(true)
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Metadata), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.MetadataRequest)
		if !committed.Load() || len(req.Topics) != 1 || failed.Swap(true) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic, rt.ErrorCode = req.Topics[0].Topic, kerr.UnknownTopicOrPartition.Code
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--to-offset", "5")
	require.True(t, failed.Load(), "the IDs' second read never failed")
	assert.Equal(t, exitOK, code, "%s%s", stdout, stderr)
	assert.Contains(t, stderr, "moved 1 partition(s)")
	assert.Contains(t, stderr, "warning: cannot read the topics' IDs again")
}
