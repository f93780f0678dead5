package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sagabridge/sagabridge/internal/ledger"
)

// The shapes of the steady stream.
const (
	// shapeWarm is warm entities: every key's ledger is running, having
	// applied one warm-up record sent the same way, before the clock starts.
	shapeWarm = "warm"
	// shapeNew is new sagas: every key's ledger starts with the stream.
	shapeNew = "new"
)

// latencyKeys is how many keys the steady stream spreads over.
const latencyKeys = 1_000

// latencyMode is one way of feeding the stream to Temporal: the engine
// (window 0), or the fixed-window plain client (d) with its window.
type latencyMode struct {
	name   string
	window time.Duration
}

// latencyRun is one mode's stream on a fresh server.
type latencyRun struct {
	stats latencyStats
	// calls are the calls to Temporal for the measured stream (not the
	// warm-up).
	calls int
	// holds are the calls held back until a workflow applied what it was
	// sent (path.holds), over the warm-up and the stream (the warm-up, one
	// record per workflow, cannot fill a window).
	holds int
	// probe is the server's capacity, measured right before the stream.
	probe capacity
	// cpu is what the server and this process used over the warm-up, the
	// stream and its drain.
	cpu cpuUse
}

// latencyCell is every run of one shape and rate: per mode, one per round.
type latencyCell struct {
	shape string
	rate  float64
	runs  map[string][]latencyRun
}

// latencyModes returns the engine and a window client per o.windows.
func (o options) latencyModes() []latencyMode {
	modes := []latencyMode{{name: "engine"}}
	for _, w := range o.windows {
		modes = append(modes, latencyMode{name: w.String(), window: w})
	}
	return modes
}

// latencies runs the steady stream for each shape and rate, o.rounds
// rounds of every mode, each on a fresh server, in the order roundOrder
// gives. peak is what an "Nx" rate multiplies. On an error it returns the
// shapes and rates it completed.
func (h *harness) latencies(ctx context.Context, peak float64) ([]*latencyCell, error) {
	rates, err := parseRates(h.o.latencyRates, peak)
	if err != nil {
		return nil, err
	}
	var cells []*latencyCell
	for _, shape := range h.o.shapes {
		for _, rate := range rates {
			cell := &latencyCell{shape: shape, rate: rate, runs: map[string][]latencyRun{}}
			for round := range h.o.rounds {
				for _, m := range roundOrder(h.o.latencyModes(), round) {
					r, err := h.latencyRun(ctx, shape, rate, m)
					if err != nil {
						return cells, fmt.Errorf("latency %s %.0f events/s %s round %d: %w", shape, rate, m.name, round+1, err)
					}
					printRun(shape, rate, m.name, round, r)
					cell.runs[m.name] = append(cell.runs[m.name], r)
				}
			}
			cells = append(cells, cell)
		}
	}
	return cells, nil
}

// roundOrder is the order in which round runs the modes: each round starts
// one mode later than the one before, so that over len(modes) rounds every
// mode runs once in every place. Reversing the order every other round, as
// this did before, kept the engine and the last window at the ends and the
// others between, so a client could not be told from its place: in the six
// full runs of 2026-12-04 to 2026-12-06 the ends ranked 2.2 of 4 on
// average and the places between 2.8, which was as much the clients there
// as their places (the first rotated run, 2026-12-06, showed no advantage
// at the ends).
func roundOrder(modes []latencyMode, round int) []latencyMode {
	k := round % len(modes)
	return append(slices.Clone(modes[k:]), modes[:k]...)
}

// parseRates reads -latency-rates; "Nx" is N times peak.
func parseRates(list string, peak float64) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		rate, err := strconv.ParseFloat(strings.TrimSuffix(f, "x"), 64)
		if err != nil || rate <= 0 {
			return nil, fmt.Errorf("-latency-rates: %q is not a rate", f)
		}
		if strings.HasSuffix(f, "x") {
			rate *= peak
		}
		out = append(out, rate)
	}
	return out, nil
}

// latencyRun starts a fresh server, probes its capacity, and streams
// o.latencyFor of events at rate through mode m.
func (h *harness) latencyRun(ctx context.Context, shape string, rate float64, m latencyMode) (latencyRun, error) {
	var out latencyRun
	err := h.onFreshTemporal(ctx, func() error {
		c, err := h.probe(ctx)
		if err != nil {
			return err
		}
		out.probe = c
		name := h.fresh("latency-"+shape+"-"+m.name, workload{name: fmt.Sprintf("%.0f", rate)})
		recs := ledger.Stream(name+"-", latencyKeys, int(rate*h.o.latencyFor.Seconds()), h.o.zipf, 2)
		var warm []ledger.Record
		if shape == shapeWarm {
			warm = warmUp(recs)
		}
		stop, err := h.startWorker(name)
		if err != nil {
			return fmt.Errorf("start a worker on %s: %w", name, err)
		}
		defer stop()
		var p path
		if m.window == 0 {
			p, err = h.openEngine(ctx, name)
		} else {
			p = h.openWindow(ctx, name, m.window)
		}
		if err != nil {
			return err
		}
		if m.window > 0 && h.o.windowBurn > 0 {
			burnCtx, stopBurn := context.WithCancel(ctx)
			defer stopBurn()
			go burn(burnCtx, h.o.windowBurn)
		}
		holds, cpu := p.holds(), markCPU(h.temporal.Pid())
		out.stats, out.calls, err = h.measure(ctx, name, p, recs, warm, rate)
		out.holds, out.cpu = p.holds()-holds, cpu.since(h.temporal.Pid())
		return cmp.Or(err, p.close())
	})
	return out, err
}

