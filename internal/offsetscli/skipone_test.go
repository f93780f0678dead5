package offsetscli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/internal/kafkatxn/txntest"
)

// transactionalOrders is a cluster whose orders/0 holds, in transactions,
// the values of each txn (each followed by its commit marker), and where
// group g has committed offset committed.
func transactionalOrders(t *testing.T, committed int64, txns ...[]string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	prod := txntest.RealProducer(t, c.ListenAddrs(), "app")
	for _, values := range txns {
		require.NoError(t, prod.BeginTxn())
		for _, v := range values {
			_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder(v)})
			require.NoError(t, err)
		}
		require.NoError(t, prod.CommitTxn())
	}
	require.NoError(t, prod.Close())
	commitAt(t, c, committed)
	return c
}

// When --skip-one cannot read the record after the committed offset (its
// fetches fail), it moves nothing and says how to move by hand. (It moved
// to the committed offset + 1: from a commit marker, that is the very
// record to skip, reported as skipped, exit 0.)
func TestSkipOneThatCannotReadTheNextRecordMovesNothing(t *testing.T) {
	c := transactionalOrders(t, 2, []string{"ok-0", "ok-1"}, []string{"POISON"}, []string{"ok-5"})               // POISON at 3
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: "orders", Err: kerr.UnknownServerError, Count: -1}) // every fetch fails
	code, stdout, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--skip-one")
	assert.Equal(t, exitFail, code, "stdout:\n%s", stdout)
	assert.Contains(t, stderr, "nothing moved")
	assert.Contains(t, stderr, "--to-offset")
	_, stdout, _ = runOffsets("show", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-json")
	assert.Contains(t, stdout, `"committed": 2`)
}

// --skip-one on a transactional partition at rest (only its commit marker
// past the committed offset) says at once that there is nothing to skip.
// (It waited 30 s, then moved past the marker and reported a skip.)
func TestSkipOneAtRestSaysThereIsNothingToSkip(t *testing.T) {
	c := transactionalOrders(t, 1, []string{"a"}) // a at 0, its marker at 1
	start := time.Now()
	code, _, stderr := runOffsets("move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--skip-one")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stderr, "nothing to skip")
	assert.Less(t, time.Since(start), 10*time.Second)
}

// An operator's Ctrl-C while --skip-one reads the next record ends the
// command: nothing was committed, and it says so rather than "outcome
// unknown". (The interrupted read fell back to the committed offset + 1.)
func TestSkipOneInterruptedCommitsNothing(t *testing.T) {
	c := transactionalOrders(t, 2, []string{"ok-0", "ok-1"}, []string{"POISON"})
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { time.Sleep(3 * time.Second) }) // a slow broker
		return nil, nil, false
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--skip-one"}, nil, &out, &errOut)
	assert.Equal(t, exitFail, code)
	assert.NotContains(t, errOut.String(), "outcome is unknown")
	assert.NotContains(t, errOut.String(), "committed offset + 1")
	assert.Contains(t, errOut.String(), "context deadline exceeded", "it says it was interrupted")
	_, stdout, _ := runOffsets("show", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-json")
	assert.Contains(t, stdout, `"committed": 2`, "nothing was committed")
}

// The offsets tool talks to Kafka only: a configuration whose Temporal
// secret is not mounted where the operator runs it still shows the
// offsets. (It was refused as a bad -config, exit 2: "temporal.api_key_file:
// stat ... no such file".)
func TestTheToolReadsAConfigWhoseTemporalSecretsAreNotHere(t *testing.T) {
	c := outcomeCluster(t)
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`kafka:
  brokers: [%q]
  group: g
temporal:
  tls: {enabled: true}
  api_key_file: /var/run/secrets/temporal/api-key
routes: [{topic: orders, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]
`, c.ListenAddrs()[0])), 0o600))
	code, stdout, stderr := runOffsets("show", "-config", path)
	assert.Equal(t, exitOK, code, "stderr: %s", stderr)
	assert.Contains(t, stdout, "orders")

	require.NoError(t, os.WriteFile(path, []byte("kafka:\n  brokers: [\"h:1\"]\n  group: g\n  isolation_level: sometimes\n"), 0o600))
	code, _, stderr = runOffsets("show", "-config", path)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "kafka.isolation_level", "the kafka section is still checked")
}

