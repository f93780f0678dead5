package main

import (
	"fmt"
	"strconv"
	"strings"
)

// shapeLabel names a shape in the tables.
func shapeLabel(shape string) string {
	if shape == shapeWarm {
		return "warm entities"
	}
	return "new sagas"
}

// printRun prints one latency run as it ends.
func printRun(shape string, rate float64, mode string, round int, r latencyRun) {
	s := r.stats
	fmt.Printf("  latency %-4s %5.0f events/s %-6s round %d: P50 %6d  P99 %6d  first P99 %6d  last P99 %6d  max %6d ms, %.3f calls/event | probe %4.0f starts/s %4.0f signals/s | CPU server %.2f, benchmark %.2f cores\n",
		shape, rate, mode, round+1, s.p50.Milliseconds(), s.p99.Milliseconds(), s.firstP99.Milliseconds(), s.lastP99.Milliseconds(),
		s.max.Milliseconds(), float64(r.calls)/float64(max(1, s.events)), r.probe.starts, r.probe.signals, r.cpu.server, r.cpu.bench)
	if r.holds > 0 {
		fmt.Printf("    %d calls held back until their workflow applied what it was sent (dispatch.workflow_window_*)\n", r.holds)
	}
}

// p50, p99, firstP99, lastP99 and maxLat are a run's figures in milliseconds.
func p50(r latencyRun) float64      { return float64(r.stats.p50.Milliseconds()) }
func p99(r latencyRun) float64      { return float64(r.stats.p99.Milliseconds()) }
func firstP99(r latencyRun) float64 { return float64(r.stats.firstP99.Milliseconds()) }
func lastP99(r latencyRun) float64  { return float64(r.stats.lastP99.Milliseconds()) }
func maxLat(r latencyRun) float64   { return float64(r.stats.max.Milliseconds()) }

// serverCores and benchCores are the CPU a run's server and this process
// used, in cores.
func serverCores(r latencyRun) float64 { return r.cpu.server }
func benchCores(r latencyRun) float64  { return r.cpu.bench }

// callsPerRunEvent is a run's calls per measured event.
func callsPerRunEvent(r latencyRun) float64 {
	return float64(r.calls) / float64(max(1, r.stats.events))
}

// over returns f of mode's runs in c, over the rounds.
func (c *latencyCell) over(mode string, f func(latencyRun) float64) spread {
	var vs []float64
	for _, r := range c.runs[mode] {
		vs = append(vs, f(r))
	}
	return spreadOf(vs)
}

// probes returns f of the probes of every run in c.
func (c *latencyCell) probes(f func(capacity) float64) spread {
	var vs []float64
	for _, runs := range c.runs {
		for _, r := range runs {
			vs = append(vs, f(r.probe))
		}
	}
	return spreadOf(vs)
}

// best returns the window whose median P99 is lowest, and the engine's P99
// over that window's, round by round.
func (c *latencyCell) best(modes []latencyMode) (string, spread) {
	best := c.lowestWindow(modes, -1)
	if best == "" {
		return "", spread{}
	}
	var ratios []float64
	for i, e := range c.runs["engine"] {
		if i < len(c.runs[best]) {
			ratios = append(ratios, p99(e)/max(1, p99(c.runs[best][i])))
		}
	}
	return best, spreadOf(ratios)
}

// lowestWindow returns the window whose median P99 over its rounds other
// than skip (-1: over all of them) is lowest, among the windows that ran
// round skip; "" if none has a round to go by. Rounds are matched by their
// place in each mode's runs (latencies keeps only whole cells).
func (c *latencyCell) lowestWindow(modes []latencyMode, skip int) string {
	best, bestP99 := "", 0.0
	for _, m := range modes[1:] {
		runs := c.runs[m.name]
		if skip >= len(runs) {
			continue
		}
		var vs []float64
		for j, r := range runs {
			if j != skip {
				vs = append(vs, p99(r))
			}
		}
		if len(vs) == 0 {
			continue
		}
		if med := spreadOf(vs).med; best == "" || med < bestP99 {
			best, bestP99 = m.name, med
		}
	}
	return best
}

// heldOut is the engine's P99 over a window's, round by round, where each
// round's window is the one with the lowest median P99 over the other
// rounds (with three rounds, the mean of two). best chooses its window with
// every round, the one it then measures included, and the lowest of
// several noisy medians is low by luck as well as by merit, which leans
// against the engine; here the round a ratio is taken in plays no part in
// choosing the window it is taken against, which can be a window other
// than the best one and so leans the other way. A window that lacks round
// i is not chosen for it. Empty with one round.
func (c *latencyCell) heldOut(modes []latencyMode) spread {
	var ratios []float64
	for i, e := range c.runs["engine"] {
		if w := c.lowestWindow(modes, i); w != "" {
			ratios = append(ratios, p99(e)/max(1, p99(c.runs[w][i])))
		}
	}
	return spreadOf(ratios)
}

