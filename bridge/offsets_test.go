package bridge

import (
	"testing"

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

func TestTrackerSignalsWhenRecordsLeave(t *testing.T) {
	tr := newTracker(-1, func(int64) {})
	tr.add(1)
	tr.add(2)
	tr.finish(2)
	select {
	case <-tr.freed:
		t.Fatal("nothing left: 1 is still in flight")
	default:
	}
	tr.finish(1)
	<-tr.freed
	assert.Zero(t, tr.pending())
}
