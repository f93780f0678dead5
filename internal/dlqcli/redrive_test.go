package dlqcli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
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

	"github.com/sagabridge/sagabridge/dlq"
)

// A redrive that cannot be recorded (the tool may write the source topic
// but not <dlq>.redrives: an ACL granted read only, a topic whose metadata
// has not propagated) is not applied either: the redriven record and its
// redrive record are written in one transaction, so a read_committed
// consumer of the source topic (the bridge's default) never sees a record
// whose redrive was not recorded, and the next run redrives it once.
// (The record was produced first and recorded after: the run failed with
// the record redriven but not recorded, and the next run redrove it
// again: the source topic got it twice.)
func TestARedriveThatCannotBeRecordedIsNotApplied(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]
	writeDeadLetters(t, cluster.ListenAddrs(), dlq.Failure{Topic: "orders", Partition: 0, Offset: 41, Key: []byte("k"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now})

	var refusing atomic.Bool
	refusing.Store(true)
	ledger := dlq.RedrivesTopic("orders" + dlq.DefaultSuffix)
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		if !refusing.Load() || len(r.Topics) != 1 || r.Topics[0].Topic != ledger {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	args := []string{"redrive", "-brokers", brokers, "-topic", "orders" + dlq.DefaultSuffix, "-all"}
	code, stdout, stderr := runCLI(args...)
	assert.Equal(t, exitFail, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)

	refusing.Store(false) // the ACL is fixed
	code, stdout, stderr = runCLI(args...)
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	m := regexp.MustCompile(`-> orders/0@(\d+)`).FindStringSubmatch(stdout)
	require.NotNil(t, m, stdout)
	last, err := strconv.ParseInt(m[1], 10, 64)
	require.NoError(t, err)

	// Read the source topic as the bridge does (read_committed) up to the
	// record of the second run: it is the only one.
	cc := sarama.NewConfig()
	cc.Consumer.IsolationLevel = sarama.ReadCommitted
	consumer, err := sarama.NewConsumer(cluster.ListenAddrs(), cc)
	require.NoError(t, err)
	defer consumer.Close()
	pcons, err := consumer.ConsumePartition("orders", 0, sarama.OffsetOldest)
	require.NoError(t, err)
	defer pcons.Close()
	var seen []int64
	for len(seen) == 0 || seen[len(seen)-1] < last {
		select {
		case msg := <-pcons.Messages():
			seen = append(seen, msg.Offset)
		case <-time.After(30 * time.Second):
			t.Fatalf("the second run's record at %d never arrived (read %v)", last, seen)
		}
	}
	assert.Equal(t, []int64{last}, seen, "records the bridge reads on the source topic")
}

// Two redrives of one DLQ at once must not both write an entry. The
// second run's producer fences the first one's, but fencing stops only the
// first run's later writes: what it committed before the fence is in the
// redrive records, and the second run must read them after its producer
// started, not before. Here the first run (a producer with the redrive
// tool's transactional ID) commits its redrive of 0@0 while the second
// run's producer starts. (The second run read the redrive records first,
// found none, and redrove 0@0 again: two records on the source topic; in
// a race of two `-all` runs over 3,000 entries, 502 keys twice.)
func TestARedriveCommittedWhileAnotherStartsIsNotRedrivenAgain(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]
	dlqTopic := "orders" + dlq.DefaultSuffix
	writeDeadLetters(t, cluster.ListenAddrs(), dlq.Failure{Topic: "orders", Partition: 0, Offset: 41, Key: []byte("k"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now})
	require.NoError(t, createRedrivesTopic(mustClient(t, cluster.ListenAddrs()), dlqTopic))

	// The first run: its producer already started.
	tc := sarama.NewConfig()
	tc.Version = sarama.V3_6_0_0
	tc.Producer.Idempotent, tc.Producer.RequiredAcks, tc.Producer.Return.Successes = true, sarama.WaitForAll, true
	tc.Producer.Transaction.ID = redriveTransactionalID(dlqTopic)
	tc.Net.MaxOpenRequests = 1
	first, err := sarama.NewSyncProducer(cluster.ListenAddrs(), tc)
	require.NoError(t, err)
	defer first.Close()
	commitFirst := func() error {
		if err := first.BeginTxn(); err != nil {
			return err
		}
		if _, _, err := first.SendMessage(&sarama.ProducerMessage{Topic: "orders", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(`{}`)}); err != nil {
			return err
		}
		rec, err := dlq.Redrive{Partition: 0, Offset: 0, At: now, To: "orders/0@0"}.Message(dlqTopic)
		if err != nil {
			return err
		}
		if _, _, err := first.SendMessage(rec); err != nil {
			return err
		}
		return first.CommitTxn()
	}
	var firstErr error
	var inits atomic.Int32
	cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if inits.Add(1) == 1 { // the second run's producer starts: the first run commits meanwhile
			done := make(chan struct{})
			go func() { defer close(done); firstErr = commitFirst() }()
			cluster.SleepControl(func() { <-done })
		}
		return nil, nil, false
	})

	code, stdout, stderr := runCLI("redrive", "-brokers", brokers, "-topic", dlqTopic, "-all")
	require.NoError(t, firstErr)
	require.EqualValues(t, 1, inits.Load(), "the second run started its producer")
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Equal(t, exitFail, code, "the entry is refused as redriven")
	assert.Contains(t, stdout, "already redriven")
	// The summary counts it too (it said "0 redriven, 0 refused").
	assert.Contains(t, stdout, "0 redriven, 1 refused")

	assert.Len(t, readCommitted(t, cluster.ListenAddrs(), "orders"), 1, "records on the source topic")
}

