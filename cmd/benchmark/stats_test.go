package main

import (
	"slices"
	"testing"
	"time"

	"github.com/sagabridge/sagabridge/internal/ledger"
)

func TestMatchSamplesPairsTheIthAppliedWithTheIthSent(t *testing.T) {
	s := time.Second
	sent := map[string][]time.Duration{"a": {0, 2 * s, 5 * s}, "b": {1 * s}}
	// a's ledger applied a warm-up record first (latency 900 ms), not measured.
	applied := map[string][]int64{"a": {900, 10, 20, 30}, "b": {40, 7}}
	got, err := matchSamples(sent, applied, 1)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y sample) int { return int(x.sent - y.sent) })
	want := []sample{{0, 10 * time.Millisecond}, {s, 7 * time.Millisecond}, {2 * s, 20 * time.Millisecond}, {5 * s, 30 * time.Millisecond}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := matchSamples(sent, map[string][]int64{"a": {10, 20, 30}, "b": {7}}, 1); err == nil {
		t.Fatal("a ledger that applied fewer events than were sent matched")
	}
}

func TestSummarizeSplitsTheTailBySendTime(t *testing.T) {
	// 60 s of sends, one every 10 ms; the latency grows with the send time,
	// as a queue that does not drain: 1 ms per second of stream.
	var samples []sample
	for at := time.Duration(0); at < 60*time.Second; at += 10 * time.Millisecond {
		samples = append(samples, sample{sent: at, latency: 5*time.Millisecond + at/1000})
	}
	st := summarize(samples, 20*time.Second)
	if st.events != 6000 {
		t.Fatalf("%d events, want 6000", st.events)
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	// first 20 s: latencies 5..25 ms, P99 ≈ 24.8; last 20 s: 45..65 ms, P99 ≈ 64.8.
	if ms(st.firstP99) != 24 || ms(st.lastP99) != 64 {
		t.Fatalf("first-20s P99 %v, last-20s P99 %v; want 24 ms and 64 ms", st.firstP99, st.lastP99)
	}
	// P50: the 3,000th of 6,000, sent at 29.99 s.
	if st.p50 != 34990*time.Microsecond || ms(st.p99) != 64 || ms(st.max) != 64 {
		t.Fatalf("P50 %v P99 %v max %v; want 34.99, 64, 64 ms", st.p50, st.p99, st.max)
	}
}

func TestSpreadOf(t *testing.T) {
	if s := spreadOf([]float64{3, 1, 2, 10}); s.med != 2.5 || s.lo != 1 || s.hi != 10 || s.n != 4 {
		t.Fatalf("got %+v", s)
	}
	if got := spreadOf([]float64{3, 1, 2}).format("%.0f"); got != "2 (1–3)" {
		t.Fatalf("format %q", got)
	}
	if got := spreadOf(nil).format("%.0f"); got != "–" {
		t.Fatalf("format %q", got)
	}
}

func TestHottestIsTheLedgerThatAppliedTheMost(t *testing.T) {
	states := map[string]ledger.State{"k-2": {Count: 7}, "k-0": {Count: 21}, "k-1": {Count: 21}, "k-3": {Count: 1}}
	if got := hottest(states); got != "k-0" {
		t.Fatalf("hottest = %q, want k-0 (the most applied, first in key order among equals)", got)
	}
}

// The percentile is the nearest rank: the smallest value with at least p
// of the values at or below it. int(p·n) was one rank high whenever p·n
// is whole: the P99 of 100 values was their maximum, the P50 of 2 their
// larger.
func TestPercentileIsTheNearestRank(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	for _, c := range []struct {
		vs   []time.Duration
		p    float64
		want time.Duration
	}{
		{hundred, 0.99, 99}, {hundred, 0.5, 50}, {hundred, 1, 100}, {hundred, 0.001, 1}, {hundred, 0.07, 7}, {hundred, 0, 1},
		{[]time.Duration{1, 2}, 0.5, 1}, {[]time.Duration{7}, 0.99, 7}, {hundred[:10], 0.99, 10},
	} {
		if got := percentile(c.vs, c.p); got != c.want {
			t.Errorf("P%g of %d values: %d, want %d", c.p*100, len(c.vs), got, c.want)
		}
	}
}
