package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// holdTemporal accepts calls except for the workflows it is told to keep
// waiting: those whose calls fail (stuck) and those whose applied query
// says they applied nothing (behind). It counts each workflow's calls and
// questions, and records each workflow's accepted offsets in order.
type holdTemporal struct {
	fakeTemporal
	mu       sync.Mutex
	stuck    map[string]error
	batchErr map[string]error // a call of more than one record to the workflow fails with it, before stuck
	newRun   map[string]error // a call that starts a new run fails with it, before stuck
	newRuns  map[string]int   // calls that start a new run
	behind   map[string]bool
	calls    map[string]int
	asked    map[string]int
	offsets  map[string][]int64
	appliedW map[string]event.Watermarks
}

func newHoldTemporal() *holdTemporal {
	return &holdTemporal{stuck: map[string]error{}, batchErr: map[string]error{}, newRun: map[string]error{}, newRuns: map[string]int{},
		behind: map[string]bool{}, calls: map[string]int{},
		asked: map[string]int{}, offsets: map[string][]int64{}, appliedW: map[string]event.Watermarks{}}
}

func (h *holdTemporal) SignalWithStart(_ context.Context, t Target, b event.Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[t.WorkflowID]++
	if err := h.batchErr[t.WorkflowID]; err != nil && len(b.Events) > 1 {
		return err
	}
	if t.NewRun {
		h.newRuns[t.WorkflowID]++
		if err := h.newRun[t.WorkflowID]; err != nil {
			return err
		}
	} else if err := h.stuck[t.WorkflowID]; err != nil {
		return err
	}
	w := h.appliedW[t.WorkflowID]
	if w == nil {
		w = event.NewWatermarks()
		h.appliedW[t.WorkflowID] = w
	}
	for _, e := range b.Events {
		h.offsets[t.WorkflowID] = append(h.offsets[t.WorkflowID], e.Offset)
		w.Admit(e.Position())
	}
	return nil
}

func (h *holdTemporal) AppliedWatermarks(_ context.Context, id string) (event.Watermarks, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked[id]++
	if h.behind[id] || h.appliedW[id] == nil {
		return event.NewWatermarks(), nil
	}
	return maps.Clone(h.appliedW[id]), nil
}

// release lets every workflow through.
func (h *holdTemporal) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.stuck)
	clear(h.newRun)
	clear(h.behind)
}

// atLeast reports how many of ids were called (or asked) n times.
func (h *holdTemporal) atLeast(counts func(*holdTemporal) map[string]int, n int, ids ...string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := 0
	for _, id := range ids {
		if counts(h)[id] >= n {
			k++
		}
	}
	return k
}

// switchDLQ fails every write while down and counts the partitions whose
// dead letters it was asked to write.
type switchDLQ struct {
	fakeDLQ
	down  bool
	tried map[int32]int
}

func (s *switchDLQ) Write(ctx context.Context, fl dlq.Failure) error {
	s.fakeDLQ.mu.Lock()
	s.tried[fl.Partition]++
	down := s.down
	s.fakeDLQ.mu.Unlock()
	if down {
		return errors.New("DLQ topic authorization failed")
	}
	return s.fakeDLQ.Write(ctx, fl)
}

func (s *switchDLQ) triedPartitions() int {
	s.fakeDLQ.mu.Lock()
	defer s.fakeDLQ.mu.Unlock()
	return len(s.tried)
}

func (s *switchDLQ) up() {
	s.fakeDLQ.mu.Lock()
	defer s.fakeDLQ.mu.Unlock()
	s.down = false
}

// newHoldBridge is a bridge of one route with dispatch d, its
// d.Concurrency workers started until the test ends.
func newHoldBridge(t *testing.T, tc Temporal, dl DeadLetters, d config.Dispatch) *Bridge {
	t.Helper()
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{Linger: time.Millisecond},
		Dispatch: d,
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: dl, Logger: quiet()})
	require.NoError(t, err)
	b.dispatcher.start(d.Concurrency)
	t.Cleanup(b.dispatcher.stop)
	return b
}

