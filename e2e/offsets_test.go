package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
	"github.com/sagabridge/sagabridge/internal/offsetscli"
)

// offsetsRun runs `bridge offsets args...` and returns its exit status and output.
func offsetsRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return bridgeRun(t, 30*time.Second, "offsets", args...)
}

// offsetsShow runs `bridge offsets show -json args...` and decodes its report.
func offsetsShow(t *testing.T, args ...string) offsetsReport {
	t.Helper()
	code, stdout, _ := offsetsRun(t, append([]string{"show", "-json"}, args...)...)
	require.Equal(t, 0, code)
	var r offsetscli.Report
	require.NoError(t, json.Unmarshal([]byte(stdout), &r))
	return offsetsReport{r}
}

// offsetsReport is a show report with look-ups for the test.
type offsetsReport struct{ offsetscli.Report }

// part returns the row of topic's partition p.
func (r offsetsReport) part(t *testing.T, topic string, p int32) offsetscli.PartitionReport {
	t.Helper()
	i := slices.IndexFunc(r.Partitions, func(pr offsetscli.PartitionReport) bool { return pr.Topic == topic && pr.Partition == p })
	require.GreaterOrEqual(t, i, 0, "no row for %s/%d", topic, p)
	return r.Partitions[i]
}

// offsetsConfig writes the bridge configuration the CLI reads for group:
// the test's Kafka, Temporal and routes, as startBridgeProcessWith writes them.
func (e *env) offsetsConfig(group string) string {
	e.t.Helper()
	doc := map[string]any{
		"kafka":    map[string]any{"brokers": stack.Kafka.Brokers, "group": group},
		"temporal": map[string]any{"address": e.temporal},
		"routes": []map[string]any{{
			"topic": e.topic, "type_header": saga.TypeHeader, "workflow_type": saga.WorkflowType,
			"workflow_id": "order-{key}", "task_queue": e.taskQueue, "signal": saga.Signal,
		}, {
			"topic": e.ledgerTopic, "workflow_type": ledger.WorkflowType, "workflow_id": "ledger-{key}", "task_queue": e.taskQueue,
		}},
	}
	data, err := yaml.Marshal(doc)
	require.NoError(e.t, err)
	path := filepath.Join(e.t.TempDir(), "offsets.yaml")
	require.NoError(e.t, os.WriteFile(path, data, 0o600))
	return path
}

// offsetsProduce sends n ledger records of key (announcing total) to
// topic's partition p, the i-th stamped at(i), and returns their offsets.
func offsetsProduce(t *testing.T, topic string, p int32, key string, n, total int, at func(i int) time.Time) []int64 {
	t.Helper()
	cfg := saga.ProducerConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(stack.Kafka.Brokers, cfg)
	require.NoError(t, err)
	defer prod.Close()
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		v, err := json.Marshal(ledger.Value{Seq: i + 1, Total: total})
		require.NoError(t, err)
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Partition: p, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(v), Timestamp: at(i)}
	}
	require.NoError(t, prod.SendMessages(msgs))
	offs := make([]int64, n)
	for i, m := range msgs {
		require.Equal(t, p, m.Partition)
		offs[i] = m.Offset
	}
	return offs
}

// offsetsCommitted reads group's committed offsets of topic's partitions
// with a sarama admin, independently of the CLI (-1: none), and checks
// they carry no metadata (the bridge commits none, and a move keeps it).
func offsetsCommitted(t *testing.T, group, topic string, parts ...int32) map[int32]int64 {
	t.Helper()
	got, meta, err := offsetsRead(group, topic, parts)
	require.NoError(t, err)
	assert.Empty(t, meta, "metadata committed with %s's offsets", topic)
	return got
}

// offsetsRead reads group's committed offsets of topic's partitions and
// the metadata of those that have any.
func offsetsRead(group, topic string, parts []int32) (map[int32]int64, map[int32]string, error) {
	admin, err := sarama.NewClusterAdmin(stack.Kafka.Brokers, saga.ProducerConfig())
	if err != nil {
		return nil, nil, err
	}
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return nil, nil, err
	}
	out, meta := map[int32]int64{}, map[int32]string{}
	for _, p := range parts {
		blk := resp.GetBlock(topic, p)
		if blk == nil {
			return nil, nil, fmt.Errorf("%s/%d: no answer", topic, p)
		}
		if !errors.Is(blk.Err, sarama.ErrNoError) {
			return nil, nil, fmt.Errorf("%s/%d: %w", topic, p, blk.Err)
		}
		out[p] = blk.Offset
		if blk.Metadata != "" {
			meta[p] = blk.Metadata
		}
	}
	return out, meta, nil
}

