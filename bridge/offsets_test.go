package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
)

func TestTrackerMarksOnlyTheFinishedPrefix(t *testing.T) {
	var marks []int64
	tr := newTracker(-1, func(next int64) { marks = append(marks, next) })
	for _, o := range []int64{3, 4, 7, 8, 9} { // gaps, as in compacted or transactional topics
		tr.add(o)
	}
	assert.Equal(t, []int64{3}, marks, "the first record read, since the start was not known")
	tr.finish(4, 8)
	assert.Equal(t, []int64{3}, marks, "3 is still in flight")
	tr.finish(3)
	assert.Equal(t, []int64{3, 5}, marks, "3 and 4 are done; 7 is not")
	tr.finish(9, 7)
	assert.Equal(t, []int64{3, 5, 10}, marks)
	assert.Zero(t, tr.pending())
	tr.finish(7) // finishing twice or unknown offsets is harmless
	assert.Equal(t, []int64{3, 5, 10}, marks)
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

// newestClaim is a claim of a partition the group has no offset for, with
// kafka.initial_offset "newest": sarama's InitialOffset is then
// OffsetNewest, and the partition consumer starts at the log end.
type newestClaim struct{ fakeClaim }

func (newestClaim) InitialOffset() int64 { return sarama.OffsetNewest }

// A partition the group has no offset for, read from its log end
// (kafka.initial_offset "newest"), commits the offset of the first record
// it read at once: if the claim is revoked, or the bridge dies, before
// Temporal accepts anything, the next owner resumes there. (Nothing was
// committed until the first record was accepted, and the next owner,
// finding no offset, began at the log end again: every record read
// meanwhile was lost.)
func TestAPartitionReadFromTheLogEndCommitsItsFirstOffsetAtOnce(t *testing.T) {
	tc := &fakeTemporal{}
	for range 1000 {
		tc.script = append(tc.script, serviceerror.NewUnavailable("down"))
	}
	b := newTestBridge(t, tc, &fakeDLQ{})
	b.dispatcher.start(2)
	defer b.dispatcher.stop()
	ch := make(chan *sarama.ConsumerMessage, 2)
	ch <- msg(100, "a", `{}`)
	ch <- msg(101, "b", `{}`)
	s := &fakeSession{ctx: context.Background()}
	done := make(chan error, 1)
	go func() { done <- claimHandler{b: b}.ConsumeClaim(s, newestClaim{fakeClaim{ch: ch}}) }()
	for calls, _ := tc.counts(); calls < 2; calls, _ = tc.counts() { // both records are being retried
		time.Sleep(time.Millisecond)
	}
	close(ch) // revoke
	require.NoError(t, <-done)
	assert.Equal(t, int64(100), s.committed(), "the next owner must resume at the first record read")
	assert.Empty(t, tc.accepted)
}
