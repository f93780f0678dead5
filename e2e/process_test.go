package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// syncBuffer collects a process's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBridgeProcess runs the cmd/bridge binary in group with a config file
// written for this test.
func (e *env) startBridgeProcess(group string, out *syncBuffer) *devstack.Process {
	return e.startBridgeProcessVia(group, e.temporal, out)
}

// startBridgeProcessVia is startBridgeProcess with the Temporal address given.
func (e *env) startBridgeProcessVia(group, temporalAddr string, out *syncBuffer) *devstack.Process {
	return e.startBridgeProcessWith(group, temporalAddr, nil, out)
}

// startBridgeProcessWith is startBridgeProcessVia with more top-level
// config sections (for example "backpressure" or "metrics").
func (e *env) startBridgeProcessWith(group, temporalAddr string, extra map[string]any, out *syncBuffer) *devstack.Process {
	e.t.Helper()
	cfg := e.config(group)
	doc := map[string]any{
		"kafka":    map[string]any{"brokers": cfg.Kafka.Brokers, "group": group},
		"temporal": map[string]any{"address": temporalAddr},
		"dispatch": map[string]any{"retry_initial": "50ms", "retry_max": "1s", "drain_timeout": "5s"},
		"routes": []map[string]any{{
			"topic": e.topic, "type_header": saga.TypeHeader, "workflow_type": saga.WorkflowType,
			"workflow_id": "order-{key}", "task_queue": e.taskQueue, "signal": saga.Signal,
		}, {
			"topic": e.ledgerTopic, "workflow_type": ledger.WorkflowType, "workflow_id": "ledger-{key}", "task_queue": e.taskQueue,
		}},
	}
	maps.Copy(doc, extra)
	data, err := yaml.Marshal(doc)
	require.NoError(e.t, err)
	path := filepath.Join(e.t.TempDir(), "bridge.yaml")
	require.NoError(e.t, os.WriteFile(path, data, 0o600))
	p, err := devstack.StartProcess(out, bridgeBin, "-config", path, "-log-level", "info")
	require.NoError(e.t, err)
	e.t.Cleanup(func() {
		p.Kill()
		if e.t.Failed() {
			e.t.Logf("bridge output:\n%s", out.String())
		}
	})
	return p
}

func TestBridgeKilledMidStreamLosesAndReordersNothing(t *testing.T) {
	e := newEnv(t, 4)
	orders := saga.Orders(e.id+"-", 80, 21)
	at := e.produce(orders)
	group := e.topic
	rng := seededRand(t, 1)
	var out syncBuffer
	for kill := range 3 {
		assigned := strings.Count(out.String(), "partitions assigned")
		p := e.startBridgeProcess(group, &out)
		// Let it own partitions and deliver part of the stream, then crash it.
		require.Eventually(t, func() bool { return strings.Count(out.String(), "partitions assigned") > assigned },
			60*time.Second, 20*time.Millisecond, "bridge %d never got partitions", kill+1)
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		p.Kill()
		t.Logf("kill %d done", kill+1)
	}
	p := e.startBridgeProcess(group, &out)
	deduped := 0
	for _, o := range orders {
		st := e.result(o.ID, 120*time.Second)
		assert.Equal(t, o.Want.Status, st.Status, "order %s", o.ID)
		assert.Equal(t, at[o.ID], positions(st.Applied), "order %s: every record applied once, in offset order", o.ID)
		deduped += st.Stats.Deduped
	}
	require.NoError(t, p.Stop(20*time.Second), "bridge output:\n%s", out.String())
	t.Logf("%d redelivered records were deduplicated by their workflows", deduped)
}

// The moment a bridge that commits too early loses data is when a call
// hangs: the record is marked, the periodic commit writes it, and a crash
// then skips it. Deliver a first half of the orders, freeze Temporal's
// traffic, produce the second half (so it is read and in flight for
// certain), let two auto-commit ticks pass, and kill the bridge right then.
// A bridge that marks an offset before Temporal accepted the record loses
// the second half here.
func TestBridgeKilledWhileTemporalHangsLosesNothing(t *testing.T) {
	e := newEnv(t, 2)
	orders := saga.Orders(e.id+"-", 20, 41)
	first, second := orders[:10], orders[10:]
	at := e.produce(first)
	px := startCapturingProxy(t, stack.Temporal.Address)
	var out syncBuffer
	p := e.startBridgeProcessVia(e.topic, px.Addr(), &out)
	for _, o := range first {
		e.result(o.ID, 60*time.Second)
	}
	px.Freeze(true)
	maps.Copy(at, e.produce(second))
	// Wait until the second half's calls hang in the proxy, then for two
	// heartbeats of the bridge (3 s apart, so at least two 1 s auto-commit
	// ticks pass while the calls hang): a bridge that marks an offset
	// before Temporal accepted its record has committed it by then.
	// A call for an order of the second half, not any traffic (the
	// backlog polls go through the proxy too).
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(second, func(o saga.Order) bool { return px.Holds("order-" + o.ID) })
	}, 30*time.Second, 10*time.Millisecond, "the bridge never called Temporal for the second half")
	beats := stack.Kafka.Heartbeats(e.topic)
	require.Eventually(t, func() bool { return stack.Kafka.Heartbeats(e.topic) >= beats+2 }, 30*time.Second, 10*time.Millisecond,
		"the bridge stopped heartbeating while its calls hung")
	p.Kill()
	px.Freeze(false)

	p = e.startBridgeProcess(e.topic, &out)
	for _, o := range orders {
		st := e.result(o.ID, 90*time.Second)
		assert.Equal(t, at[o.ID], positions(st.Applied), "order %s: every record applied once, in offset order", o.ID)
	}
	require.NoError(t, p.Stop(20*time.Second))
}