func mustClient(t *testing.T, addrs []string) sarama.Client {
	c, err := sarama.NewClient(addrs, sarama.NewConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readCommitted reads topic's partition 0 as the bridge does
// (read_committed): every record before a sentinel it writes at the end.
func readCommitted(t *testing.T, addrs []string, topic string) []*sarama.ConsumerMessage {
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	pc.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(addrs, pc)
	require.NoError(t, err)
	sentinel := fmt.Sprintf("sentinel-%d", time.Now().UnixNano()) // this read's; earlier reads' are skipped
	_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0, Key: sarama.StringEncoder(sentinel)})
	require.NoError(t, err)
	require.NoError(t, prod.Close())
	cc := sarama.NewConfig()
	cc.Consumer.IsolationLevel = sarama.ReadCommitted
	consumer, err := sarama.NewConsumer(addrs, cc)
	require.NoError(t, err)
	defer consumer.Close()
	pcons, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	require.NoError(t, err)
	defer pcons.Close()
	var out []*sarama.ConsumerMessage
	for {
		select {
		case msg := <-pcons.Messages():
			switch k := string(msg.Key); {
			case k == sentinel:
				return out
			case !strings.HasPrefix(k, "sentinel-"):
				out = append(out, msg)
			}
		case <-time.After(time.Minute):
			t.Fatalf("the sentinel never arrived on %s (read %d records)", topic, len(out))
		}
	}
}

// A redrive fenced by another one that started says so, rather than
// sarama's text for PRODUCER_FENCED ("Unknown error, how did this happen?
// Error code = 90").
func TestARedriveFencedByAnotherSaysSo(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	dlqTopic := "orders" + dlq.DefaultSuffix
	for o := range int64(2) {
		writeDeadLetters(t, cluster.ListenAddrs(), dlq.Failure{Topic: "orders", Partition: 0, Offset: o, Key: []byte("k"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now})
	}

	var adds atomic.Int32
	var fenceErr error
	cluster.ControlKey(int16(kmsg.AddPartitionsToTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if adds.Add(1) == 3 { // the second entry's transaction (each adds two partitions): another redrive starts
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc := sarama.NewConfig()
				tc.Version = sarama.V3_6_0_0
				tc.Producer.Idempotent, tc.Producer.RequiredAcks, tc.Producer.Return.Successes = true, sarama.WaitForAll, true
				tc.Producer.Transaction.ID = redriveTransactionalID(dlqTopic)
				tc.Net.MaxOpenRequests = 1
				var other sarama.SyncProducer
				if other, fenceErr = sarama.NewSyncProducer(cluster.ListenAddrs(), tc); fenceErr == nil {
					_ = other.Close()
				}
			}()
			cluster.SleepControl(func() { <-done })
		}
		return nil, nil, false
	})
	code, stdout, stderr := runCLI("redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", dlqTopic, "-all")
	require.NoError(t, fenceErr)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stderr, "another redrive of "+dlqTopic, "stdout:\n%s", stdout)
	assert.Contains(t, stderr, "1 redriven before it")
}