// ranks returns the engine's place by P99 among the engine and the
// windows, round by round: 1 when no window's P99 was lower (a tie counts
// for the engine). A round that some window lacks is left out, so every
// rank is of len(modes) clients.
func (c *latencyCell) ranks(modes []latencyMode) []int {
	var rs []int
rounds:
	for i, e := range c.runs["engine"] {
		r := 1
		for _, m := range modes[1:] {
			runs := c.runs[m.name]
			if i >= len(runs) {
				continue rounds
			}
			if p99(runs[i]) < p99(e) {
				r++
			}
		}
		rs = append(rs, r)
	}
	return rs
}

// formatRanks formats ranks as "2, 1, 3 of 4".
func formatRanks(rs []int, of int) string {
	if len(rs) == 0 {
		return "–"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.Itoa(r)
	}
	return strings.Join(s, ", ") + " of " + strconv.Itoa(of)
}

// printLatencyTables prints the summary table (one row per shape and rate)
// and the detail table (one row per mode).
func printLatencyTables(o options, cells []*latencyCell) {
	if len(cells) == 0 {
		return
	}
	modes := o.latencyModes()
	seg := fmt.Sprintf("%.0fs", o.segment().Seconds())
	fmt.Printf("\nSteady stream over %d keys (Zipf s=%.2f), %s per run; every figure the median over %d rounds (range), in ms; each run on a fresh server, probed right before it.\n",
		latencyKeys, o.zipf, o.latencyFor, o.rounds)
	head := []string{"shape", "events/s", "(b) engine P50", "(b) engine P99", "(b) first-" + seg + " P99", "(b) last-" + seg + " P99"}
	for _, m := range modes[1:] {
		head = append(head, "(d) "+m.name+" P99")
	}
	head = append(head, "best window", "**engine P99 ÷ best window P99**", "engine ÷ window, held out", "engine's rank by round",
		"probe: starts/s", "probe: signals/s")
	printRow(head)
	printRule(len(head), 1)
	for _, c := range cells {
		row := []string{shapeLabel(c.shape), fmt.Sprintf("%.0f", c.rate),
			c.over("engine", p50).format("%.0f"), c.over("engine", p99).format("%.0f"),
			c.over("engine", firstP99).format("%.0f"), c.over("engine", lastP99).format("%.0f")}
		for _, m := range modes[1:] {
			row = append(row, c.over(m.name, p99).format("%.0f"))
		}
		best, ratio := c.best(modes)
		row = append(row, best, "**"+ratio.format("%.2f")+"**", c.heldOut(modes).format("%.2f"), formatRanks(c.ranks(modes), len(modes)),
			c.probes(func(p capacity) float64 { return p.starts }).format("%.0f"),
			c.probes(func(p capacity) float64 { return p.signals }).format("%.0f"))
		printRow(row)
	}
	fmt.Println()
	head = []string{"shape", "events/s", "mode", "P50", "P99", "first-" + seg + " P99", "last-" + seg + " P99", "max", "calls/event",
		"server cores", "benchmark cores"}
	printRow(head)
	printRule(len(head), 3)
	for _, c := range cells {
		for _, m := range modes {
			printRow([]string{shapeLabel(c.shape), fmt.Sprintf("%.0f", c.rate), modeLabel(m),
				c.over(m.name, p50).format("%.0f"), c.over(m.name, p99).format("%.0f"),
				c.over(m.name, firstP99).format("%.0f"), c.over(m.name, lastP99).format("%.0f"),
				c.over(m.name, maxLat).format("%.0f"), c.over(m.name, callsPerRunEvent).format("%.3f"),
				c.over(m.name, serverCores).format("%.2f"), c.over(m.name, benchCores).format("%.2f")})
		}
	}
	fmt.Println("\nThe probe: SignalWithStart of new ledgers, then Signal of running ones, one event per call, " +
		"concurrency calls in flight; its figures are over every run of the row.")
	fmt.Println("Best window: the lowest median P99 of the row, the engine's ratio to it taken round by round. " +
		"Held out: each round's ratio to the window the other rounds' median P99 favours, so that no round " +
		"chooses the window it is measured against. Rank: the engine's place by P99 among all clients in each round.")
}

// modeLabel names a mode in the detail table.
func modeLabel(m latencyMode) string {
	if m.window == 0 {
		return "(b) engine"
	}
	return "(d) window " + m.name
}

// printRow prints a markdown table row.
func printRow(cells []string) { fmt.Printf("| %s |\n", strings.Join(cells, " | ")) }

// printRule prints a markdown header rule: text columns first, the rest
// right-aligned numbers.
func printRule(n, text int) {
	r := make([]string, n)
	for i := range r {
		r[i] = "---:"
		if i < text {
			r[i] = "---"
		}
	}
	printRow(r)
}
