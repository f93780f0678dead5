package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cellOf builds a cell whose modes have the given P99s (ms), one per round.
func cellOf(p99s map[string][]int) *latencyCell {
	c := &latencyCell{shape: shapeWarm, rate: 1000, runs: map[string][]latencyRun{}}
	for mode, vs := range p99s {
		for _, v := range vs {
			c.runs[mode] = append(c.runs[mode], latencyRun{stats: latencyStats{p99: time.Duration(v) * time.Millisecond}})
		}
	}
	return c
}

var twoWindows = []latencyMode{{name: "engine"}, {name: "A", window: time.Millisecond}, {name: "B", window: time.Second}}

func TestTheHeldOutRatioChoosesEachRoundsWindowWithoutThatRound(t *testing.T) {
	// A is best by its median (210 against 220) thanks to one lucky round;
	// held out, round 1 is measured against B, which the other rounds favour.
	c := cellOf(map[string][]int{
		"engine": {200, 200, 200},
		"A":      {100, 210, 400},
		"B":      {300, 220, 220},
	})
	best, ratio := c.best(twoWindows)
	assert.Equal(t, "A", best)
	assert.InDelta(t, 200.0/210, ratio.med, 1e-9, "median of 2.0, 0.95, 0.5")

	h := c.heldOut(twoWindows)
	require.Equal(t, 3, h.n)
	// Round 1 against B (others: A 305, B 220): 200/300; round 2 against A
	// (A 250, B 260): 200/210; round 3 against A (A 155, B 260): 200/400.
	assert.InDelta(t, 200.0/300, h.med, 1e-9)
	assert.InDelta(t, 0.5, h.lo, 1e-9)
	assert.InDelta(t, 200.0/210, h.hi, 1e-9)
}

func TestTheHeldOutRatioNeedsMoreThanOneRound(t *testing.T) {
	c := cellOf(map[string][]int{"engine": {200}, "A": {100}, "B": {300}})
	assert.Equal(t, 0, c.heldOut(twoWindows).n)
	assert.Equal(t, "–", c.heldOut(twoWindows).format("%.2f"))
}

func TestTheEnginesRankCountsTheWindowsFasterInTheSameRound(t *testing.T) {
	// The 1,000 events/s new-saga cell of the 2026-12-06 full run.
	c := cellOf(map[string][]int{
		"engine": {6851, 9641, 11110},
		"5ms":    {10425, 10230, 10110},
		"200ms":  {5793, 8813, 11314},
		"1s":     {6549, 7527, 7920},
	})
	modes := []latencyMode{{name: "engine"}, {name: "5ms", window: 5 * time.Millisecond},
		{name: "200ms", window: 200 * time.Millisecond}, {name: "1s", window: time.Second}}
	assert.Equal(t, []int{3, 3, 3}, c.ranks(modes))
	assert.Equal(t, "3, 3, 3 of 4", formatRanks(c.ranks(modes), len(modes)))
	best, ratio := c.best(modes)
	assert.Equal(t, "1s", best)
	assert.Equal(t, "1.28", fmt.Sprintf("%.2f", ratio.med))

	c = cellOf(map[string][]int{"engine": {200, 200, 200}, "A": {100, 210, 400}, "B": {300, 220, 200}})
	assert.Equal(t, []int{2, 1, 1}, c.ranks(twoWindows), "a tie is not faster")
	assert.Equal(t, "–", formatRanks(nil, 3))
}

func TestARoundSomeWindowLacksIsNeitherRankedNorHeldOut(t *testing.T) {
	c := cellOf(map[string][]int{
		"engine": {200, 200, 200},
		"A":      {100, 300, 300},
		"B":      {300, 100},
	})
	assert.Equal(t, []int{2, 2}, c.ranks(twoWindows), "round 3 has no B")
	h := c.heldOut(twoWindows)
	// Round 3 is measured against A alone (B lacks it): 200/300.
	require.Equal(t, 3, h.n)
	assert.InDelta(t, 200.0/300, h.hi, 1e-9)
}

func TestEveryModeRunsInEveryPlaceOverAsManyRounds(t *testing.T) {
	modes := []latencyMode{{name: "engine"}, {name: "5ms"}, {name: "200ms"}, {name: "1s"}}
	names := func(ms []latencyMode) (out []string) {
		for _, m := range ms {
			out = append(out, m.name)
		}
		return out
	}
	assert.Equal(t, []string{"engine", "5ms", "200ms", "1s"}, names(roundOrder(modes, 0)))
	assert.Equal(t, []string{"5ms", "200ms", "1s", "engine"}, names(roundOrder(modes, 1)))
	assert.Equal(t, []string{"200ms", "1s", "engine", "5ms"}, names(roundOrder(modes, 2)))
	places := map[string]map[int]bool{}
	for round := range len(modes) {
		for place, m := range roundOrder(modes, round) {
			if places[m.name] == nil {
				places[m.name] = map[int]bool{}
			}
			places[m.name][place] = true
		}
	}
	for _, m := range modes {
		assert.Len(t, places[m.name], len(modes), "%s runs in every place", m.name)
	}
	assert.Equal(t, []string{"engine", "5ms", "200ms", "1s"}, names(modes), "the modes themselves are not reordered")
	two := modes[:2]
	assert.Equal(t, []string{"5ms", "engine"}, names(roundOrder(two, 1)), "with two modes it alternates")
}
