package offsetscli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// part is partition orders/2 with log 10..57 (high watermark 60 under an
// open transaction), committed at 41 with metadata "m".
func part() Partition {
	return Partition{Topic: "orders", Partition: 2, Committed: 41, Metadata: "m", LogStart: 10, HighWatermark: 60, End: 57}
}

func TestPlan(t *testing.T) {
	none := part()
	none.Committed, none.Metadata = noOffset, ""
	for _, tc := range []struct {
		name string
		mode Mode
		arg  int64
		p    Partition
		want int64
		err  string
	}{
		{name: "skip one", mode: SkipOne, arg: noOffset, p: part(), want: 42},
		{name: "skip one past a commit marker", mode: SkipOne, arg: 43, p: part(), want: 44},
		{name: "skip one at the log end's last record", mode: SkipOne, arg: noOffset, p: Partition{Topic: "t", Committed: 59, HighWatermark: 60, End: 60}, want: 60},
		{name: "skip one past the log end", mode: SkipOne, arg: noOffset, p: Partition{Topic: "t", Committed: 60, HighWatermark: 60, End: 60},
			err: "t/0: offset 61 is beyond the log end: valid offsets are 0 (log start) to 60 (log end)"},
		{name: "skip one with nothing committed", mode: SkipOne, arg: noOffset, p: none, err: "orders/2: --skip-one: the group has committed no offset here"},
		{name: "skip one below a truncated log start", mode: SkipOne, arg: noOffset, p: Partition{Topic: "t", Committed: 3, LogStart: 10, HighWatermark: 20, End: 20},
			err: "t/0: offset 4 is before the log start: valid offsets are 10 (log start) to 20 (log end)"},
		{name: "to offset back", mode: ToOffset, arg: 12, p: part(), want: 12},
		{name: "to offset at the log start", mode: ToOffset, arg: 10, p: part(), want: 10},
		{name: "to offset at the high watermark", mode: ToOffset, arg: 60, p: part(), want: 60},
		{name: "to offset before the log start", mode: ToOffset, arg: 9, p: part(),
			err: "orders/2: offset 9 is before the log start: valid offsets are 10 (log start) to 60 (log end)"},
		{name: "to offset beyond the log end", mode: ToOffset, arg: 61, p: part(),
			err: "orders/2: offset 61 is beyond the log end: valid offsets are 10 (log start) to 60 (log end)"},
		{name: "to offset with nothing committed", mode: ToOffset, arg: 20, p: none, want: 20},
		{name: "to time found", mode: ToTime, arg: 30, p: part(), want: 30},
		{name: "to time after every record: the end the bridge reads to", mode: ToTime, arg: noOffset, p: part(), want: 57},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := plan(tc.mode, tc.arg, tc.p)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, Move{Topic: tc.p.Topic, Partition: tc.p.Partition, From: tc.p.Committed, To: tc.want, Metadata: tc.p.Metadata}, m)
		})
	}
}

func TestPlanErrorsAreTyped(t *testing.T) {
	_, err := plan(ToOffset, 99, part())
	var re *RangeError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, RangeError{Topic: "orders", Partition: 2, Offset: 99, Start: 10, End: 60}, *re)
	p := part()
	p.Committed = noOffset
	_, err = plan(SkipOne, 0, p)
	assert.ErrorIs(t, err, ErrNoCommitted)
}

func TestPlanAllJoinsEveryPartitionsError(t *testing.T) {
	a, b, c := part(), part(), part()
	b.Partition, b.LogStart = 3, 50
	c.Partition = 4
	moves, err := planAll(ToOffset, func(Partition) int64 { return 20 }, []Partition{a, b, c})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "orders/3: offset 20 is before the log start")
	assert.Len(t, moves, 2)
}

func TestLag(t *testing.T) {
	p := part()
	assert.Equal(t, int64(16), p.Lag(true), "end (the LSO) minus committed")
	p.Committed = noOffset
	assert.Equal(t, int64(47), p.Lag(true), "nothing committed, oldest: from the log start")
	assert.Equal(t, int64(0), p.Lag(false), "nothing committed, newest: nothing to read")
	p.Committed = 59 // past the LSO: an open transaction's records
	assert.Equal(t, int64(0), p.Lag(true))
	assert.False(t, p.OutOfRange())
}