// An entry over sarama's default 1 MiB (a temporal_rejected record over
// dispatch.max_call_bytes, which the bridge dead-letters whole while the
// DLQ topic takes it) is redriven: the broker and the topic judge its size,
// not sarama's default. One the source topic refuses is reported and the
// run goes on with the other entries. (The run stopped at the first entry
// with "Attempt to produce message larger than configured
// Producer.MaxMessageBytes: 1100074 > 1048576", and the small entry after
// it was never tried.)
func TestEntriesOverOneMiBAreRedriven(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "4194304"}),
		kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	small := "200000"
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	require.NoError(t, admin.CreateTopic("narrow", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &small}}, false))
	require.NoError(t, admin.CreateTopic("narrow"+dlq.DefaultSuffix, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false))
	require.NoError(t, admin.Close())
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	pc.Producer.MaxMessageBytes = 4 << 20
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	big := bytes.Repeat([]byte("x"), 1_100_000)
	for i, f := range []dlq.Failure{
		{Topic: "orders", Partition: 0, Offset: 1, Key: []byte("big"), Value: big, Class: dlq.ClassRejected, Err: "payload too large", FailedAt: now},
		{Topic: "orders", Partition: 0, Offset: 2, Key: []byte("small"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now},
	} {
		_, _, err := prod.SendMessage(f.Message(dlq.DefaultSuffix))
		require.NoError(t, err, i)
	}
	for i, v := range [][]byte{big[:300_000], []byte(`{}`)} { // the first one too large for its topic now
		f := dlq.Failure{Topic: "narrow", Partition: 0, Offset: int64(i), Key: []byte("n"), Value: v, Class: dlq.ClassRejected, Err: "bad", FailedAt: now}
		_, _, err := prod.SendMessage(f.Message(dlq.DefaultSuffix))
		require.NoError(t, err, i)
	}
	require.NoError(t, prod.Close())

	code, stdout, stderr := runCLI("redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", "orders"+dlq.DefaultSuffix, "-all")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	got := readCommitted(t, cluster.ListenAddrs(), "orders")
	require.Len(t, got, 2)
	assert.Equal(t, big, got[0].Value, "byte for byte")

	code, stdout, stderr = runCLI("redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", "narrow"+dlq.DefaultSuffix, "-all")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stdout, "failed         0@0")
	assert.Contains(t, stdout, "redriven       0@1")
	assert.Contains(t, stdout, "1 redriven, 0 refused, 1 failed")
	assert.Contains(t, stderr, "too large")
	assert.Len(t, readCommitted(t, cluster.ListenAddrs(), "narrow"), 1)
}

// A redriven record has its own timestamp back, which the bridge hands
// workflows as the event's time (Envelope.Timestamp), while the dead
// letter is stamped when it was written, so the DLQ's retention counts
// from then. (Both were stamped anew: the redriven record carried the
// time of the redrive, and the original time was nowhere.)
//
// Unless the original is so old that the topic's retention.ms would let
// Kafka delete the record soon after the redrive, before the bridge reads
// it (in a quiet partition the segment holding it rolls and goes): then
// the redrive stamps it now and says so. Here orders keeps records a day,
// and the entry of two days ago goes out stamped now.
func TestARedrivenRecordKeepsItsTimestamp(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	day := "86400000"
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	require.NoError(t, admin.CreateTopic("orders", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"retention.ms": &day}}, false))
	require.NoError(t, admin.Close())
	pc := sarama.NewConfig()
	pc.Version = sarama.V3_6_0_0
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	defer prod.Close()
	orig := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	old := time.Now().Add(-48 * time.Hour).Truncate(time.Millisecond).UTC()
	for _, at := range []time.Time{orig, old} {
		_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: "orders", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("not json"), Timestamp: at})
		require.NoError(t, err)
	}
	src := readCommitted(t, cluster.ListenAddrs(), "orders")
	require.Len(t, src, 2)
	require.Equal(t, orig, src[0].Timestamp.UTC())
	for _, m := range src {
		f := dlq.FromMessage(m, dlq.ClassDecode, errors.New("bad"), 1, time.Now())
		_, _, err = prod.SendMessage(f.Message(dlq.DefaultSuffix))
		require.NoError(t, err)
	}

	before := time.Now()
	code, stdout, stderr := runCLI("redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", "orders"+dlq.DefaultSuffix, "-all")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	got := readCommitted(t, cluster.ListenAddrs(), "orders")
	require.Len(t, got, 4, "the originals and the redriven records")
	assert.Equal(t, orig, got[2].Timestamp.UTC(), "the redriven record's timestamp")
	assert.False(t, got[3].Timestamp.Before(before.Truncate(time.Millisecond)), "the old one is stamped now: %v", got[3].Timestamp)
	assert.Contains(t, stdout, "retention.ms")
	dead := readCommitted(t, cluster.ListenAddrs(), "orders"+dlq.DefaultSuffix)
	require.Len(t, dead, 2)
	assert.WithinDuration(t, time.Now(), dead[0].Timestamp, time.Minute, "the dead letter is stamped when written")
}

