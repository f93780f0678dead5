package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/ledger"
	"github.com/sagabridge/sagabridge/internal/promtext"
)

// scrape reads a bridge's /metrics; nil if it does not answer in time.
func scrape(url string) promtext.Families {
	fams, _ := promtext.Scrape(url)
	return fams
}

// pausedFor counts the partitions paused for reason, among others.
func pausedFor(fams promtext.Families, reason string) int {
	n := 0
	for _, m := range fams["sagabridge_partition_paused"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" && slices.Contains(strings.Split(l.GetValue(), ","), reason) {
				n++
			}
		}
	}
	return n
}

// Stop the worker while events flow: the task queue's backlog crosses the
// high-water mark and the bridge pauses the topics that feed it (the
// metrics and the log say why); start the worker again: the bridge
// resumes and every event is applied once, in order.
func TestTaskQueueBacklogPausesTheBridgeUntilTheWorkerReturns(t *testing.T) {
	e := newEnv(t, 4)
	e.stopWorker()
	b, _ := e.runBridgeWith(e.topic, func(c *config.Config) {
		c.Backpressure.Backlog = config.Backlog{
			PollInterval: 200 * time.Millisecond, HighTasks: 20, LowTasks: 2, HighAge: time.Minute, LowAge: 10 * time.Second,
		}
	})
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()

	recs := ledger.Stream(e.id+"-", 400, 6000, 1.1, 61)
	wait := e.produceInBackground(recs, 8*time.Second)
	reason := bridge.ReasonBacklog + ":" + e.taskQueue
	require.Eventually(t, func() bool { return pausedFor(scrape(srv.URL), reason) > 0 }, 60*time.Second, 100*time.Millisecond,
		"the bridge never paused for the backlog of %s", e.taskQueue)
	fams := scrape(srv.URL)
	up, _ := fams.Sum("sagabridge_task_queue_backed_up", map[string]string{"task_queue": e.taskQueue})
	assert.Equal(t, 1.0, up)
	tasks, _ := fams.Sum("sagabridge_task_queue_backlog_tasks", map[string]string{"task_queue": e.taskQueue})
	assert.GreaterOrEqual(t, tasks, 20.0)
	assert.Contains(t, e.bridgeLogs.String(), "pausing partitions: task queue backed up")

	// Paused means paused: records produced now (for keys of their own)
	// stay in Kafka until the worker is back. The bridge sees them in its
	// lag, and no workflow of theirs starts. Records fetched before the
	// pause are still delivered, so first let any fetch in flight at the
	// pause return: two heartbeats of the group are at least 3 s, six
	// times sarama's longest fetch wait.
	waitTwoHeartbeats(t, e.topic)
	before := b.Stats().Delivered
	// The lag, or false when /metrics did not answer (a failed scrape is
	// not a lag of 0).
	lag := func() (float64, bool) {
		fams := scrape(srv.URL)
		if fams == nil {
			return 0, false
		}
		v, _ := fams.Sum("sagabridge_consumer_lag", nil)
		return v, true
	}
	var lagBefore float64
	require.Eventually(t, func() bool { v, ok := lag(); lagBefore = v; return ok }, 30*time.Second, 50*time.Millisecond, "/metrics never answered")
	const extra = 200
	extraAt := e.produceLedger(ledger.Stream(e.id+"-paused-", 20, extra, 1.1, 62))
	require.Eventually(t, func() bool { v, ok := lag(); return ok && v >= lagBefore+extra }, 30*time.Second, 50*time.Millisecond,
		"the bridge never saw the records produced while paused")
	// The lag comes from a poll of the log ends, not from a fetch: two
	// more heartbeats (at least 3 s, six of sarama's longest fetch waits)
	// pass the point where a pause that did not hold would have fetched
	// and delivered the records.
	waitTwoHeartbeats(t, e.topic)
	for key := range extraAt {
		_, err := e.tc.DescribeWorkflowExecution(t.Context(), "ledger-"+key, "")
		var notFound *serviceerror.NotFound
		assert.ErrorAs(t, err, &notFound, "ledger %s started: a record produced during the pause was delivered", key)
	}
	assert.Less(t, before, uint64(len(recs)), "the bridge delivered everything before pausing; the test proves nothing")
	lagNow, _ := lag()
	t.Logf("paused after delivering %d of %d records; backlog %v tasks; lag %.0f", before, len(recs), tasks, lagNow)

	e.startWorker()
	at := wait()
	maps.Copy(at, extraAt)
	require.Eventually(t, func() bool { fams := scrape(srv.URL); return fams != nil && pausedFor(fams, reason) == 0 }, 60*time.Second, 100*time.Millisecond,
		"the bridge never resumed")
	assert.Contains(t, e.bridgeLogs.String(), "task queue backlog below the low-water mark")
	e.assertLedgers(at, 120*time.Second)
}

