package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	behind   map[string]bool
	calls    map[string]int
	asked    map[string]int
	offsets  map[string][]int64
	appliedW map[string]event.Watermarks
}

func newHoldTemporal() *holdTemporal {
	return &holdTemporal{stuck: map[string]error{}, behind: map[string]bool{}, calls: map[string]int{},
		asked: map[string]int{}, offsets: map[string][]int64{}, appliedW: map[string]event.Watermarks{}}
}

func (h *holdTemporal) SignalWithStart(_ context.Context, t Target, b event.Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[t.WorkflowID]++
	if err := h.stuck[t.WorkflowID]; err != nil {
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
	}{{
		name: "dead letters the DLQ refuses",
		setUp: func(h *holdTemporal, dl *switchDLQ) (func() bool, func()) {
			dl.down = true
			return func() bool { return dl.triedPartitions() >= workers }, dl.up
		},
		records: func(p int32) []*sarama.ConsumerMessage {
			return []*sarama.ConsumerMessage{msg(0, fmt.Sprintf("k%d", p), `{not json`), msg(1, fmt.Sprintf("k%d", p), `{}`)}
		},
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
	}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHoldTemporal()
			dl := &switchDLQ{tried: map[int32]int{}}
			b, err := New(config.Config{
				Kafka: config.Kafka{Brokers: []string{"b"}, Group: "g"},
				Batch: config.Batch{Linger: time.Millisecond},
				Dispatch: config.Dispatch{Concurrency: workers, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond,
					WorkflowWindowRecords: 1},
				Routes: []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
			}, Deps{Temporal: h, DeadLetters: dl, Logger: quiet()})
			require.NoError(t, err)
			waitingNow, end := tt.setUp(h, dl)
			b.dispatcher.start(workers)
			defer b.dispatcher.stop()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			defer wg.Wait()
			var chans []chan *sarama.ConsumerMessage
			defer func() {
				for _, ch := range chans {
					close(ch) // revoke
				}
			}()
			claim := func(p int32, msgs []*sarama.ConsumerMessage) *fakeSession {
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
				want := []int64{0, 1}
				if tt.name == "dead letters the DLQ refuses" {
					want = []int64{1}
				}
				assert.Equal(t, want, h.offsets[id], "%s's records, in order", id)
			}
		})
	}
}
