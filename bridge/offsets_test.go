package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTrackerMarksOnlyTheFinishedPrefix(t *testing.T) {
	var marks []int64
	tr := newTracker(-1, func(next int64) { marks = append(marks, next) })
	for _, o := range []int64{3, 4, 7, 8, 9} { // gaps, as in compacted or transactional topics
		tr.add(o)
	}
	tr.finish(4, 8)
	assert.Empty(t, marks, "3 is still in flight")
	tr.finish(3)
	assert.Equal(t, []int64{5}, marks, "3 and 4 are done; 7 is not")
	tr.finish(9, 7)
	assert.Equal(t, []int64{5, 10}, marks)
	assert.Zero(t, tr.pending())
	tr.finish(7) // finishing twice or unknown offsets is harmless
	assert.Equal(t, []int64{5, 10}, marks)
}

func TestTrackerWaitBelow(t *testing.T) {
	tr := newTracker(-1, func(int64) {})
	tr.add(1)
	tr.add(2)
	go func() { time.Sleep(20 * time.Millisecond); tr.finish(1) }()
	assert.True(t, tr.waitBelow(context.Background(), 2))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.False(t, tr.waitBelow(ctx, 1), "record 2 never finishes")
}
