package e2e

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/bridge/temporalsdk"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// splitTemporal sends the calls for one task queue through another
// Temporal seam: here one bound to a namespace that does not exist, so the
// real server refuses them (NamespaceNotFound) while every other call goes
// through as usual.
type splitTemporal struct {
	bridge.Temporal
	badQueue string
	bad      bridge.Temporal
}

func (s splitTemporal) SignalWithStart(ctx context.Context, target bridge.Target, batch event.Batch) error {
	if target.TaskQueue == s.badQueue {
		return s.bad.SignalWithStart(ctx, target, batch)
	}
	return s.Temporal.SignalWithStart(ctx, target, batch)
}

// Two routes, two task queues. Temporal refuses every call for one of them
// (its calls go to a namespace that does not exist): that route's circuit
// opens and its topic pauses, while the other route's records keep being
// delivered; nothing is dead-lettered. The in-flight budget is small (200
// records) and the refused topic holds more than that: it keeps its share
// (target_share), and the healthy topic's 300 records go through the
// other share.
func TestRouteCircuitOpensForItsTaskQueueOnly(t *testing.T) {
	e := newEnv(t, 2)
	badQueue := e.taskQueue + "-refused"
	bad, err := client.Dial(client.Options{HostPort: e.temporal, Namespace: "e2e-absent-" + e.id, Logger: quietLogger()})
	require.NoError(t, err)
	defer bad.Close()
	b, stop := e.runBridgeOn(e.ledgerTopic, func(good bridge.Temporal) bridge.Temporal {
		return splitTemporal{Temporal: good, badQueue: badQueue, bad: temporalsdk.Client{Client: bad}}
	}, func(c *config.Config) {
		c.Backpressure.Circuit = config.Circuit{Failures: 3, OpenFor: time.Minute}
		c.Batch.MaxRecords, c.Backpressure.MaxRecords = 50, 200
		c.Routes = []config.Route{
			{Topic: e.ledgerTopic, WorkflowType: ledger.WorkflowType, WorkflowID: "ledger-{key}", TaskQueue: e.taskQueue},
			{Topic: e.topic, WorkflowType: ledger.WorkflowType, WorkflowID: "ledger-{key}", TaskQueue: badQueue},
		}
	})
	defer stop()
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()

	_, err = ledger.Produce(e.producer, e.topic, ledger.Stream(e.id+"-refused-", 4, 600, 1.1, 7))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(e.bridgeLogs.String(), "opened") },
		30*time.Second, 20*time.Millisecond, "the refused route's circuit never opened")

	// The refused route's circuit is open; the other route still delivers.
	start := time.Now()
	healthy := e.produceLedger(ledger.Stream(e.id+"-ok-", 5, 300, 1.1, 11))
	e.assertLedgers(healthy, 20*time.Second)
	t.Logf("the healthy route delivered in %s while the other circuit was open", time.Since(start).Round(time.Millisecond))

	fams := scrape(srv.URL)
	var refusedPaused, healthyPaused int
	for _, m := range fams["sagabridge_partition_paused"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if !strings.Contains(labels["reason"], bridge.ReasonCircuitOpen) {
			continue
		}
		switch labels["topic"] {
		case e.topic:
			refusedPaused++
		case e.ledgerTopic:
			healthyPaused++
		}
	}
	assert.Equal(t, 2, refusedPaused, "both partitions of the refused route's topic are paused for its circuit")
	assert.Zero(t, healthyPaused, "no partition of the healthy route's topic is paused for the circuit")
	assert.Zero(t, endOffsets(t, dlq.TopicFor(e.topic, dlq.DefaultSuffix)), "records of the refused route were dead-lettered")
	assert.Zero(t, b.Stats().DeadLettered)
}

// A route named in Go (bridge.WithRouteFunc) with start options: every
// workflow it starts carries the route's run timeout, memo and search
// attribute, as DescribeWorkflowExecution shows; a record the function
// cannot route goes to the DLQ with class route and the partition moves on.
func TestRouteStartOptionsAndRouteFunc(t *testing.T) {
	e := newEnv(t, 2)
	recs := ledger.Stream(e.id+"-", 3, 12, 1.1, 5)
	at := e.produceLedger(recs)
	_, _, err := e.producer.SendMessage(&sarama.ProducerMessage{Topic: e.ledgerTopic, Key: sarama.StringEncoder("unroutable"), Value: sarama.StringEncoder(`{"seq":1,"total":1}`)})
	require.NoError(t, err)
	routeFunc := func(rec *sarama.ConsumerMessage) (string, error) {
		if string(rec.Key) == "unroutable" {
			return "", errors.New("no ledger for this key")
		}
		return "ledger-" + string(rec.Key), nil
	}
	_, stop := e.runBridgeOn(e.ledgerTopic, func(t bridge.Temporal) bridge.Temporal { return t }, func(c *config.Config) {
		c.Routes = []config.Route{{
			Name: "ledgers", Topic: e.ledgerTopic, WorkflowType: ledger.WorkflowType, WorkflowID: "unused-{key}", TaskQueue: e.taskQueue,
			RunTimeout: time.Hour, Memo: map[string]any{"team": "billing"},
			SearchAttributes: map[string]config.SearchAttribute{saga.StatusSearchAttribute: {Type: config.SearchAttributeKeyword, Value: "imported"}},
		}}
	}, bridge.WithRouteFunc("ledgers", routeFunc))
	defer stop()
	e.assertLedgers(at, time.Minute)

	for key := range at {
		desc, err := e.tc.DescribeWorkflowExecution(context.Background(), "ledger-"+key, "")
		require.NoError(t, err)
		assert.Equal(t, time.Hour, desc.GetExecutionConfig().GetWorkflowRunTimeout().AsDuration(), "run timeout of ledger-%s", key)
		var team, status string
		require.NoError(t, converter.GetDefaultDataConverter().FromPayload(desc.GetWorkflowExecutionInfo().GetMemo().GetFields()["team"], &team))
		assert.Equal(t, "billing", team, "memo of ledger-%s", key)
		sa := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[saga.StatusSearchAttribute]
		require.NotNil(t, sa, "search attribute of ledger-%s", key)
		require.NoError(t, converter.GetDefaultDataConverter().FromPayload(sa, &status))
		assert.Equal(t, "imported", status)
	}
	got := readAll(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix), 1, 30*time.Second)
	require.Len(t, got, 1)
	f, err := dlq.Parse(got[0])
	require.NoError(t, err)
	assert.Equal(t, dlq.ClassRoute, f.Class)
	assert.Contains(t, f.Err, "no ledger for this key")
}