// measure sends warm (if any) through p and waits until every ledger has
// applied it, then streams recs at rate through p, waits until every ledger
// has completed, and matches each ledger's latencies with the send times.
func (h *harness) measure(ctx context.Context, name string, p path, recs, warm []ledger.Record, rate float64) (latencyStats, int, error) {
	keys := ledger.Keys(recs)
	skip := 0
	if len(warm) > 0 {
		skip = 1
		if err := p.send(warm); err != nil {
			return latencyStats{}, 0, fmt.Errorf("warm-up: %w", err)
		}
		if err := h.waitApplied(ctx, keys); err != nil {
			return latencyStats{}, 0, fmt.Errorf("warm-up: %w", err)
		}
	}
	calls := p.calls()
	streamStart := time.Now()
	sentAt, late, err := pace(ctx, recs, rate, p.send)
	if err != nil {
		return latencyStats{}, 0, err
	}
	if late > 100*time.Millisecond {
		fmt.Printf("  %s: the stream fell behind its schedule by up to %v (counted in the latencies, from each record's due time)\n", name, late.Round(time.Millisecond))
	}
	if err := p.flush(ctx); err != nil {
		return latencyStats{}, 0, err
	}
	if err := h.waitCompleted(ctx, name, len(keys)); err != nil {
		return latencyStats{}, 0, err
	}
	calls = p.calls() - calls
	states, err := h.readLedgers(ctx, keys)
	if err != nil {
		return latencyStats{}, 0, err
	}
	applied := map[string][]int64{}
	for k, st := range states {
		applied[k] = st.LatencyMillis
	}
	sent := map[string][]time.Duration{}
	for i, r := range recs {
		sent[r.Key] = append(sent[r.Key], sentAt[i])
	}
	samples, err := matchSamples(sent, applied, skip)
	if err != nil {
		return latencyStats{}, 0, err
	}
	if h.o.timeline > 0 {
		fmt.Printf("  timeline of %s (by send time; applied by apply time):\n%s", name, timeline(samples, h.o.timeline))
		fmt.Print(p.gauges(streamStart, h.o.timeline))
		if ranked := rankSlowest(states, skip); len(ranked) > 0 {
			fmt.Print(slowestKeys(ranked, skip, 5))
			fmt.Print(h.runHistories(ctx, ranked[0].key, streamStart, 3))
			if hot := hottest(states); hot != ranked[0].key {
				fmt.Print(h.runHistories(ctx, hot, streamStart, 3))
			}
		}
	}
	return summarize(samples, h.o.segment()), calls, nil
}

// segment is the part of the stream at its start and at its end whose P99
// is reported: 20 s, or a third of a stream shorter than 60 s.
func (o options) segment() time.Duration { return min(20*time.Second, o.latencyFor/3) }

// warmUp returns one warm-up record per key of recs, in the order the keys
// first appear, announcing the key's total with the warm-up counted, so
// that each ledger completes on its key's last record of recs.
func warmUp(recs []ledger.Record) []ledger.Record {
	n := ledger.Keys(recs)
	var out []ledger.Record
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.Key] {
			continue
		}
		seen[r.Key] = true
		v, _ := json.Marshal(ledger.Value{Seq: 0, Total: n[r.Key] + 1})
		out = append(out, ledger.Record{Key: r.Key, Value: v})
	}
	return out
}

// pace sends recs at rate, on a schedule fixed from the start: record j
// is due (j+1)/rate after it. Every 10 ms it sends, in one send, every
// record due by then, so a send slower than that delays records but does
// not lower the rate. It returns each record's due time, counted from the
// start, and sends each with Time set to it: latency counts the wait of a
// record sent late (no coordinated omission). recs are not changed. It
// also returns how late the latest record was sent.
func pace(ctx context.Context, recs []ledger.Record, rate float64, send func([]ledger.Record) error) (at []time.Duration, late time.Duration, err error) {
	const tick = 10 * time.Millisecond
	at = make([]time.Duration, len(recs))
	for j := range at {
		at[j] = time.Duration(float64(j+1) / rate * float64(time.Second))
	}
	start := time.Now()
	for sent := 0; sent < len(recs); {
		now := time.Since(start)
		time.Sleep((now/tick+1)*tick - now)
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("stream: %w", err)
		}
		upto := sent
		for now = time.Since(start); upto < len(recs) && at[upto] <= now; upto++ {
		}
		if upto == sent {
			continue
		}
		late = max(late, now-at[sent])
		batch := slices.Clone(recs[sent:upto])
		for j := range batch {
			batch[j].Time = start.Add(at[sent+j])
		}
		if err := send(batch); err != nil {
			return nil, 0, fmt.Errorf("stream: %w", err)
		}
		sent = upto
	}
	return at, late, nil
}
