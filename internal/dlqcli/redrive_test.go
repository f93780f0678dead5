package dlqcli

import (
	"regexp"
	"strconv"
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
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(cluster.ListenAddrs(), pc)
	require.NoError(t, err)
	f := dlq.Failure{Topic: "orders", Partition: 0, Offset: 41, Key: []byte("k"), Value: []byte(`{}`), Class: dlq.ClassRejected, Err: "bad", FailedAt: now}
	_, _, err = prod.SendMessage(f.Message(dlq.DefaultSuffix))
	require.NoError(t, err)
	require.NoError(t, prod.Close())

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