// temporal.grpc_compression must reach the wire: a bridge on "gzip" sends
// no workflow ID as it is; one on the default over plaintext ("auto", so
// none) sends them plain; both deliver every record.
func TestGRPCCompressionReachesTheWire(t *testing.T) {
	e := newEnv(t, 2)
	orders := saga.Orders(e.id+"-", 20, 51)
	first, second := orders[:10], orders[10:]
	at := e.produce(first)
	var out syncBuffer
	gz := startCapturingProxy(t, stack.Temporal.Address)
	p := e.startBridgeProcessWith(e.topic, gz.Addr(), map[string]any{
		"temporal": map[string]any{"address": gz.Addr(), "grpc_compression": "gzip"}}, &out)
	for _, o := range first {
		st := e.result(o.ID, 60*time.Second)
		assert.Equal(t, at[o.ID], positions(st.Applied), "order %s", o.ID)
	}
	require.NoError(t, p.Stop(20*time.Second), "output:\n%s", out.String())
	for _, o := range first {
		assert.False(t, gz.Sent("order-"+o.ID), "with gzip, workflow ID order-%s went out uncompressed", o.ID)
	}

	plain := startCapturingProxy(t, stack.Temporal.Address)
	p = e.startBridgeProcessVia(e.topic, plain.Addr(), &out)
	maps.Copy(at, e.produce(second))
	for _, o := range second {
		st := e.result(o.ID, 60*time.Second)
		assert.Equal(t, at[o.ID], positions(st.Applied), "order %s", o.ID)
		assert.True(t, plain.Sent("order-"+o.ID), "by default over plaintext, workflow ID order-%s was not sent as it is", o.ID)
	}
	require.NoError(t, p.Stop(20*time.Second), "output:\n%s", out.String())
}

func TestBridgeSIGTERMCommitsEverythingAndLeavesTheGroup(t *testing.T) {
	e := newEnv(t, 3)
	orders := saga.Orders(e.id+"-", 20, 31)
	at := e.produce(orders)
	var out syncBuffer
	p := e.startBridgeProcess(e.topic, &out)
	for _, o := range orders {
		st := e.result(o.ID, 60*time.Second)
		assert.Equal(t, at[o.ID], positions(st.Applied), "order %s", o.ID)
	}
	require.NoError(t, p.Stop(20*time.Second), "bridge must exit 0 on SIGTERM; output:\n%s", out.String())
	assert.Contains(t, out.String(), "left the group")

	// Every partition's committed offset is its end: a restart would
	// redeliver nothing.
	admin, err := sarama.NewClusterAdmin(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	defer admin.Close()
	client, err := sarama.NewClient(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	defer client.Close()
	committed, err := admin.ListConsumerGroupOffsets(e.topic, nil)
	require.NoError(t, err)
	end := map[int32]int64{}
	for _, ps := range at {
		for _, pos := range ps {
			end[pos.Partition] = max(end[pos.Partition], pos.Offset+1)
		}
	}
	for part, want := range end {
		blk := committed.GetBlock(e.topic, part)
		require.NotNil(t, blk, "partition %d has no committed offset", part)
		assert.Equal(t, want, blk.Offset, "partition %d committed offset", part)
		newest, err := client.GetOffset(e.topic, part, sarama.OffsetNewest)
		require.NoError(t, err)
		assert.Equal(t, newest, blk.Offset, "partition %d: committed offset is the log end", part)
	}
}

// A run ended by a -timeout or a panic skips its deferred cleanups and
// left its race-built binaries (54 MB) in the temporary directory; the
// next run removes them, and not those of a run still going.
func TestTheBinariesOfARunThatDiedAreRemovedByTheNext(t *testing.T) {
	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	dead, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, gone.ProcessState.Pid()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dead) })
	require.NoError(t, os.WriteFile(filepath.Join(dead, "bridge"), []byte("binary"), 0o600))
	alive, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, os.Getpid()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(alive) })

	removeStaleBinDirs()
	assert.NoDirExists(t, dead)
	assert.DirExists(t, alive)
}
