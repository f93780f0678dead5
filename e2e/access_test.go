package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// An error about the bridge's own access is never the records' fault: an
// API key revoked mid-stream dead-letters nothing and commits nothing; every
// partition pauses, /readyz says why, the cause is logged once; when the key
// is rotated in its file the bridge resumes by itself and applies
// everything.
func TestARevokedAPIKeyDeadLettersNothingAndRecoversWhenRotated(t *testing.T) {
	e := newEnv(t, 2)
	p := newPKI(t)
	proxy := startAuthProxy(t, stack.Temporal.Address, p.serverTLS(false), "key-1")
	keyFile := filepath.Join(t.TempDir(), "api.key")
	require.NoError(t, os.WriteFile(keyFile, []byte("key-1\n"), 0o600))
	metricsURL := e.metricsAddr()
	var out syncBuffer
	proc := e.startBridgeProcessWith(e.ledgerTopic, proxy.addr, map[string]any{
		"temporal": map[string]any{"address": proxy.addr, "namespace": "default",
			"tls": map[string]any{"enabled": true, "ca_file": p.caFile}, "api_key_file": keyFile},
		"metrics":      map[string]any{"listen": strings.TrimPrefix(metricsURL, "http://")},
		"routes":       e.ledgerRoute(),
		"backpressure": map[string]any{"circuit": map[string]any{"open_for": "1s"}},
	}, &out)

	first := e.produceLedger(ledger.Stream(e.id+"-a-", 20, 200, 1.1, 101))
	e.assertLedgers(first, time.Minute)
	require.Eventually(t, func() bool { return committedTotal(t, e.ledgerTopic, e.ledgerTopic) == 200 },
		30*time.Second, 50*time.Millisecond, "the first records were never committed")

	proxy.Accept("key-2") // key-1 is revoked
	second := e.produceLedger(ledger.Stream(e.id+"-b-", 20, 200, 1.1, 102))
	e.assertRefused(metricsURL, &out)
	waitTwoHeartbeats(t, e.ledgerTopic)
	assert.Equal(t, int64(200), committedTotal(t, e.ledgerTopic, e.ledgerTopic), "an offset moved while Temporal refused the bridge")
	assert.Zero(t, endOffsets(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix)), "records were dead-lettered")
	body := httpBody(t, metricsURL+"/readyz")
	assert.Contains(t, body, "namespace default")
	assert.Contains(t, body, "the API key is not valid")

	require.NoError(t, os.WriteFile(keyFile, []byte("key-2\n"), 0o600)) // rotated
	e.assertLedgers(second, 2*time.Minute)
	assert.Equal(t, http.StatusOK, httpStatus(metricsURL+"/readyz"))
	assert.Zero(t, endOffsets(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix)), "records were dead-lettered")
	assert.Contains(t, out.String(), "Temporal accepts the bridge again")
	require.NoError(t, proc.Stop(20*time.Second))
}

// A mistyped namespace is found at start: the bridge reads its records but
// pauses every partition, dead-letters and commits nothing, and says so in
// /readyz and once in its log; when the namespace is created it resumes by
// itself.
func TestAMissingNamespaceDeadLettersNothingAndRecoversWhenCreated(t *testing.T) {
	e := newEnv(t, 2)
	ns := "e2e-missing-" + e.id
	metricsURL := e.metricsAddr()
	var out syncBuffer
	proc := e.startBridgeProcessWith(e.ledgerTopic, e.temporal, map[string]any{
		"temporal":     map[string]any{"address": e.temporal, "namespace": ns},
		"metrics":      map[string]any{"listen": strings.TrimPrefix(metricsURL, "http://")},
		"routes":       e.ledgerRoute(),
		"backpressure": map[string]any{"circuit": map[string]any{"open_for": "1s"}},
	}, &out)
	recs := e.produceLedger(ledger.Stream(e.id+"-", 10, 50, 1.1, 103))
	e.assertRefused(metricsURL, &out)
	waitTwoHeartbeats(t, e.ledgerTopic)
	assert.Zero(t, committedTotal(t, e.ledgerTopic, e.ledgerTopic), "an offset was committed")
	assert.Zero(t, endOffsets(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix)), "records were dead-lettered")
	assert.Contains(t, httpBody(t, metricsURL+"/readyz"), "namespace "+ns)
	assert.Contains(t, out.String(), `"namespace":"`+ns+`"`)

	nc, err := client.NewNamespaceClient(client.Options{HostPort: e.temporal, Logger: quietLogger()})
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.Register(context.Background(), &workflowservice.RegisterNamespaceRequest{
		Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)}))
	c, err := client.Dial(client.Options{HostPort: e.temporal, Namespace: ns, Logger: quietLogger()})
	require.NoError(t, err)
	defer c.Close()
	w := worker.New(c, e.taskQueue, worker.Options{})
	ledger.Register(w, ledger.Options{})
	require.NoError(t, w.Start())
	defer w.Stop()

	e.assertLedgersOn(c, recs, 2*time.Minute)
	assert.Zero(t, endOffsets(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix)), "records were dead-lettered")
	require.NoError(t, proc.Stop(20*time.Second))
}