// A DLQ topic deleted and created again (a common way to purge one) starts
// its offsets again, and its new entries are not the old ones: a redrive
// recorded for the old topic's 0@0 does not refuse the new topic's 0@0.
// Redrive records carry the DLQ topic's ID, as the bridge's watermarks do.
// (The new entry was refused: "already redriven ... (-force redrives it
// again)", and -force would have turned the real protection off too.)
func TestADLQTopicCreatedAgainIsNotTakenForTheOldOne(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	dlqTopic := "orders" + dlq.DefaultSuffix
	write := func(key string) {
		writeDeadLetters(t, cluster.ListenAddrs(), dlq.Failure{Topic: "orders", Partition: 0, Offset: 7, Key: []byte(key), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now})
	}
	redrive := []string{"redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", dlqTopic, "-partition", "0", "-offset", "0"}
	write("old")
	code, stdout, stderr := runCLI(redrive...)
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)

	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	require.NoError(t, admin.DeleteTopic(dlqTopic))
	require.Eventually(t, func() bool {
		err := admin.CreateTopic(dlqTopic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "the DLQ topic was not created again")
	require.NoError(t, admin.Close())
	write("new")

	code, stdout, stderr = runCLI(redrive...)
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	got := readCommitted(t, cluster.ListenAddrs(), "orders")
	require.Len(t, got, 2)
	assert.Equal(t, "new", string(got[1].Key))
	// And the new entry, once redriven, is refused again as it should be.
	code, stdout, _ = runCLI(redrive...)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stdout, "already redriven")
}