// A workflow whose call must wait (its dead letter cannot be written yet,
// its workflow is past its window, Temporal refuses its call for a reason
// of its own) must not hold a dispatch worker while it waits: with as many
// such workflows as workers, a healthy partition's records were never
// sent (each worker slept in a retry loop or waited for an answer), and
// every other route and partition of the bridge stopped with them. Once
// the waits end, everything held is delivered, in order.
func TestWorkflowsThatMustWaitHoldNoDispatchWorker(t *testing.T) {
	const workers, waiting = 2, 3 // more waiting workflows than workers
	for _, tt := range []struct {
		name string
		// setUp makes partitions 0..waiting-1 wait and returns what
		// reports that at least as many as there are workers do (the
		// old dispatcher had no worker for the others), and what ends
		// the wait.
		setUp func(h *holdTemporal, dl *switchDLQ) (waitingNow func() bool, end func())
		// records are partition p's records (offsets 0, 1, ...).
		records func(p int32) []*sarama.ConsumerMessage
		// accepted are the offsets each waiting workflow takes in the
		// end; the others are dead-lettered.
		accepted []int64
	}{{
		name: "dead letters the DLQ refuses",
		setUp: func(h *holdTemporal, dl *switchDLQ) (func() bool, func()) {
			dl.down = true
			return func() bool { return dl.triedPartitions() >= workers }, dl.up
		},
		records: func(p int32) []*sarama.ConsumerMessage {
			return []*sarama.ConsumerMessage{msg(0, fmt.Sprintf("k%d", p), `{not json`), msg(1, fmt.Sprintf("k%d", p), `{}`)}
		},
		accepted: []int64{1},
	}, {
		name: "workflows past their window",
		setUp: func(h *holdTemporal, _ *switchDLQ) (func() bool, func()) {
			ids := make([]string, waiting)
			for p := range waiting {
				ids[p] = fmt.Sprintf("order-k%d", p)
				h.behind[ids[p]] = true
			}
			asked := func(h *holdTemporal) map[string]int { return h.asked }
			return func() bool { return h.atLeast(asked, 1, ids...) >= workers }, h.release
		},
		records: func(p int32) []*sarama.ConsumerMessage { // window 1: the second record waits for the first to be applied
			return []*sarama.ConsumerMessage{msg(0, fmt.Sprintf("k%d", p), `{}`), msg(1, fmt.Sprintf("k%d", p), `{}`)}
		},
		accepted: []int64{0, 1},
	}, {
		name: "calls Temporal refuses for their workflow",
		setUp: func(h *holdTemporal, _ *switchDLQ) (func() bool, func()) {
			ids := make([]string, waiting)
			for p := range waiting {
				ids[p] = fmt.Sprintf("order-k%d", p)
				h.stuck[ids[p]] = serviceerror.NewInvalidArgument(signalLimitExceeded)
			}
			calls := func(h *holdTemporal) map[string]int { return h.calls }
			return func() bool { return h.atLeast(calls, 2, ids...) >= workers }, h.release
		},
		records: func(p int32) []*sarama.ConsumerMessage {
			return []*sarama.ConsumerMessage{msg(0, fmt.Sprintf("k%d", p), `{}`), msg(1, fmt.Sprintf("k%d", p), `{}`)}
		},
		accepted: []int64{0, 1},
	}, {
		// Temporal answered (the record is bad, the workflow closed);
		// only the dead letters wait.
		name: "rejected records the DLQ refuses",
		setUp: func(h *holdTemporal, dl *switchDLQ) (func() bool, func()) {
			dl.down = true
			for p := range waiting {
				h.stuck[fmt.Sprintf("order-k%d", p)] = serviceerror.NewInvalidArgument("bad payload")
			}
			return func() bool { return dl.triedPartitions() >= workers }, dl.up
		},
		records: func(p int32) []*sarama.ConsumerMessage {
			return []*sarama.ConsumerMessage{msg(0, fmt.Sprintf("k%d", p), `{}`), msg(1, fmt.Sprintf("k%d", p), `{}`)}
		},
	}, {
		name: "records of closed workflows the DLQ refuses",
		setUp: func(h *holdTemporal, dl *switchDLQ) (func() bool, func()) {
			dl.down = true
			for p := range waiting {
				id := fmt.Sprintf("order-k%d", p)
				h.stuck[id] = fmtClosed(id)
			}
			return func() bool { return dl.triedPartitions() >= workers }, dl.up
		},
		records: func(p int32) []*sarama.ConsumerMessage {
			return []*sarama.ConsumerMessage{msg(0, fmt.Sprintf("k%d", p), `{}`), msg(1, fmt.Sprintf("k%d", p), `{}`)}
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHoldTemporal()
			dl := &switchDLQ{tried: map[int32]int{}}
			waitingNow, end := tt.setUp(h, dl)
			b := newHoldBridge(t, h, dl, config.Dispatch{Concurrency: workers, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond,
				WorkflowWindowRecords: 1})

			claim := claims(t, b)
			var held []*fakeSession
			for p := range int32(waiting) {
				held = append(held, claim(p, tt.records(p)))
			}
			require.Eventually(t, waitingNow, 10*time.Second, time.Millisecond, "the workflows never came to wait")

			// A healthy partition whose workflow has nothing to wait for.
			healthy := claim(waiting, []*sarama.ConsumerMessage{msg(0, "healthy", `{}`)})
			require.Eventually(t, func() bool { return healthy.committed() == 1 }, 10*time.Second, time.Millisecond,
				"a healthy partition's record was not delivered while %d workflows waited on %d dispatch workers", waiting, workers)
			for _, s := range held {
				assert.Less(t, s.committed(), int64(2), "a waiting partition committed past what waits")
			}

			end()
			require.Eventually(t, func() bool {
				for _, s := range held {
					if s.committed() != 2 {
						return false
					}
				}
				return true
			}, 10*time.Second, time.Millisecond, "what waited was not delivered once the wait ended")
			h.mu.Lock()
			defer h.mu.Unlock()
			for p := range waiting {
				id := fmt.Sprintf("order-k%d", p)
				assert.Equal(t, tt.accepted, h.offsets[id], "%s's records, in order", id)
			}
			dl.fakeDLQ.mu.Lock()
			defer dl.fakeDLQ.mu.Unlock()
			assert.Len(t, dl.failures, waiting*2-len(tt.accepted)*waiting, "dead letters written")
		})
	}
}

