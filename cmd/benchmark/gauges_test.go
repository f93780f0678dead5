package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The sampler reads the bridge's gauges from its /metrics, and sums them
// up per bucket: median and lowest limit, median window and lag, the most
// held and not yet committable, the paused share (with the most paused at
// once and why), the retries made and the calls per second with their
// mean duration.
func TestGaugesAreReadAndSummedUpPerBucket(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(strings.Join([]string{
			"sagabridge_concurrency_limit 48",
			"sagabridge_dispatch_window_seconds 0.5",
			"sagabridge_workflow_task_lag_seconds 0.25",
			"sagabridge_in_flight_records 1200",
			`sagabridge_consumer_lag{topic="t",partition="0"} 30`,
			`sagabridge_consumer_lag{topic="t",partition="1"} 12`,
			`sagabridge_partition_paused{topic="t",partition="0",reason="task_queue_backlog:q,in_flight"} 1`,
			`sagabridge_partition_paused{topic="t",partition="1",reason="in_flight"} 1`,
			`sagabridge_partition_paused{topic="t",partition="2",reason=""} 0`,
			"sagabridge_call_retries_total 7",
			"# TYPE sagabridge_call_duration_seconds histogram",
			`sagabridge_call_duration_seconds_bucket{outcome="ok",le="+Inf"} 40`,
			`sagabridge_call_duration_seconds_sum{outcome="ok"} 2`,
			`sagabridge_call_duration_seconds_count{outcome="ok"} 40`,
			`sagabridge_call_duration_seconds_bucket{outcome="retryable",le="+Inf"} 2`,
			`sagabridge_call_duration_seconds_sum{outcome="retryable"} 1`,
			`sagabridge_call_duration_seconds_count{outcome="retryable"} 2`,
		}, "\n") + "\n"))
	})
	s, ok := readGauges(h)
	require.True(t, ok)
	assert.Equal(t, gaugeSample{at: s.at, limit: 48, window: 0.5, lag: 0.25, held: 1200, uncommitted: 42, paused: 2,
		reasons: []string{"in_flight", "task_queue_backlog:q"}, retries: 7, callSeconds: 3, calls: 42}, s)

	t0 := time.Unix(1_700_000_000, 0)
	g := &gaugeSampler{samples: []gaugeSample{
		{at: t0.Add(-time.Second), limit: 1}, // before the stream: left out
		{at: t0.Add(1 * time.Second), limit: 64, window: 0.1, held: 10, retries: 2, calls: 100, callSeconds: 5},
		{at: t0.Add(2 * time.Second), limit: 48, window: 0.2, held: 30, paused: 1, reasons: []string{"in_flight"}, retries: 3, calls: 150, callSeconds: 7},
		{at: t0.Add(3 * time.Second), limit: 16, window: 0.3, held: 20, paused: 3, reasons: []string{"partition_in_flight"}, retries: 5,
			calls: 300, callSeconds: 11},
		{at: t0.Add(11 * time.Second), limit: 4, window: 1, uncommitted: 900, retries: 9, calls: 380, callSeconds: 19},
	}}
	lines := strings.Split(strings.TrimRight(g.timeline(t0, 10*time.Second), "\n"), "\n")
	require.Len(t, lines, 2, "%q", lines)
	assert.Equal(t, "       0 s: engine limit 48 (min 16)  window  200 ms  lag     0 ms  held max     30  uncommitted max      0  paused  67%  retries    3  calls  100/s of   30 ms (up to 3: in_flight, partition_in_flight)", lines[0])
	assert.Equal(t, "      10 s: engine limit  4 (min  4)  window 1000 ms  lag     0 ms  held max      0  uncommitted max    900  paused   0%  retries    4  calls   10/s of  100 ms", lines[1])
}
