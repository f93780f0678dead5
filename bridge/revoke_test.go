package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// stuckTemporal fails every call with Unavailable (down = true) or blocks
// each call until its context ends (down = false), and counts the calls.
type stuckTemporal struct {
	down  bool
	mu    sync.Mutex
	calls int
	first chan struct{} // closed at the first call
	once  sync.Once
}

func newStuckTemporal(down bool) *stuckTemporal {
	return &stuckTemporal{down: down, first: make(chan struct{})}
}

func (s *stuckTemporal) SignalWithStart(ctx context.Context, _ Target, _ event.Batch) error {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	s.once.Do(func() { close(s.first) })
	if s.down {
		return serviceerror.NewUnavailable("temporal is down")
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stuckTemporal) ClosedWatermarks(context.Context, string) (event.Watermarks, error) {
	return nil, nil
}

func (s *stuckTemporal) TaskQueueBacklog(context.Context, string) (Backlog, error) {
	return Backlog{}, nil
}

func (s *stuckTemporal) CheckAccess(context.Context) error {
	if s.down {
		return serviceerror.NewUnavailable("temporal is down")
	}
	return nil
}

func (s *stuckTemporal) AppliedWatermarks(context.Context, string) (event.Watermarks, error) {
	return nil, serviceerror.NewNotFound("none")
}

func (s *stuckTemporal) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// revocationCase puts a claim into one wait state; ready is closed once it
// is there.
type revocationCase struct {
	name     string
	temporal *stuckTemporal
	dlq      *fakeDLQ
	tune     func(c *config.Config)
	msgs     []*sarama.ConsumerMessage
	// before runs before the claim starts consuming.
	before func(b *Bridge)
	// enter runs once the claim is consuming; it returns when the claim
	// waits in the state under test.
	enter func(t *testing.T, b *Bridge, tc *stuckTemporal, dl *fakeDLQ)
}

// In cooperative rebalancing sarama revokes a claim by closing its
// Messages channel; the session's context lives on. Whatever the claim is
// waiting for, it must let go within dispatch.drain_timeout, and nothing of
// it may reach Temporal after it let go.
func TestARevokedClaimLetsGoInEveryWaitState(t *testing.T) {
	const drain = 100 * time.Millisecond
	cases := []revocationCase{{
		name:     "at the partition's in-flight cap",
		temporal: newStuckTemporal(false),
		tune: func(c *config.Config) {
			c.Batch = config.Batch{MaxRecords: 1, MaxInFlight: 2, Linger: time.Millisecond}
		},
		msgs: []*sarama.ConsumerMessage{msg(0, "a", `{}`), msg(1, "b", `{}`), msg(2, "c", `{}`)},
		enter: func(t *testing.T, b *Bridge, tc *stuckTemporal, _ *fakeDLQ) {
			<-tc.first
			require.Eventually(t, func() bool { return b.pressure.pausedFor("orders", 0) == ReasonPartitionInFlight }, 5*time.Second, time.Millisecond)
		},
	}, {
		name:     "paused by backpressure",
		temporal: newStuckTemporal(false),
		before:   func(b *Bridge) { b.pressure.setCircuitOpen(circuitKey{"default", "q"}, true) },
		msgs:     []*sarama.ConsumerMessage{msg(0, "a", `{}`)},
		enter: func(t *testing.T, b *Bridge, _ *stuckTemporal, _ *fakeDLQ) {
			require.Eventually(t, func() bool { return b.pressure.pausedFor("orders", 0) == ReasonCircuitOpen }, 5*time.Second, time.Millisecond)
		},
	}, {
		name:     "waiting for a call slot",
		temporal: newStuckTemporal(false),
		tune: func(c *config.Config) {
			c.Dispatch.Concurrency = 4
			c.Backpressure.Adaptive.MinConcurrency = 1
		},
		// The adaptive limit has shrunk to one call: the route's share of
		// workers (4) is not what holds the second workflow back.
		before: func(b *Bridge) {
			b.limiter.mu.Lock()
			b.limiter.limit = 1
			b.limiter.mu.Unlock()
		},
		msgs: []*sarama.ConsumerMessage{msg(0, "a", `{}`), msg(1, "b", `{}`)},
		enter: func(t *testing.T, b *Bridge, tc *stuckTemporal, _ *fakeDLQ) {
			<-tc.first
			require.Eventually(t, func() bool { return b.limiter.waiting() > 0 }, 5*time.Second, time.Millisecond)
		},
	}, {
		name:     "retrying a DLQ write",
		temporal: newStuckTemporal(false),
		dlq:      &fakeDLQ{failNext: 1 << 30},
		msgs:     []*sarama.ConsumerMessage{msg(0, "a", `{not json`)},
		enter: func(t *testing.T, _ *Bridge, _ *stuckTemporal, dl *fakeDLQ) {
			require.Eventually(t, func() bool { return dl.attempts() > 1 }, 5*time.Second, time.Millisecond)
		},
	}, {
		name:     "retrying a call Temporal refused",
		temporal: newStuckTemporal(true),
		msgs:     []*sarama.ConsumerMessage{msg(0, "a", `{}`)},
		enter: func(t *testing.T, _ *Bridge, tc *stuckTemporal, _ *fakeDLQ) {
			require.Eventually(t, func() bool { return tc.callCount() > 1 }, 5*time.Second, time.Millisecond)
		},
	}, {
		name:     "waiting for the circuit to close",
		temporal: newStuckTemporal(true),
		tune: func(c *config.Config) {
			c.Backpressure.Circuit = config.Circuit{Failures: 1, OpenFor: time.Hour}
		},
		msgs: []*sarama.ConsumerMessage{msg(0, "a", `{}`), msg(1, "b", `{}`)},
		enter: func(t *testing.T, b *Bridge, tc *stuckTemporal, _ *fakeDLQ) {
			<-tc.first
			require.Eventually(t, func() bool { r, _ := b.pressure.reason("orders"); return r != "" }, 5*time.Second, time.Millisecond)
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dl := c.dlq
			if dl == nil {
				dl = &fakeDLQ{}
			}
			cfg := config.Config{
				Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
				Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: drain},
				Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
			}
			if c.tune != nil {
				c.tune(&cfg)
			}
			b, err := New(cfg, Deps{Temporal: c.temporal, DeadLetters: dl, Logger: quiet()})
			require.NoError(t, err)
			b.dispatcher.start(4)
			if c.before != nil {
				c.before(b)
			}

			ch := make(chan *sarama.ConsumerMessage, len(c.msgs))
			for _, m := range c.msgs {
				ch <- m
			}
			s := &fakeSession{ctx: context.Background()} // the session lives on
			done := make(chan struct{})
			go func() {
				defer close(done)
				assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch}))
			}()
			c.enter(t, b, c.temporal, dl)

			revoked := time.Now()
			close(ch)
			select {
			case <-done:
			case <-time.After(drain + 5*time.Second):
				t.Fatalf("the revoked claim did not let go within the drain timeout (%s)", drain)
			}
			assert.Less(t, time.Since(revoked), drain+2*time.Second, "let go within dispatch.drain_timeout")
			calls := c.temporal.callCount()
			b.dispatcher.stop() // every worker has finished: any late call has been made
			assert.Equal(t, calls, c.temporal.callCount(), "a call was made after the claim let go")
			assert.Zero(t, s.committed(), "nothing Temporal did not accept is marked")
			records, _ := b.pressure.held()
			assert.Zero(t, records, "the claim returned its records to the in-flight budget")
		})
	}
}

// pausedFor says why the claimed partition is paused ("" if it is not, "-"
// if it is not claimed).
func (p *pressure) pausedFor(topic string, partition int32) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for f, r := range p.flows {
		if f.topic == topic && f.partition == partition {
			return r
		}
	}
	return "-"
}

func (f *fakeDLQ) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tried
}
