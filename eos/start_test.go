package eos

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/internal/devstack"
)

// startSession is the part of a consumer group session a partition loop's
// start reads.
type startSession struct {
	sarama.ConsumerGroupSession
	ctx context.Context
}

func (s startSession) Context() context.Context { return s.ctx }
func (s startSession) MemberID() string         { return "m" }
func (s startSession) GenerationID() int32      { return 1 }

// A producer start that a session ended before it was answered is taken
// over by the partition's next claim, not begun again beside it: the late
// InitProducerId of the first would bump the epoch after the second's and
// fence the live producer, and the Processor would stop with ErrFenced
// though no other instance exists. (Each session's end left one more
// start running.)
func TestAStartASessionLeftIsTakenOverByTheNextClaim(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in")
	require.NoError(t, err)
	defer kafka.Close()
	var inits atomic.Int32
	kafka.Cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		kafka.Cluster.KeepControl()
		inits.Add(1)
		return nil, nil, true // taken, never answered
	})
	warned := make(chan struct{}, 10)
	log := slog.New(onStartWarn{slog.NewTextHandler(io.Discard, nil), warned})
	p, err := New(Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "t",
		StartWarnAfter: 500 * time.Millisecond}, func(context.Context, *sarama.ConsumerMessage) ([]Output, error) { return nil, nil }, log)
	require.NoError(t, err)

	first, end := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l, err := startPartitionLoop(p, startSession{ctx: first}, nil, "t-g-in-0", p.log)
		assert.Nil(t, l)
		assert.NoError(t, err)
	}()
	require.Eventually(t, func() bool { return inits.Load() == 1 }, 30*time.Second, 5*time.Millisecond)
	end() // the session ends, the start unanswered
	<-done
	for len(warned) > 0 { // the first claim's warnings
		<-warned
	}

	second, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _, _ = startPartitionLoop(p, startSession{ctx: second}, nil, "t-g-in-0", p.log) }()
	select { // the second claim has waited StartWarnAfter on its start
	case <-warned:
	case <-time.After(30 * time.Second):
		t.Fatal("the second claim never waited on its start")
	}
	assert.Equal(t, int32(1), inits.Load(), "InitProducerId requests: the second claim began another start")
}

// onStartWarn signals warned on each warning that a start has no answer.
type onStartWarn struct {
	slog.Handler
	warned chan<- struct{}
}

func (h onStartWarn) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		select {
		case h.warned <- struct{}{}:
		default:
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h onStartWarn) WithAttrs(as []slog.Attr) slog.Handler {
	return onStartWarn{h.Handler.WithAttrs(as), h.warned}
}

// A start a session left that has answered by the partition's next claim
// is not taken over: the partition may have had another owner since,
// whose InitProducerId fenced that producer, and the Processor would stop
// with ErrFenced at its first send. The claim starts its own, and the
// answered one is closed.
func TestAStartThatAnsweredAfterItsSessionIsNotTakenOver(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in")
	require.NoError(t, err)
	defer kafka.Close()
	var inits atomic.Int32
	release := make(chan struct{})
	kafka.Cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		kafka.Cluster.KeepControl()
		if inits.Add(1) == 1 {
			<-release // the first start answers once its session has ended
		}
		return nil, nil, false
	})
	p, err := New(Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "t"},
		func(context.Context, *sarama.ConsumerMessage) ([]Output, error) { return nil, nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)

	first, end := context.WithCancel(context.Background())
	l, err := func() (*partitionLoop, error) {
		go func() {
			for inits.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			end()
		}()
		return startPartitionLoop(p, startSession{ctx: first}, nil, "t-g-in-0", p.log)
	}()
	require.NoError(t, err)
	require.Nil(t, l)
	close(release)
	kept := p.starts["t-g-in-0"]
	require.NotNil(t, kept, "the unanswered start was not kept")
	require.Eventually(t, func() bool { return len(kept.done) == 1 }, 30*time.Second, time.Millisecond, "the kept start never answered")

	l, err = startPartitionLoop(p, startSession{ctx: context.Background()}, nil, "t-g-in-0", p.log)
	require.NoError(t, err)
	require.NotNil(t, l)
	defer l.close()
	assert.Equal(t, int32(2), inits.Load(), "InitProducerId requests: the answered start was taken over")
	assert.Empty(t, p.starts)
}

