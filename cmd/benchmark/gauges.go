package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sagabridge/sagabridge/internal/promtext"
)

// gaugeSample is the engine's state at one moment, read from its metrics.
type gaugeSample struct {
	at          time.Time
	limit       float64  // sagabridge_concurrency_limit
	window      float64  // sagabridge_dispatch_window_seconds
	lag         float64  // sagabridge_workflow_task_lag_seconds
	held        float64  // sagabridge_in_flight_records
	uncommitted float64  // sagabridge_consumer_lag: records not yet committable
	paused      float64  // partitions paused
	reasons     []string // why, sorted: the reasons of sagabridge_partition_paused
	retries     float64  // sagabridge_call_retries_total
	callSeconds float64  // sagabridge_call_duration_seconds: the sum, every outcome
	calls       float64  // and the count
}

// gaugeSampler reads an engine's metrics every interval, so that a
// timeline can say what its flow control did while a tail grew (the
// concurrency limit, the dispatch window, what it held and what it could
// not commit yet). Safe for concurrent use.
type gaugeSampler struct {
	mu      sync.Mutex
	samples []gaugeSample
	stop    chan struct{}
	done    chan struct{}
}

// sampleGauges starts reading h's /metrics every interval until stopped.
func sampleGauges(h http.Handler, interval time.Duration) *gaugeSampler {
	g := &gaugeSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-tick.C:
			}
			if s, ok := readGauges(h); ok {
				g.mu.Lock()
				g.samples = append(g.samples, s)
				g.mu.Unlock()
			}
		}
	}()
	return g
}

// readGauges scrapes h once; false when it cannot be read.
func readGauges(h http.Handler) (gaugeSample, bool) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	fams, err := promtext.Parse(rec.Body)
	if err != nil {
		return gaugeSample{}, false
	}
	v := func(name string) float64 { x, _ := fams.Sum(name, nil); return x }
	var callSeconds, calls float64
	if fam, ok := fams["sagabridge_call_duration_seconds"]; ok {
		for _, m := range fam.GetMetric() {
			callSeconds += m.GetHistogram().GetSampleSum()
			calls += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return gaugeSample{at: time.Now(), limit: v("sagabridge_concurrency_limit"), window: v("sagabridge_dispatch_window_seconds"),
		lag: v("sagabridge_workflow_task_lag_seconds"), held: v("sagabridge_in_flight_records"), uncommitted: v("sagabridge_consumer_lag"),
		paused: v("sagabridge_partition_paused"), reasons: pauseReasons(fams), retries: v("sagabridge_call_retries_total"),
		callSeconds: callSeconds, calls: calls}, true
}

// pauseReasons lists, sorted, every reason a paused partition gives (its
// sagabridge_partition_paused reason label, comma-separated); nil when
// none is paused.
func pauseReasons(fams promtext.Families) []string {
	fam, ok := fams["sagabridge_partition_paused"]
	if !ok {
		return nil
	}
	var reasons []string
	for _, m := range fam.GetMetric() {
		if m.GetGauge().GetValue() <= 0 && m.GetUntyped().GetValue() <= 0 { // typed, or read without its TYPE line
			continue
		}
		for _, l := range m.GetLabel() {
			if l.GetName() != "reason" {
				continue
			}
			for r := range strings.SplitSeq(l.GetValue(), ",") {
				if r != "" && !slices.Contains(reasons, r) {
					reasons = append(reasons, r)
				}
			}
		}
	}
	slices.Sort(reasons)
	return reasons
}

// close stops the sampler.
func (g *gaugeSampler) close() {
	close(g.stop)
	<-g.done
}

// timeline sums the samples up in buckets of step counted from start:
// per bucket the concurrency limit (median and lowest), the window and the
// sampled lag (medians), the most records held and not yet committable, the
// share of samples with a paused partition (with the most partitions
// paused at once and every reason given, when any was), the retries
// made, and the calls made per second with their mean duration (a server
// that nears its capacity answers SignalWithStart more slowly).
func (g *gaugeSampler) timeline(start time.Time, step time.Duration) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	buckets := map[int][]gaugeSample{}
	last := -1
	for _, s := range g.samples {
		if s.at.Before(start) {
			continue
		}
		i := int(s.at.Sub(start) / step)
		buckets[i] = append(buckets[i], s)
		last = max(last, i)
	}
	var b strings.Builder
	prevRetries := -1.0
	var prev *gaugeSample
	for i := 0; i <= last; i++ {
		ss := buckets[i]
		if len(ss) == 0 {
			continue
		}
		col := func(f func(gaugeSample) float64) []float64 {
			out := make([]float64, len(ss))
			for j, s := range ss {
				out[j] = f(s)
			}
			slices.Sort(out)
			return out
		}
		limit := col(func(s gaugeSample) float64 { return s.limit })
		window := col(func(s gaugeSample) float64 { return s.window })
		lag := col(func(s gaugeSample) float64 { return s.lag })
		held := col(func(s gaugeSample) float64 { return s.held })
		uncommitted := col(func(s gaugeSample) float64 { return s.uncommitted })
		paused, most := 0, 0.0
		var reasons []string
		for _, s := range ss {
			if s.paused > 0 {
				paused++
			}
			most = max(most, s.paused)
			for _, r := range s.reasons {
				if !slices.Contains(reasons, r) {
					reasons = append(reasons, r)
				}
			}
		}
		slices.Sort(reasons)
		why := ""
		if paused > 0 {
			why = fmt.Sprintf(" (up to %.0f: %s)", most, strings.Join(reasons, ", "))
		}
		retries := ss[len(ss)-1].retries
		if prevRetries < 0 {
			prevRetries = ss[0].retries
		}
		first, end := ss[0], ss[len(ss)-1]
		if prev != nil {
			first = *prev
		}
		perSec, mean := 0.0, 0.0
		if n := end.calls - first.calls; n > 0 {
			perSec, mean = n/end.at.Sub(first.at).Seconds(), (end.callSeconds-first.callSeconds)/n
		}
		fmt.Fprintf(&b, "    %4.0f s: engine limit %2.0f (min %2.0f)  window %4.0f ms  lag %5.0f ms  held max %6.0f  uncommitted max %6.0f  paused %3.0f%%  retries %4.0f  calls %4.0f/s of %4.0f ms%s\n",
			(time.Duration(i) * step).Seconds(), limit[len(limit)/2], limit[0], window[len(window)/2]*1000, lag[len(lag)/2]*1000,
			held[len(held)-1], uncommitted[len(uncommitted)-1], 100*float64(paused)/float64(len(ss)), retries-prevRetries, perSec, mean*1000, why)
		prevRetries = retries
		prev = &end
	}
	return b.String()
}