// claims returns what claims partition p of b with msgs (their partition
// set to p) and returns its session; every claim is revoked, and waited
// for, when the test ends.
func claims(t *testing.T, b *Bridge) func(p int32, msgs []*sarama.ConsumerMessage) *fakeSession {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var chans []chan *sarama.ConsumerMessage
	t.Cleanup(func() {
		cancel()
		for _, ch := range chans {
			close(ch) // revoke
		}
		wg.Wait()
	})
	return func(p int32, msgs []*sarama.ConsumerMessage) *fakeSession {
		ch := make(chan *sarama.ConsumerMessage, len(msgs))
		for _, m := range msgs {
			m.Partition = p
			ch <- m
		}
		chans = append(chans, ch)
		s := &fakeSession{ctx: ctx}
		wg.Go(func() { assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch, partition: p})) })
		return s
	}
}

// blockedQueries answers the applied query only once released, and
// counts the most questions in flight at once.
type blockedQueries struct {
	holdTemporal
	release  chan struct{}
	inFlight int
	most     int
}

func (q *blockedQueries) AppliedWatermarks(ctx context.Context, id string) (event.Watermarks, error) {
	q.holdTemporal.mu.Lock()
	q.inFlight++
	q.most = max(q.most, q.inFlight)
	q.holdTemporal.mu.Unlock()
	defer func() {
		q.holdTemporal.mu.Lock()
		q.inFlight--
		q.holdTemporal.mu.Unlock()
	}()
	select {
	case <-q.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return q.holdTemporal.AppliedWatermarks(ctx, id)
}

// Calls held at their workflows' windows hold no worker, but their
// questions still count against dispatch.concurrency: with many hot
// workflows behind, the bridge asks at most that many (beside its early
// questions) at once, as when each held call asked from its worker. (Each
// held call asked at once: one query per workflow behind, thousands in a
// backlog of hot keys.)
func TestQuestionsOfHeldCallsAreBoundedByTheConcurrency(t *testing.T) {
	const workers, workflows = 2, 50
	q := &blockedQueries{holdTemporal: *newHoldTemporal(), release: make(chan struct{})}
	b := newHoldBridge(t, q, &fakeDLQ{}, config.Dispatch{Concurrency: workers, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond,
		WorkflowWindowRecords: 1})

	ch := make(chan *sarama.ConsumerMessage, 2*workflows)
	for i := range 2 * workflows { // each workflow's second record waits for its first to be applied
		ch <- msg(int64(i), fmt.Sprintf("k%d", i%workflows), `{}`)
	}
	s := &fakeSession{ctx: context.Background()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch}))
	}()
	require.Eventually(t, func() bool { return b.windowWaits.Load() == workflows }, 10*time.Second, time.Millisecond,
		"every workflow's second call was not held at its window")
	require.Eventually(t, func() bool {
		q.holdTemporal.mu.Lock()
		defer q.holdTemporal.mu.Unlock()
		return q.inFlight >= maxEarlyQuestions+workers
	}, 10*time.Second, time.Millisecond, "the questions were not asked")
	q.holdTemporal.mu.Lock()
	most := q.most
	q.holdTemporal.mu.Unlock()
	assert.LessOrEqual(t, most, maxEarlyQuestions+workers, "questions in flight at once")

	close(q.release)
	require.Eventually(t, func() bool { return s.committed() == 2*workflows }, 10*time.Second, time.Millisecond)
	close(ch)
	<-done
}