// assertRefused waits until Temporal refuses the bridge's access and every
// claimed partition is paused for it, and checks the refusal was logged
// once, without a workflow ID.
func (e *env) assertRefused(metricsURL string, out *syncBuffer) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		fams := scrape(metricsURL)
		claimed, _ := fams.Sum("sagabridge_partitions_claimed", nil)
		denied, _ := fams.Sum("sagabridge_temporal_access_denied", nil)
		return denied == 1 && claimed > 0 && float64(pausedFor(fams, bridge.ReasonCircuitOpen)) == claimed
	}, time.Minute, 50*time.Millisecond, "the bridge never paused for the refusal; output:\n%s", lastLines(out.String(), 20))
	assert.Equal(e.t, http.StatusServiceUnavailable, httpStatus(metricsURL+"/readyz"))
	var refusals []string
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, "Temporal refuses the bridge's own access") {
			refusals = append(refusals, line)
		}
	}
	require.Len(e.t, refusals, 1, "the refusal is logged once")
	assert.NotContains(e.t, refusals[0], "workflow_id", "the refusal names no workflow (whose ID holds a key)")
	assert.NotContains(e.t, out.String(), "temporal call failed; retrying", "a refusal is not logged per call")
}

// waitTwoHeartbeats waits until group has heartbeated twice more: at
// least 3 s, past the bridge's 1 s auto-commit (an offset it marked in
// error has been committed by the time a test reads the committed
// offsets) and six of sarama's longest fetch waits (a partition whose
// pause did not hold has fetched).
func waitTwoHeartbeats(t *testing.T, group string) {
	t.Helper()
	beats := stack.Kafka.Heartbeats(group)
	require.Eventually(t, func() bool { return stack.Kafka.Heartbeats(group) >= beats+2 }, 30*time.Second, 20*time.Millisecond,
		"group %s stopped heartbeating", group)
}

// metricsAddr picks a free port for a bridge process's metrics listener.
func (e *env) metricsAddr() string {
	ports, err := devstack.FreePorts(1)
	require.NoError(e.t, err)
	return fmt.Sprintf("http://127.0.0.1:%d", ports[0])
}

// ledgerRoute is the routes section that consumes the ledger topic only.
func (e *env) ledgerRoute() []map[string]any {
	return []map[string]any{{"topic": e.ledgerTopic, "workflow_type": ledger.WorkflowType, "workflow_id": "ledger-{key}", "task_queue": e.taskQueue}}
}

// endOffsets sums topic's log-end offsets: how many records it ever held.
func endOffsets(t *testing.T, topic string) int64 {
	t.Helper()
	return logEnd(t, topic, sarama.ReadUncommitted)
}

// logEnd sums the end offsets of topic's partitions as a reader with iso
// sees them: the high-water marks (read_uncommitted) or the last stable
// offsets (read_committed), asked of each partition's leader.
func logEnd(t *testing.T, topic string, iso sarama.IsolationLevel) int64 {
	t.Helper()
	c, err := sarama.NewClient(stack.Kafka.Brokers, saramaAdminConfig())
	require.NoError(t, err)
	defer c.Close()
	parts, err := c.Partitions(topic)
	require.NoError(t, err)
	var sum int64
	for _, p := range parts {
		sum += partitionEnd(t, c, topic, p, iso)
	}
	return sum
}

// partitionEnd is topic/p's end offset as a reader with iso sees it,
// asked of its leader (sarama's GetOffset asks read_uncommitted).
func partitionEnd(t *testing.T, c sarama.Client, topic string, p int32, iso sarama.IsolationLevel) int64 {
	t.Helper()
	leader, err := c.Leader(topic, p)
	require.NoError(t, err)
	req := sarama.NewOffsetRequest(sarama.V3_6_0_0)
	req.IsolationLevel = iso
	req.AddBlock(topic, p, sarama.OffsetNewest, 1)
	resp, err := leader.GetAvailableOffsets(req)
	require.NoError(t, err)
	b := resp.GetBlock(topic, p)
	require.NotNil(t, b)
	require.Equal(t, sarama.ErrNoError, b.Err)
	return b.Offset
}

// httpBody GETs url and returns its body.
func httpBody(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
