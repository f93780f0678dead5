package bridge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// queueDown is a Temporal on which one task queue's calls fail as an
// unreachable namespace's would (retryable, for ever) and the others'
// are accepted.
type queueDown struct {
	fakeTemporal
	down string
}

func (q *queueDown) SignalWithStart(ctx context.Context, t Target, b event.Batch) error {
	if t.TaskQueue == q.down {
		return serviceerror.NewUnavailable("task queue " + t.TaskQueue + " unreachable")
	}
	return q.fakeTemporal.SignalWithStart(ctx, t, b)
}

// A target that stops answering does not stop the topics routed to other
// targets. Its topic's records were read until they filled the whole
// in-flight budget; they cannot be released while their calls fail, so
// the budget never fell back to its low-water mark and every partition of
// every topic stayed paused (payments: 1 committed of 10, its partition
// paused for "in_flight"). With the budget split in shares but the global
// mark still applied, the healthy topic filled the rest and the total
// stayed over the low-water mark the stuck share alone holds (49 of 400).
func TestATargetThatStopsAnsweringLeavesTheOtherTopicsFlowing(t *testing.T) {
	tc := &queueDown{down: "q1"}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Batch:    config.Batch{MaxRecords: 10},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Backpressure: config.Backpressure{MaxRecords: 100, ResumeAt: 0.4,
			Circuit: config.Circuit{Failures: 1000, OpenFor: 20 * time.Millisecond}},
		Routes: []config.Route{
			{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q1"},
			{Topic: "payments", TypeHeader: "event-type", WorkflowType: "P", WorkflowID: "payment-{key}", TaskQueue: "q2"},
		},
	}, Deps{Temporal: tc, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	b.running.Store(true)
	b.joined.Store(true)
	b.dispatcher.start(4)
	defer b.dispatcher.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.watchCircuits(ctx)

	pa := &fakePauser{}
	b.pressure.setPauser(pa)
	// claim consumes n records of topic's partition 0, fed as sarama's
	// consumer does: only while the partition is not paused.
	claim := func(topic string, n int) (*fakeSession, func()) {
		ch := make(chan *sarama.ConsumerMessage)
		feeding, stop := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(feeding)
			for i := 0; i < n; {
				if pa.state()[topic+"/0"] {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					continue
				}
				m := msg(int64(i), fmt.Sprintf("k%d", i), `{}`)
				m.Topic = topic
				select {
				case <-stop:
					return
				case ch <- m:
					i++
				}
			}
		}()
		s := &fakeSession{ctx: ctx}
		var wg sync.WaitGroup
		wg.Go(func() {
			assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch, topic: topic}))
		})
		return s, func() { close(stop); <-feeding; close(ch); wg.Wait() }
	}
	_, stopOrders := claim("orders", 300)
	defer stopOrders()
	require.Eventually(t, func() bool {
		r, _ := b.pressure.reason("orders")
		return strings.Contains(r, ReasonInFlight) || strings.Contains(r, ReasonTargetShare)
	}, 5*time.Second, time.Millisecond, "the orders did not fill the budget")

	{
		r, by := b.pressure.held()
		paused, _, _, _ := b.pressure.snapshot()
		t.Logf("held %d records, %d bytes; paused %v", r, by, paused)
	}
	assert.True(t, b.pressure.full(), "a set at its share: the dispatcher favours large calls")
	payments, stopPayments := claim("payments", 400)
	defer stopPayments()
	if !assert.Eventually(t, func() bool { return payments.committed() == 400 }, 10*time.Second, time.Millisecond,
		"the payments were not delivered while q1 is down") {
		r, by := b.pressure.held()
		paused, _, _, _ := b.pressure.snapshot()
		t.Logf("payments committed %d of 400; held %d records, %d bytes; paused %v", payments.committed(), r, by, paused)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(stateCollector{b})
	fams, err := reg.Gather()
	require.NoError(t, err)
	var shares float64
	for _, fam := range fams {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if fam.GetName() == "sagabridge_pauses_total" && l.GetName() == "reason" && l.GetValue() == ReasonTargetShare {
					shares = m.GetCounter().GetValue()
				}
			}
		}
	}
	assert.Positive(t, shares, "sagabridge_pauses_total{reason=target_share}")
}