// A committed offset outside the log is marked, and its lag counts from
// where the bridge starts again (kafka.initial_offset). (Before the log
// start it counted deleted records; past the end it showed lag 0 for a
// group that re-reads the whole log.)
func TestLagOfACommittedOffsetOutsideTheLog(t *testing.T) {
	p := part() // log start 10, end 57, high watermark 60
	p.Committed = 3
	assert.True(t, p.OutOfRange())
	assert.Equal(t, int64(47), p.Lag(true), "oldest: from the log start")
	assert.Equal(t, int64(0), p.Lag(false), "newest: from the end")
	p.Committed = 500 // the log was truncated
	assert.True(t, p.OutOfRange())
	assert.Equal(t, int64(47), p.Lag(true))
	var b bytes.Buffer
	Report{Partitions: []PartitionReport{{Topic: "orders", Committed: &p.Committed, LogStart: 10, End: 57, HighWatermark: 57, Lag: 47, OutOfRange: true}}}.writeTable(&b)
	assert.Contains(t, b.String(), "500!")
	assert.Contains(t, b.String(), "! the committed offset is outside the log")
}

func TestMoveFlags(t *testing.T) {
	one := []string{"orders"}
	for _, tc := range []struct {
		name   string
		f      moveFlags
		set    []string
		topics []string
		want   Mode
		err    string
	}{
		{name: "skip one", f: moveFlags{partition: 1, skipOne: true}, set: []string{"skip-one", "partition"}, topics: one, want: SkipOne},
		{name: "to offset", f: moveFlags{partition: 1, toOffset: 5}, set: []string{"to-offset", "partition"}, topics: one, want: ToOffset},
		{name: "to time, every partition", set: []string{"to-time"}, topics: []string{"a", "b"}, want: ToTime},
		{name: "none", set: []string{"partition"}, topics: one, err: "exactly one of"},
		{name: "two", f: moveFlags{skipOne: true}, set: []string{"skip-one", "to-offset", "partition"}, topics: one, err: "exactly one of"},
		{name: "skip one needs a partition", f: moveFlags{skipOne: true}, set: []string{"skip-one"}, topics: one, err: "--skip-one moves one partition"},
		{name: "to offset needs a partition", set: []string{"to-offset"}, topics: one, err: "--to-offset moves one partition"},
		{name: "partition needs one topic", f: moveFlags{partition: 0}, set: []string{"to-time", "partition"}, topics: []string{"a", "b"}, err: "-partition needs exactly one -topic"},
		{name: "negative partition", f: moveFlags{partition: -3}, set: []string{"to-time", "partition"}, topics: one, err: "-partition -3"},
		{name: "negative offset", f: moveFlags{partition: 0, toOffset: -2}, set: []string{"to-offset", "partition"}, topics: one, err: "--to-offset -2"},
		{name: "skip one false", f: moveFlags{partition: 0}, set: []string{"skip-one", "partition"}, topics: one, err: "--skip-one=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := map[string]bool{}
			for _, s := range tc.set {
				set[s] = true
			}
			m, err := tc.f.mode(set, tc.topics)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, m)
		})
	}
}

func TestActiveErrorNamesTheMembers(t *testing.T) {
	err := &ActiveError{Group: Group{ID: "g", State: "Stable", Members: []Member{
		{ID: "m-1", ClientID: "sagabridge", Host: "/10.0.0.5"},
		{ID: "m-2", ClientID: "sagabridge", Host: "/10.0.0.6", InstanceID: "bridge-1"},
	}}}
	assert.Equal(t, "group g is Stable with 2 active member(s): m-1 (client sagabridge, host /10.0.0.5); "+
		"m-2 (client sagabridge, host /10.0.0.6, instance bridge-1); stop every bridge of the group first "+
		"(a static member, kafka.instance_id, stays a member until its session times out)", err.Error())
	for _, s := range []string{"Empty", "Dead"} {
		assert.True(t, Group{State: s}.movable(), s)
	}
	for _, s := range []string{"Stable", "PreparingRebalance", "CompletingRebalance"} {
		assert.False(t, Group{State: s}.movable(), s)
	}
}

func TestMetricsURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.0.0.5:9464":          "http://10.0.0.5:9464/metrics",
		"http://10.0.0.5:9464/":         "http://10.0.0.5:9464/metrics",
		"https://b.example/metrics":     "https://b.example/metrics",
		"http://b.example/bridge-1":     "http://b.example/bridge-1/metrics",
		"http://b.example/x/metrics///": "http://b.example/x/metrics",
	} {
		got, err := metricsURL(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := metricsURL("10.0.0.5:9464")
	assert.ErrorContains(t, err, `-metrics "10.0.0.5:9464": give an http:// or https:// URL`)
}

func TestPausedPartitions(t *testing.T) {
	text := `# TYPE sagabridge_partition_paused gauge
sagabridge_partition_paused{partition="0",reason="",topic="orders"} 0
sagabridge_partition_paused{partition="1",reason="task_queue_backlog:orders",topic="orders"} 1
sagabridge_partition_paused{partition="2",reason="dlq_unavailable",topic="orders"} 1
sagabridge_partition_paused{partition="x",reason="in_flight",topic="orders"} 1
# TYPE sagabridge_partitions_claimed gauge
sagabridge_partitions_claimed 3
`
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	require.NoError(t, err)
	assert.Equal(t, map[tp]string{
		{"orders", 0}: "", {"orders", 1}: "task_queue_backlog:orders", {"orders", 2}: "dlq_unavailable",
	}, pausedPartitions(fams))
}

func TestReportTable(t *testing.T) {
	c41 := int64(41)
	paused, flowing := true, false
	r := Report{
		Group:     Group{ID: "orders-bridge", State: "Stable", Members: []Member{{ID: "m-1", ClientID: "sagabridge", Host: "/10.0.0.5"}}},
		Isolation: "read_committed",
		Partitions: []PartitionReport{
			{Topic: "orders", Partition: 0, Committed: &c41, LogStart: 0, End: 57, HighWatermark: 60, Lag: 16, Owner: "m-1", Paused: &paused, PauseReason: "in_flight"},
			{Topic: "orders", Partition: 1, LogStart: 0, End: 3, HighWatermark: 3, Lag: 3, Paused: &flowing},
			{Topic: "orders", Partition: 2, LogStart: 0, End: 0, HighWatermark: 0},
		},
		pausesKnown: true,
	}
	var b bytes.Buffer
	r.writeTable(&b)
	assert.Equal(t, `group orders-bridge: Stable, 1 member(s); log end is the last stable offset (read_committed)
  member m-1 (client sagabridge, host /10.0.0.5)
TOPIC   PARTITION  COMMITTED  LOG-START  LOG-END  LAG  OWNER  PAUSED
orders  0          41         0          57*      16   m-1    in_flight
orders  1          -          0          3        3    -      no
orders  2          -          0          0        0    -      ?
* an open transaction holds records beyond this offset, up to the high watermark (-json: high_watermark)
`, b.String())
}

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"show", "-brokers", "h:1"}, "-group is required without -config"},
		{[]string{"show", "-brokers", "h:1", "-group", "g"}, "-topic is required without -config"},
		{[]string{"show", "-group", "g", "-topic", "t"}, "-brokers or -config is required"},
		{[]string{"show", "-brokers", "h:1", "-group", "g", "-topic", "t", "-metrics", "h:9464"}, "give an http:// or https:// URL"},
		{[]string{"move", "-brokers", "h:1", "-group", "g", "-topic", "t", "-partition", "0"}, "exactly one of"},
		{[]string{"move", "-brokers", "h:1", "-group", "g", "-topic", "t", "--to-time", "yesterday"}, "not an RFC 3339 time"},
		{[]string{"show", "-config", "/nonexistent/bridge.yaml"}, "-config: read config"},
		// A script's unset $TOPIC is not every routed topic (it moved them all).
		{[]string{"move", "-brokers", "h:1", "-group", "g", "-topic", "", "--to-time", "2026-01-01T00:00:00Z"}, `-topic "" names no topic`},
		{[]string{"show", "-brokers", "h:1", "-group", "g", "-topic", ","}, `-topic "," names no topic`},
		// Before 1970 is ListOffsets' "latest" (-1) or "earliest" (-2): it planned to skip everything.
		{[]string{"move", "-brokers", "h:1", "-group", "g", "-topic", "t", "--to-time", "1969-12-31T23:59:59.999Z"}, "before 1970"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, nil, &out, &errOut)
		assert.Equal(t, exitUsage, code, "%v", tc.args)
		assert.Contains(t, errOut.String(), tc.err, "%v", tc.args)
	}
	var out bytes.Buffer
	assert.Equal(t, exitOK, run(context.Background(), []string{"help"}, nil, &out, &out))
	assert.Contains(t, out.String(), "bridge offsets [<command>]")
}
