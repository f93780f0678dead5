package bridge

import (
	"slices"
	"sync"
)

// tracker is one partition's offset watermark. Records are added in offset
// order as they are read and finished in any order (accepted by Temporal,
// skipped, or held by the DLQ); mark is called with the offset after the
// longest finished prefix, so a commit never passes a record that is still
// in flight. Safe for concurrent use.
type tracker struct {
	mu      sync.Mutex
	offsets []int64 // read and not yet part of the finished prefix, ascending
	done    []bool
	mark    func(next int64)
	next    int64         // the offset a commit would resume from; -1 until known
	freed   chan struct{} // signalled when records leave the tracker
}

// newTracker returns a tracker that calls mark; start is the offset the
// partition resumes from, or negative if not yet known.
func newTracker(start int64, mark func(next int64)) *tracker {
	return &tracker{mark: mark, next: max(start, -1), freed: make(chan struct{}, 1)}
}

// add registers a record that was just read.
func (t *tracker) add(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.next < 0 {
		t.next = offset
	}
	t.offsets = append(t.offsets, offset)
	t.done = append(t.done, false)
}

// finish records that these offsets are safe to commit past, and advances
// the mark over the finished prefix.
func (t *tracker) finish(offsets ...int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range offsets {
		if i, ok := slices.BinarySearch(t.offsets, o); ok {
			t.done[i] = true
		}
	}
	n := 0
	for n < len(t.done) && t.done[n] {
		n++
	}
	if n == 0 {
		return
	}
	t.next = t.offsets[n-1] + 1
	t.mark(t.next)
	t.offsets = slices.Delete(t.offsets, 0, n)
	t.done = slices.Delete(t.done, 0, n)
	select {
	case t.freed <- struct{}{}:
	default:
	}
}

// pending is how many records are read but not yet committable.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.offsets)
}

// position is the offset a commit would resume from; false if not yet known.
func (t *tracker) position() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next, t.next >= 0
}