// A call held for a long backoff is let go when its partition is revoked:
// the other partitions' records for the same workflow, queued behind it,
// go at once rather than after the backoff the revoked call was waiting
// out.
func TestARevokedPartitionsHeldCallStopsHoldingItsWorkflow(t *testing.T) {
	h := newHoldTemporal()
	h.stuck["order-k"] = serviceerror.NewInvalidArgument(signalLimitExceeded)
	b := newHoldBridge(t, h, &fakeDLQ{}, config.Dispatch{Concurrency: 2, RetryInitial: time.Hour, RetryMax: time.Hour, DrainTimeout: 50 * time.Millisecond})

	claim := func(p int32) (chan *sarama.ConsumerMessage, *fakeSession, chan struct{}) {
		ch := make(chan *sarama.ConsumerMessage, 1)
		m := msg(0, "k", `{}`)
		m.Partition = p
		ch <- m
		s := &fakeSession{ctx: context.Background()}
		done := make(chan struct{})
		go func() {
			defer close(done)
			assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch, partition: p}))
		}()
		return ch, s, done
	}
	calls := func(h *holdTemporal) map[string]int { return h.calls }
	ch0, _, done0 := claim(0)
	require.Eventually(t, func() bool { return h.atLeast(calls, 1, "order-k") == 1 }, 10*time.Second, time.Millisecond)
	ch1, s1, done1 := claim(1) // queued behind partition 0's held call
	require.Eventually(t, func() bool {
		b.dispatcher.mu.Lock()
		defer b.dispatcher.mu.Unlock()
		q := b.dispatcher.queues["order-k"]
		return q != nil && len(q.pending) == 2
	}, 10*time.Second, time.Millisecond)
	h.release()
	close(ch0) // revoke partition 0
	<-done0
	require.Eventually(t, func() bool { return s1.committed() == 1 }, 10*time.Second, time.Millisecond,
		"partition 1's record waited out the revoked call's backoff")
	close(ch1)
	<-done1
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, []int64{0}, h.offsets["order-k"], "only partition 1's record went (partition 0 let go)")
}

// blockingDLQ takes dead letters only once released.
type blockingDLQ struct {
	fakeDLQ
	release chan struct{}
}

func (d *blockingDLQ) Write(ctx context.Context, fl dlq.Failure) error {
	select {
	case <-d.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return d.fakeDLQ.Write(ctx, fl)
}

// Records Temporal refused wait in their partition's dead-letter queue,
// and are held against backpressure.max_bytes until the DLQ holds them,
// as every record not yet written is. (Their bytes were released when the
// call was answered: a slow DLQ let rejected records pile up in memory
// past max_bytes, unseen.)
func TestRejectedRecordsWaitingForTheDLQCountAgainstTheBudget(t *testing.T) {
	const records, size = 10, 64 << 10
	h := newHoldTemporal()
	for i := range records {
		h.stuck[fmt.Sprintf("order-k%d", i)] = serviceerror.NewInvalidArgument("bad payload")
	}
	dl := &blockingDLQ{release: make(chan struct{})}
	b := newHoldBridge(t, h, dl, config.Dispatch{Concurrency: 4, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond})

	ch := make(chan *sarama.ConsumerMessage, records)
	for i := range records {
		ch <- msg(int64(i), fmt.Sprintf("k%d", i), `{"pad":"`+strings.Repeat("x", size)+`"}`)
	}
	s := &fakeSession{ctx: context.Background()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch}))
	}()
	require.Eventually(t, func() bool { // every call answered; one dead letter in the DLQ's hands, the rest queued
		b.dispatcher.mu.Lock()
		defer b.dispatcher.mu.Unlock()
		q := b.dispatcher.queues["\x00dlq orders/0"]
		return q != nil && len(q.pending) == records-1
	}, 10*time.Second, time.Millisecond)
	_, held := b.pressure.held()
	assert.GreaterOrEqual(t, held, int64(records*size), "bytes of the records waiting for the DLQ")

	close(dl.release)
	require.Eventually(t, func() bool { return s.committed() == records }, 10*time.Second, time.Millisecond)
	r, by := b.pressure.held()
	assert.Zero(t, r, "records held once all are in the DLQ")
	assert.Zero(t, by, "bytes held once all are in the DLQ")
	close(ch)
	<-done
}