// Stop the Temporal server for 60 s mid-stream and start it again on the
// same database file: the bridge opens its circuit and pauses, holds no
// more than its in-flight budget while records keep arriving in Kafka,
// reconnects by itself, and every event is applied once, in order.
func TestTemporalDownForAMinuteLosesNothingAndHoldsMemoryFlat(t *testing.T) {
	logFile, err := os.Create(filepath.Join(t.TempDir(), "temporal.log"))
	require.NoError(t, err)
	ports, err := devstack.FreePorts(1)
	require.NoError(t, err)
	opts := devstack.TemporalOptions{Port: ports[0], DBFile: filepath.Join(t.TempDir(), "temporal.db"), Output: logFile,
		DynamicConfig: []string{devstack.BoundedLongPolls}}
	ctx := context.Background()
	temporal, err := devstack.StartTemporal(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = temporal.Close() })

	e := newEnvOn(t, 4, temporal.Address)
	const maxRecords = 500
	// Picked once the server listens: its own ports, drawn by StartTemporal
	// from the same range, could take the metrics port if it were picked
	// (and released) first. When it restarts, the bridge holds it.
	metricsPort, err := devstack.FreePorts(1)
	require.NoError(t, err)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", metricsPort[0])
	var out syncBuffer
	p := e.startBridgeProcessWith(e.topic, temporal.Address, map[string]any{
		"backpressure": map[string]any{
			"max_records": maxRecords, "circuit": map[string]any{"failures": 3, "open_for": "2s"},
			"backlog": map[string]any{"poll_interval": "500ms"},
		},
		"batch":   map[string]any{"max_records": 100},
		"metrics": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", metricsPort[0])},
	}, &out)

	// About 100 s of stream: before, during and after the outage.
	recs := ledger.Stream(e.id+"-", 300, 12_000, 1.1, 71)
	wait := e.produceInBackground(recs, 90*time.Second)
	require.Eventually(t, func() bool {
		v, _ := scrape(metricsURL).Sum("sagabridge_records_delivered_total", nil)
		return v > 500
	}, 60*time.Second, 200*time.Millisecond, "the bridge delivered nothing before the outage")

	require.NoError(t, temporal.Close())
	down := time.Now()
	var rss, held, lag []float64
	var readAfterOpen []string // samples where a partition read, or /readyz said ready, once the circuit had opened
	for time.Since(down) < 60*time.Second {
		time.Sleep(time.Second)
		// Read the log before the scrape: the bridge pauses before it logs
		// that the circuit opened, so a scrape taken after the line was
		// read must show the pause.
		opened := strings.Contains(out.String(), "circuit to Temporal opened")
		fams := scrape(metricsURL)
		require.NotNil(t, fams, "the bridge stopped serving metrics during the outage; output:\n%s", out.String())
		r, _ := fams.Sum("process_resident_memory_bytes", nil)
		h, _ := fams.Sum("sagabridge_in_flight_records", nil)
		l, _ := fams.Sum("sagabridge_consumer_lag", nil)
		rss, held, lag = append(rss, r), append(held, h), append(lag, l)
		if opened {
			// Open or half-open, every partition stays paused for the
			// circuit until a probe succeeds, and the bridge is not ready.
			claimed, _ := fams.Sum("sagabridge_partitions_claimed", nil)
			if n := pausedFor(fams, bridge.ReasonCircuitOpen); float64(n) != claimed {
				readAfterOpen = append(readAfterOpen, fmt.Sprintf("%s: %d of %.0f partitions paused for the circuit",
					time.Since(down).Round(time.Second), n, claimed))
			}
			if code := httpStatus(metricsURL + "/readyz"); code != http.StatusServiceUnavailable {
				readAfterOpen = append(readAfterOpen, fmt.Sprintf("%s: /readyz %d", time.Since(down).Round(time.Second), code))
			}
		}
	}
	assert.Empty(t, readAfterOpen, "the circuit had opened, yet:")
	// Every partition is paused: the circuit is open, or half-open while a
	// probe call waits and the in-flight budget is full.
	fams := scrape(metricsURL)
	claimed, _ := fams.Sum("sagabridge_partitions_claimed", nil)
	paused, _ := fams.Sum("sagabridge_partition_paused", nil)
	assert.Equal(t, 8.0, claimed)
	assert.Equal(t, claimed, paused, "every partition should be paused at the end of the outage")
	opened, _ := fams.Sum("sagabridge_pauses_total", map[string]string{"reason": bridge.ReasonCircuitOpen})
	assert.GreaterOrEqual(t, opened, 1.0, "the circuit never opened")
	assert.Contains(t, out.String(), "circuit to Temporal opened")

	restarted, err := devstack.StartTemporal(ctx, opts) // a variable of its own: the first server's cleanup must not see nil
	require.NoError(t, err)
	t.Cleanup(func() { _ = restarted.Close() })
	at := wait()
	e.assertLedgers(at, 180*time.Second)
	assert.Contains(t, out.String(), "circuit to Temporal closed")
	require.NoError(t, p.Stop(20*time.Second))

	// The budget held while the records waited in Kafka: past the cap, each
	// claimed partition holds at most what sarama had fetched before the
	// pause (its channel buffer), counted while the claim watches for
	// revocation.
	assert.LessOrEqual(t, slices.Max(held), float64(maxRecords+8*connect.ChannelBufferSize), "in-flight records exceeded the budget")
	assert.Greater(t, lag[len(lag)-1], lag[0], "lag should have grown in Kafka during the outage")
	first, last := slices.Max(rss[5:30]), slices.Max(rss[30:])
	t.Logf("outage: RSS max %.1f MiB in seconds 5-30, %.1f MiB in seconds 30-60; in-flight max %.0f; lag %.0f → %.0f",
		first/(1<<20), last/(1<<20), slices.Max(held), lag[0], lag[len(lag)-1])
	assert.LessOrEqual(t, last, first+16<<20, "RSS kept growing while Temporal was down")
	if t.Failed() {
		t.Logf("bridge output:\n%s", lastLines(out.String(), 80))
	}
}

// httpStatus is the status code of a GET of url, 0 if it fails.
func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
