package main

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sagabridge/sagabridge/internal/ledger"
)

// sample is one measured event: when it was sent, counted from the start
// of the stream, and how long after its send its ledger applied it.
type sample struct {
	sent, latency time.Duration
}

// matchSamples pairs each key's applied latencies with its sent events.
// sent lists, per key, the send times of the key's measured events in send
// order; applied lists, per key, the ledger's latencies in the order it
// applied them (State.LatencyMillis), the first skip of them (warm-up
// records) not measured. A ledger applies its key's events in the order
// they were sent, so its i-th measured latency is its i-th sent event's.
// A key whose ledger applied a different number of events is an error.
func matchSamples(sent map[string][]time.Duration, applied map[string][]int64, skip int) ([]sample, error) {
	var out []sample
	for k, ts := range sent {
		lat := applied[k]
		if len(lat) != skip+len(ts) {
			return nil, fmt.Errorf("key %s: ledger applied %d events, want %d (%d warm-up + %d sent)", k, len(lat), skip+len(ts), skip, len(ts))
		}
		for i, t := range ts {
			out = append(out, sample{sent: t, latency: time.Duration(lat[skip+i]) * time.Millisecond})
		}
	}
	return out, nil
}

// latencyStats sums up one run's samples.
type latencyStats struct {
	events   int
	p50, p99 time.Duration
	max      time.Duration
	// firstP99 is the P99 of the events sent in the first segment of the
	// stream, lastP99 of those sent in its last segment: a tail that grows
	// over the stream shows as lastP99 above firstP99.
	firstP99, lastP99 time.Duration
}

// summarize returns the percentiles of samples, overall and over the
// events sent within segment of the first and of the last send.
func summarize(samples []sample, segment time.Duration) latencyStats {
	if len(samples) == 0 {
		return latencyStats{}
	}
	first, last := samples[0].sent, samples[0].sent
	for _, s := range samples {
		first, last = min(first, s.sent), max(last, s.sent)
	}
	var all, early, late []time.Duration
	for _, s := range samples {
		all = append(all, s.latency)
		if s.sent < first+segment {
			early = append(early, s.latency)
		}
		if s.sent > last-segment {
			late = append(late, s.latency)
		}
	}
	for _, v := range [][]time.Duration{all, early, late} {
		slices.Sort(v)
	}
	return latencyStats{events: len(all), p50: percentile(all, 0.5), p99: percentile(all, 0.99), max: all[len(all)-1],
		firstP99: percentile(early, 0.99), lastP99: percentile(late, 0.99)}
}

// percentile returns the p-th percentile (0..1) of sorted durations, by
// nearest rank: the smallest value with at least p of them at or below it
// (p·n less a hair, so 0.07·100 = 7.000000000000001 is rank 7).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted)) - 1e-9))
	return sorted[min(len(sorted), max(rank, 1))-1]
}

// spread is the median and range of a figure over runs.
type spread struct {
	med, lo, hi float64
	n           int
}

// spreadOf returns the median and range of vs (zero for none).
func spreadOf(vs []float64) spread {
	if len(vs) == 0 {
		return spread{}
	}
	v := slices.Sorted(slices.Values(vs))
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return spread{med: med, lo: v[0], hi: v[len(v)-1], n: len(v)}
}

// format prints the median with its range (the range only over several
// runs) with the given verb, e.g. "%.0f".
func (s spread) format(verb string) string {
	if s.n == 0 {
		return "–"
	}
	if s.n == 1 {
		return fmt.Sprintf(verb, s.med)
	}
	return fmt.Sprintf(verb+" ("+verb+"–"+verb+")", s.med, s.lo, s.hi)
}

// timeline describes a run in buckets of width step: for the events sent in
// each bucket, their P50 and P99 latency; and how many events were applied
// (sent plus latency) in each. A stall shows as buckets that apply nothing
// while latencies of the events sent before it jump; a lack of capacity as
// latencies that grow bucket after bucket while each applies about as
// many events as the server can take.
func timeline(samples []sample, step time.Duration) string {
	if len(samples) == 0 || step <= 0 {
		return ""
	}
	var end time.Duration
	for _, s := range samples {
		end = max(end, s.sent+s.latency)
	}
	n := int(end/step) + 1
	sent := make([][]time.Duration, n)
	applied := make([]int, n)
	for _, s := range samples {
		sent[s.sent/step] = append(sent[s.sent/step], s.latency)
		applied[(s.sent+s.latency)/step]++
	}
	var b strings.Builder
	for i := range n {
		slices.Sort(sent[i])
		fmt.Fprintf(&b, "    %4.0f s: sent %6d  P50 %6d  P99 %6d ms | applied %6d\n", (time.Duration(i) * step).Seconds(),
			len(sent[i]), percentile(sent[i], 0.5).Milliseconds(), percentile(sent[i], 0.99).Milliseconds(), applied[i])
	}
	return b.String()
}

// keyLatency is one ledger's measured latencies, summed up.
type keyLatency struct {
	key      string
	st       ledger.State
	p50, max int64
}

// rankSlowest returns every ledger that measured an event, the highest
// maximum latency first (ties by key).
func rankSlowest(states map[string]ledger.State, skip int) []keyLatency {
	var ks []keyLatency
	for k, st := range states {
		lat := slices.Clone(st.LatencyMillis[min(skip, len(st.LatencyMillis)):])
		if len(lat) == 0 {
			continue
		}
		slices.Sort(lat)
		ks = append(ks, keyLatency{key: k, st: st, p50: lat[len(lat)/2], max: lat[len(lat)-1]})
	}
	slices.SortFunc(ks, func(a, b keyLatency) int { return cmp.Or(cmp.Compare(b.max, a.max), cmp.Compare(a.key, b.key)) })
	return ks
}

// slowestKeys lists the first n of ranked: how many events each applied,
// in how many runs (ContinueAsNew), and its latency at the median and at
// the maximum.
func slowestKeys(ranked []keyLatency, skip, n int) string {
	var b strings.Builder
	for _, k := range ranked[:min(n, len(ranked))] {
		fmt.Fprintf(&b, "    slow key %s: %d events in %d runs, P50 %d ms, max %d ms\n", k.key, len(k.st.LatencyMillis)-skip, k.st.Runs, k.p50, k.max)
	}
	return b.String()
}

// hottest returns the key whose ledger applied the most records (the
// first in key order among equals).
func hottest(states map[string]ledger.State) string {
	var hot string
	for k, st := range states {
		if hot == "" || st.Count > states[hot].Count || (st.Count == states[hot].Count && k < hot) {
			hot = k
		}
	}
	return hot
}