// The same record dead-lettered twice (the DLQ is at-least-once: a crash
// between the DLQ write and the offset commit writes it again; an
// activity's retried dead letter may land twice) is redriven once: the
// workflows' offset dedupe cannot catch the second, since a redriven
// record has a new offset. The copy is refused, in the run that redrives
// the first and in any later run, unless -force. (Both were redriven: two
// records on the source topic, "2 redriven, 0 refused".)
func TestARecordDeadLetteredTwiceIsRedrivenOnce(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	f := dlq.Failure{Topic: "orders", Partition: 0, Offset: 7, Key: []byte("k"), Value: []byte(`{"a":1}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now, Attempts: 1}
	other := f
	other.Offset, other.Value = 8, []byte(`{"a":2}`)
	writeDeadLetters(t, cluster.ListenAddrs(), f, f, other)
	args := []string{"redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", "orders" + dlq.DefaultSuffix, "-all"}
	code, stdout, stderr := runCLI(args...)
	assert.Equal(t, exitFail, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "refused        0@1        a copy of 0@0")
	assert.Contains(t, stdout, "2 redriven, 1 refused")
	require.Len(t, readCommitted(t, cluster.ListenAddrs(), "orders"), 2)

	// A later run refuses the copy too, as the entry it copies.
	code, stdout, _ = runCLI("redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", "orders"+dlq.DefaultSuffix, "-partition", "0", "-offset", "1")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stdout, "already redriven", stdout)
	require.Len(t, readCommitted(t, cluster.ListenAddrs(), "orders"), 2)
}

// A compacted topic deletes nothing by time, so a redrive to it keeps an
// old record's timestamp. (It was stamped now, "too near retention.ms".)
func TestARedriveToACompactedTopicKeepsAnOldTimestamp(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "accounts"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	compact, day := "compact", "86400000"
	admin, err := sarama.NewClusterAdmin(cluster.ListenAddrs(), sarama.NewConfig())
	require.NoError(t, err)
	require.NoError(t, admin.CreateTopic("accounts", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"cleanup.policy": &compact, "retention.ms": &day}}, false))
	require.NoError(t, admin.Close())
	old := time.Now().Add(-48 * time.Hour).Truncate(time.Millisecond).UTC()
	writeDeadLetters(t, cluster.ListenAddrs(), dlq.Failure{Topic: "accounts", Partition: 0, Offset: 3, Key: []byte("a-1"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now, Timestamp: old})
	code, stdout, stderr := runCLI("redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", "accounts"+dlq.DefaultSuffix, "-all")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	got := readCommitted(t, cluster.ListenAddrs(), "accounts")
	require.Len(t, got, 1)
	assert.Equal(t, old, got[0].Timestamp.UTC())
}

// writeDeadLetters writes fs to their DLQ topics on addrs, as the bridge
// would have.
func writeDeadLetters(t *testing.T, addrs []string, fs ...dlq.Failure) {
	t.Helper()
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(addrs, pc)
	require.NoError(t, err)
	defer prod.Close()
	for _, f := range fs {
		_, _, err := prod.SendMessage(f.Message(dlq.DefaultSuffix))
		require.NoError(t, err)
	}
}

// A tombstone for an entry's key in the redrives topic (how a record is
// deleted from a compacted topic) forgets its redrive: the entry may be
// redriven again. (The tombstone read as a bad redrive record, and every
// redrive, -dry-run and -force included, failed on it.)
func TestATombstoneInTheRedrivesTopicForgetsThatRedrive(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	dlqTopic := "orders" + dlq.DefaultSuffix
	writeDeadLetters(t, cluster.ListenAddrs(), dlq.Failure{Topic: "orders", Partition: 0, Offset: 41, Key: []byte("k"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now})
	args := []string{"redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", dlqTopic, "-all"}
	code, stdout, stderr := runCLI(args...)
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)

	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: dlq.RedrivesTopic(dlqTopic), Key: sarama.StringEncoder(dlq.RedriveKey(0, 0))})
	require.NoError(t, err)
	require.NoError(t, prod.Close())

	code, stdout, stderr = runCLI(args...)
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "1 redriven, 0 refused")
	assert.Len(t, readCommitted(t, cluster.ListenAddrs(), "orders"), 2)
}

// -force redrives a record redriven before once more, not once per
// at-least-once copy of it in the DLQ. (It redrove both copies: the record
// applied twice more.)
func TestForceRedrivesARecordOncePerRun(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	f := dlq.Failure{Topic: "orders", Partition: 0, Offset: 7, Key: []byte("k"), Value: []byte(`{"a":1}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now, Attempts: 1}
	writeDeadLetters(t, cluster.ListenAddrs(), f, f) // the same record dead-lettered twice
	args := []string{"redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", "orders" + dlq.DefaultSuffix, "-all"}
	runCLI(args...)
	require.Len(t, readCommitted(t, cluster.ListenAddrs(), "orders"), 1)
	_, stdout, _ := runCLI(append(args, "-force")...)
	assert.Contains(t, stdout, "a copy of 0@0, redriven in this run")
	assert.Len(t, readCommitted(t, cluster.ListenAddrs(), "orders"), 2, "one more application of the record")
}

// A record the source topic refuses (here its timestamp, older than the
// topic's message.timestamp.before.max.ms) fails alone: the run goes on
// with the other entries and exits 1. (It stopped the run, and every later
// run at the same record: the entries after it were never redriven.)
func TestARecordTheTopicRefusesFailsAlone(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	old := time.Now().Add(-10 * 24 * time.Hour).UTC().Truncate(time.Millisecond)
	writeDeadLetters(t, cluster.ListenAddrs(),
		dlq.Failure{Topic: "orders", Partition: 0, Offset: 1, Key: []byte("old-key"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now, Timestamp: old},
		dlq.Failure{Topic: "orders", Partition: 0, Offset: 2, Key: []byte("fresh-key"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now})
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		if len(r.Topics) != 1 || r.Topics[0].Topic != "orders" || !bytes.Contains(r.Topics[0].Partitions[0].Records, []byte("old-key")) {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		st := kmsg.NewProduceResponseTopic()
		st.Topic = "orders"
		sp := kmsg.NewProduceResponseTopicPartition()
		sp.Partition, sp.ErrorCode = 0, kerr.InvalidTimestamp.Code
		st.Partitions = append(st.Partitions, sp)
		resp.Topics = append(resp.Topics, st)
		return resp, nil, true
	})
	code, stdout, stderr := runCLI("redrive", "-brokers", cluster.ListenAddrs()[0], "-topic", "orders"+dlq.DefaultSuffix, "-all")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stdout, "1 redriven, 0 refused, 1 failed")
	assert.Contains(t, stderr, "0@0 not redriven: orders refuses the record")
	recs := readCommitted(t, cluster.ListenAddrs(), "orders")
	require.Len(t, recs, 1, "0@1 (fresh-key) is redriven")
	assert.Equal(t, "fresh-key", string(recs[0].Key))
}

// After a redrive, list said nothing of it: its REDRIVES column is how
// often the record was redriven before it was dead-lettered (a header of
// the entry), and the entry stays as it was. It shows the redrive the
// ledger records now, as the redrive would refuse it.
func TestListShowsWhenAnEntryWasRedriven(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]
	fail := func(offset int64) dlq.Failure {
		return dlq.Failure{Topic: "orders", Offset: offset, Key: []byte("k"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now}
	}
	writeDeadLetters(t, cluster.ListenAddrs(), fail(41), fail(42))
	code, stdout, stderr := runCLI("redrive", "-brokers", brokers, "-topic", "orders.dlq", "-partition", "0", "-offset", "0")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)

	code, stdout, stderr = runCLI("list", "-brokers", brokers, "-topic", "orders.dlq", "-json")
	require.Equal(t, exitOK, code, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 2)
	var first, second map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	assert.Contains(t, first["redriven_to"], "orders/0@", "the redriven entry: %s", lines[0])
	assert.NotEmpty(t, first["redriven_at"])
	assert.NotContains(t, second, "redriven_to", "the other: %s", lines[1])

	code, stdout, stderr = runCLI("list", "-brokers", brokers, "-topic", "orders.dlq")
	require.Equal(t, exitOK, code, stderr)
	rows := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, rows, 3, stdout)
	assert.Contains(t, rows[0], "REDRIVEN-TO")
	to, _ := first["redriven_to"].(string)
	require.NotEmpty(t, to)
	assert.Contains(t, rows[1], " "+to+" ", "the redriven entry's row")
	assert.NotContains(t, rows[2], " "+to+" ", "the other's row")
}