// A start Run abandons stops asking: sarama sends InitProducerId again
// while the coordinator answers that it is loading (Retry.Max 50 times),
// and a late one that succeeds bumps the epoch and fences the partition's
// next owner, another instance or a new Processor, which then stops with
// ErrFenced. The start's client is closed at once, so nothing more is
// sent. (It went on: 51 requests after the abandon.)
func TestAnAbandonedStartSendsNoMoreInitProducerID(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in")
	require.NoError(t, err)
	defer kafka.Close()
	inits := coordinatorLoading(kafka)
	c := validConfig()
	c.Brokers = kafka.Brokers
	s := startProducer(c.Brokers, c.withDefaults().producerConfig("t-g-in-0"))
	require.Eventually(t, func() bool { return inits.Load() >= 2 }, 30*time.Second, time.Millisecond, "the start retries")
	s.abandon()
	at := inits.Load()
	select {
	case <-s.finished:
	case <-time.After(60 * time.Second):
		t.Fatal("the abandoned start never ended")
	}
	assert.LessOrEqual(t, inits.Load(), at+1, "InitProducerId requests after the abandon (one may have been on its way)")
}

// claimsSession is a session that claims claims.
type claimsSession struct {
	sarama.ConsumerGroupSession
	claims map[string][]int32
}

func (s claimsSession) Claims() map[string][]int32 { return s.claims }

// A start kept for the partition's next claim is abandoned by a session
// that does not claim the partition: another member owns it now, and the
// start's late InitProducerId would fence that member. (It was kept, and
// retried, until Run returned.)
func TestASessionThatDoesNotClaimThePartitionAbandonsItsStart(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in")
	require.NoError(t, err)
	defer kafka.Close()
	inits := coordinatorLoading(kafka)
	p, err := New(Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "t"},
		func(context.Context, *sarama.ConsumerMessage) ([]Output, error) { return nil, nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	s0 := startProducer(p.cfg.Brokers, p.cfg.producerConfig("t-g-in-0"))
	p.keepStart("t-g-in-0", s0)
	require.Eventually(t, func() bool { return inits.Load() >= 2 }, 30*time.Second, time.Millisecond, "the start retries")

	before := inits.Load()
	require.NoError(t, handler{p}.Setup(claimsSession{claims: map[string][]int32{"in": {1}}}))
	select {
	case <-s0.finished:
	case <-time.After(60 * time.Second):
		t.Fatal("the start of the partition the session did not claim went on")
	}
	assert.LessOrEqual(t, inits.Load(), before+1, "InitProducerId requests after the session began (one may have been on its way)")
	p.mu.Lock()
	_, kept := p.starts["t-g-in-0"]
	p.mu.Unlock()
	assert.False(t, kept)

	// The start of a partition the session claims is kept for its claim.
	s1 := startProducer(p.cfg.Brokers, p.cfg.producerConfig("t-g-in-1"))
	defer s1.abandon()
	p.keepStart("t-g-in-1", s1)
	require.NoError(t, handler{p}.Setup(claimsSession{claims: map[string][]int32{"in": {1}}}))
	p.mu.Lock()
	assert.Same(t, s1, p.starts["t-g-in-1"])
	p.mu.Unlock()
}

// coordinatorLoading answers every InitProducerId on kafka that the
// coordinator is loading (sarama sends it again, Retry.Max times), and
// counts them.
func coordinatorLoading(kafka *devstack.Kafka) *atomic.Int32 {
	var inits atomic.Int32
	kafka.Cluster.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kafka.Cluster.KeepControl()
		inits.Add(1)
		resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp, nil, true
	})
	return &inits
}