// offsetsWaitCommitted waits until group has committed want.
func offsetsWaitCommitted(t *testing.T, group, topic string, want map[int32]int64) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, _, err := offsetsRead(group, topic, []int32{0, 1})
		require.NoError(c, err)
		assert.Equal(c, want, got)
	}, 30*time.Second, 50*time.Millisecond, "committed offsets of %s", topic)
}

// The operator's view and tool, on the real broker and bridge process:
// show what a running bridge committed, its lag and why a partition is
// paused; refuse to move while it runs; with it stopped move by
// --skip-one, --to-offset and --to-time (refusing offsets outside the
// log), and a restarted bridge starts exactly at the moved offset.
func TestOffsetsShowMoveAndRestart(t *testing.T) {
	e := newEnv(t, 2)
	group, topic := e.topic, e.ledgerTopic
	cfgPath := e.offsetsConfig(group)
	ports, err := devstack.FreePorts(1)
	require.NoError(t, err)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	metricsURL := "http://" + metricsAddr
	px := startProxy(t, e.temporal)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	old := func(int) time.Time { return base.Add(-time.Minute) }
	k1, k2, k3, k4 := e.id+"-k1", e.id+"-k2", e.id+"-k3", e.id+"-k4"

	// A bridge consumes 4 records on partition 0 and 3 on partition 1.
	require.Equal(t, []int64{0, 1, 2, 3}, offsetsProduce(t, topic, 0, k1, 4, 4, old))
	require.Equal(t, []int64{0, 1, 2}, offsetsProduce(t, topic, 1, k2, 3, 3, old))
	var out syncBuffer
	p := e.startBridgeProcessWith(group, px.Addr(), map[string]any{
		"batch":   map[string]any{"max_records": 2, "max_in_flight": 2},
		"metrics": map[string]any{"listen": metricsAddr},
	}, &out)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for key, want := range map[string][]int64{k1: {0, 1, 2, 3}, k2: {0, 1, 2}} {
		st, err := e.ledgerResult(ctx, key)
		require.NoError(t, err)
		require.Equal(t, want, st.Offsets, "ledger %s", key)
	}
	offsetsWaitCommitted(t, group, topic, map[int32]int64{0: 4, 1: 3})
	rep := offsetsShow(t, "-config", cfgPath, "-metrics", metricsURL)
	require.Equal(t, "Stable", rep.State)
	require.Len(t, rep.Members, 1)
	member := rep.Members[0].ID
	for part, want := range map[int32]int64{0: 4, 1: 3} {
		r := rep.part(t, topic, part)
		require.NotNil(t, r.Committed, "partition %d", part)
		assert.Equal(t, want, *r.Committed, "partition %d committed", part)
		assert.Equal(t, want, r.End, "partition %d log end", part)
		assert.Equal(t, int64(0), r.Lag, "partition %d lag", part)
		assert.Equal(t, member, r.Owner, "partition %d owner", part)
		require.NotNil(t, r.Paused, "partition %d: the bridge reports its pause state", part)
		assert.False(t, *r.Paused, "partition %d paused", part)
	}
	orders := rep.part(t, e.topic, 0)
	assert.Nil(t, orders.Committed, "nothing committed on the unused orders topic")
	assert.Equal(t, int64(0), orders.Lag)

	// Temporal hangs: partition 1 holds its max_in_flight records and
	// pauses; show says so, with its lag.
	px.Freeze(true)
	require.Equal(t, []int64{3, 4, 5}, offsetsProduce(t, topic, 1, k4, 3, 3, old))
	require.Eventually(t, func() bool {
		return pausedFor(scrape(metricsURL), bridge.ReasonPartitionInFlight) > 0
	}, 20*time.Second, 20*time.Millisecond, "partition 1 never paused for its in-flight cap")
	rep = offsetsShow(t, "-config", cfgPath, "-metrics", metricsURL)
	r1 := rep.part(t, topic, 1)
	require.NotNil(t, r1.Paused)
	assert.True(t, *r1.Paused, "partition 1 paused")
	assert.Contains(t, r1.PauseReason, bridge.ReasonPartitionInFlight)
	assert.Equal(t, int64(3), r1.Lag, "partition 1: 3 records not committed")
	_, table, _ := offsetsRun(t, "-config", cfgPath, "-metrics", metricsURL)
	assert.Contains(t, table, "group "+group+": Stable, 1 member(s)")
	assert.Regexp(t, `(?m)^`+topic+` +1 +3 +0 +6 +3 +`+member+` +`+bridge.ReasonPartitionInFlight, table)

	// No move while a member is active: the refusal names it, nothing moves.
	code, _, stderr := offsetsRun(t, "move", "-config", cfgPath, "-topic", topic, "-partition", "0", "--skip-one")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "group "+group+" is Stable with 1 active member(s): "+member)
	assert.Equal(t, map[int32]int64{0: 4, 1: 3}, offsetsCommitted(t, group, topic, 0, 1))

	px.Freeze(false)
	st, err := e.ledgerResult(ctx, k4)
	require.NoError(t, err)
	require.Equal(t, []int64{3, 4, 5}, st.Offsets)
	offsetsWaitCommitted(t, group, topic, map[int32]int64{0: 4, 1: 6})
	require.NoError(t, p.Stop(20*time.Second), "bridge output:\n%s", out.String())

	// Stopped: six records on partition 0, a minute apart; k3's ledger
	// closes after 3 (the ones after the moves below).
	k3Offsets := offsetsProduce(t, topic, 0, k3, 6, 3, func(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) })
	require.Equal(t, []int64{4, 5, 6, 7, 8, 9}, k3Offsets)
	brokers := strings.Join(stack.Kafka.Brokers, ",")
	rep = offsetsShow(t, "-brokers", brokers, "-group", group, "-topic", topic)
	assert.Equal(t, "Empty", rep.State)
	assert.Equal(t, int64(6), rep.part(t, topic, 0).Lag)
	assert.Equal(t, int64(0), rep.part(t, topic, 1).Lag)

	move := func(args ...string) (int, string) {
		code, stdout, stderr := offsetsRun(t, append([]string{"move", "-config", cfgPath, "-topic", topic}, args...)...)
		return code, stdout + stderr
	}
	code, _ = move("-partition", "0", "--skip-one")
	require.Equal(t, 0, code)
	assert.Equal(t, map[int32]int64{0: 5, 1: 6}, offsetsCommitted(t, group, topic, 0, 1))
	code, _ = move("-partition", "0", "--to-offset", "9")
	require.Equal(t, 0, code)
	assert.Equal(t, map[int32]int64{0: 9, 1: 6}, offsetsCommitted(t, group, topic, 0, 1))

	// Outside the log: refused, naming the partition and the range.
	code, msg := move("-partition", "0", "--to-offset", "11")
	assert.Equal(t, 1, code)
	assert.Contains(t, msg, topic+"/0: offset 11 is beyond the log end: valid offsets are 0 (log start) to 10 (log end)")
	admin, err := sarama.NewClusterAdmin(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	defer admin.Close()
	require.NoError(t, admin.DeleteRecords(topic, map[int32]int64{1: 1}))
	code, msg = move("-partition", "1", "--to-offset", "0")
	assert.Equal(t, 1, code)
	assert.Contains(t, msg, topic+"/1: offset 0 is before the log start: valid offsets are 1 (log start) to 6 (log end)")
	assert.Equal(t, map[int32]int64{0: 9, 1: 6}, offsetsCommitted(t, group, topic, 0, 1))

	// --to-time over every partition: partition 0 back to k3's 4th record
	// (the first at or after 2m30s), partition 1 has no record that
	// recent and stays at its log end. -dry-run commits nothing.
	at := base.Add(150 * time.Second).Format(time.RFC3339)
	code, msg = move("--to-time", at, "-dry-run")
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^`+topic+` +0 +9 +7 +re-reads 2 offset\(s\)$`, msg)
	assert.Equal(t, map[int32]int64{0: 9, 1: 6}, offsetsCommitted(t, group, topic, 0, 1))
	code, msg = move("--to-time", at)
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^`+topic+` +1 +6 +6 +unchanged$`, msg)
	assert.Equal(t, map[int32]int64{0: 7, 1: 6}, offsetsCommitted(t, group, topic, 0, 1))

	// A restarted bridge starts at the moved offsets: k3's ledger applies
	// exactly offsets 7, 8 and 9.
	p = e.startBridgeProcess(group, &out)
	st, err = e.ledgerResult(ctx, k3)
	require.NoError(t, err)
	assert.Equal(t, k3Offsets[3:], st.Offsets, "the restarted bridge delivered from the moved offset on")
	offsetsWaitCommitted(t, group, topic, map[int32]int64{0: 10, 1: 6})
	require.NoError(t, p.Stop(20*time.Second))

	// A group that does not exist yet (Dead) takes a first offset.
	fresh := group + "-fresh"
	code, stdout, _ := offsetsRun(t, "move", "-brokers", brokers, "-group", fresh, "-topic", topic, "-partition", "1", "--to-offset", "2")
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "first commit")
	got, _, err := offsetsRead(fresh, topic, []int32{1})
	require.NoError(t, err)
	assert.Equal(t, map[int32]int64{1: 2}, got)
}