// The redrive records are best effort for list: one that is not a redrive
// record, or a redrives topic the tool may not read, made list fail with
// nothing listed (review); it lists, and warns.
func TestListListsWhenTheRedriveRecordsCannotBeRead(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]
	writeDeadLetters(t, cluster.ListenAddrs(), dlq.Failure{Topic: "orders", Offset: 41, Key: []byte("k"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now})
	code, stdout, stderr := runCLI("redrive", "-brokers", brokers, "-topic", "orders.dlq", "-all")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: dlq.RedrivesTopic("orders.dlq"), Key: sarama.StringEncoder("0@7"), Value: sarama.StringEncoder("not json")})
	require.NoError(t, err)

	code, stdout, stderr = runCLI("list", "-brokers", brokers, "-topic", "orders.dlq")
	assert.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stderr, "not a redrive record")
	assert.Contains(t, stdout, " orders/0@", "the redrive the good record says is shown:\n%s", stdout)

	// A redrives topic the tool may not read (an ACL): listed, REDRIVEN-TO "?".
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		r := req.(*kmsg.FetchRequest)
		if len(r.Topics) != 1 || r.Topics[0].Topic != dlq.RedrivesTopic("orders.dlq") {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	code, stdout, stderr = runCLI("list", "-brokers", brokers, "-topic", "orders.dlq")
	assert.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stderr, "REDRIVEN-TO shows ?")
	rows := strings.Split(strings.TrimSpace(stdout), "\n")
	require.GreaterOrEqual(t, len(rows), 2, stdout)
	assert.Regexp(t, `\s\?\s`, rows[1])
	_, stdout, _ = runCLI("list", "-brokers", brokers, "-topic", "orders.dlq", "-json")
	assert.Contains(t, stdout, `"redriven_unknown":true`)
}