// A leader or coordinator that moves or is loading (a rolling restart of
// the brokers) makes show retry, not fail. (One NOT_LEADER answer to
// ListOffsets, or one COORDINATOR_LOAD_IN_PROGRESS to OffsetFetch, ended
// show with exit 1 and nothing printed.)
func TestShowRetriesALeaderOrCoordinatorThatMoves(t *testing.T) {
	for _, f := range []kfake.Fault{
		{Keys: []kmsg.Key{kmsg.ListOffsets}, Topic: "orders", Err: kerr.NotLeaderForPartition},
		{Keys: []kmsg.Key{kmsg.OffsetFetch}, Group: "g", Err: kerr.CoordinatorLoadInProgress},
	} {
		c := outcomeCluster(t)
		c.Fault(f) // once
		code, stdout, stderr := runOffsets("show", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders")
		assert.Equal(t, exitOK, code, "%s: %s", f.Err, stderr)
		assert.Contains(t, stdout, "orders", "%s", f.Err)
	}
}

// A move from a committed offset outside the log (the log truncated, or
// its records deleted) said how far it moved from that offset, which the
// bridge never resumes at: from 50 to 10 on a log of 10 records read
// "re-reads 40 offset(s)", where the bridge, resuming at the oldest
// record, would skip 10.
func TestAMoveFromAnOffsetOutsideTheLogCountsFromWhereTheBridgeResumes(t *testing.T) {
	c := outcomeCluster(t) // orders: 10 records
	commitAt(t, c, 50)
	for _, tc := range []struct{ initial, to, want string }{
		{"oldest", "10", "skips 10 offset(s) from 0, where the bridge would resume"},
		{"newest", "4", "re-reads 6 offset(s) from 10, where the bridge would resume"},
		{"oldest", "0", "commits 0, where the bridge would resume anyway"},
	} {
		code, stdout, stderr := runOffsetsEnv([]string{"SAGABRIDGE_KAFKA_INITIAL_OFFSET=" + tc.initial},
			"move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--to-offset", tc.to, "-dry-run")
		assert.Equal(t, exitOK, code, stderr)
		assert.Contains(t, stdout, tc.want, "initial offset %s, to %s", tc.initial, tc.to)
		assert.Contains(t, stdout, "(committed 50 is outside the log)", "initial offset %s, to %s", tc.initial, tc.to)
	}
}

// The group's describe, which show and move make first, failed at once on
// a coordinator loading (a rolling restart), which the reads after it
// retry.
func TestTheDescribeRetriesACoordinatorThatIsLoading(t *testing.T) {
	for _, args := range [][]string{
		{"show", "-group", "g", "-topic", "orders"},
		{"move", "-group", "g", "-topic", "orders", "-partition", "0", "--to-offset", "5", "-dry-run"},
	} {
		for _, err := range []*kerr.Error{kerr.CoordinatorLoadInProgress, kerr.NotCoordinator} {
			c := outcomeCluster(t)
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.DescribeGroups}, Group: "g", Err: err}) // once
			code, stdout, stderr := runOffsets(append(args, "-brokers", c.ListenAddrs()[0])...)
			assert.Equal(t, exitOK, code, "%s, %s:\n%s%s", args[0], err, stdout, stderr)
			assert.Equal(t, 1, h.Hits(), "%s, %s: the fault was not hit", args[0], err)
		}
	}
}

// A move interrupted before its commit went out (Ctrl-C) reads the offsets
// back anyway and says nothing moved. (It read back on the cancelled
// context too, and said the move's outcome was unknown.)
func TestAnInterruptedMoveSaysNothingMoved(t *testing.T) {
	c := outcomeCluster(t)
	commitAt(t, c, 1)
	ctx, cancel := context.WithCancel(context.Background())
	c.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		cancel() // the operator's Ctrl-C, as the commit goes out
		return nil, errors.New("connection lost"), true
	})
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"move", "-brokers", c.ListenAddrs()[0], "-group", "g", "-topic", "orders", "-partition", "0", "--to-offset", "3"}, nil, &out, &errOut)
	assert.Equal(t, exitFail, code)
	assert.NotContains(t, errOut.String(), "outcome is unknown")
	assert.Contains(t, errOut.String(), "nothing moved")
}
