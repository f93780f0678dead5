package eos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/eos"
	"github.com/sagabridge/sagabridge/internal/devstack"
)

// A claim whose transactional producer is refused for as long as its ACL
// is missing (TRANSACTIONAL_ID_AUTHORIZATION_FAILED) retries without
// leaking: each failed start closes the client it opened. (sarama's
// NewSyncProducer left its client, its goroutines and its connections
// behind on every failed InitProducerId: about nine goroutines per retry,
// so a Processor waiting out a missing ACL ran out of file descriptors.)
func TestAProducerRefusedForAWhileLeaksNothingPerRetry(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out")
	require.NoError(t, err)
	defer kafka.Close()
	inits := refuseFirst(kafka.Cluster, kmsg.InitProducerID, 1<<30, kerr.TransactionalIDAuthorizationFailed.Code)
	require.NoError(t, fill(kafka.Brokers, "in", 1, []byte("v")))
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "acl",
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond},
		enrichTo("out"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitInits := func(n int32) {
		t.Helper()
		deadline := time.After(time.Minute)
		for inits.Load() < n {
			select {
			case err := <-done:
				t.Fatalf("the Processor stopped: %v", err)
			case <-deadline:
				t.Fatalf("%d of %d producer starts in a minute", inits.Load(), n)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	waitInits(5)
	before := runtime.NumGoroutine()
	waitInits(35)
	after := runtime.NumGoroutine()
	assert.Less(t, after-before, 30, "goroutines grew from %d to %d over 30 failed producer starts", before, after)
	assert.Zero(t, p.Stats().Records, "nothing commits while the producer is refused")
}

// A record whose outputs fit their topic one by one, but not together in
// one record batch (the topic's max.message.bytes bounds a batch, and
// sarama puts a send's records for one partition in one batch), is
// processed, not dead-lettered: its outputs are sent one per request once
// the broker has refused them together. (The record was dead-lettered as
// poison, though every output fitted.)
func TestOutputsThatFitOnlyOneByOneAreNotDeadLettered(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "in"+dlq.DefaultSuffix)
	require.NoError(t, err)
	defer kafka.Close()
	const records, maxBytes, outputs = 4, 2_000, 5
	createTopicWithLimit(t, kafka.Brokers, "out", maxBytes)
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	fn := func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		if rec.Offset != 1 {
			return []eos.Output{{Topic: "out", Key: rec.Key, Value: rec.Value}}, nil
		}
		outs := make([]eos.Output, outputs)
		for i := range outs {
			outs[i] = eos.Output{Topic: "out", Key: rec.Key, Value: make([]byte, maxBytes*2/5)} // 800 bytes: two fit, five do not
		}
		return outs, nil
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "fit-alone",
		RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, records)
	st := p.Stats()
	assert.Zero(t, st.DeadLettered, "no record is poison")
	assert.Equal(t, int64(records-1+outputs), st.Outputs)
}

// A partition whose claim ends (a rebalance, or Run's context cancelled)
// stops between two records even when the function ignores its context:
// what it finished commits and the rest is left to the next owner. (The
// loop checked the context only after a failed call, so it processed the
// rest of its batch, up to half the transaction timeout: a rebalance
// waited that long for the member, and past the rebalance timeout the
// group moved on and the new owner fenced it.)
func TestAClaimThatEndsStopsBetweenRecordsThoughTheFunctionIgnoresItsContext(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out")
	require.NoError(t, err)
	defer kafka.Close()
	const records, each = 200, 100 * time.Millisecond // 20 s for the whole batch
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	started := make(chan struct{}, records)
	fn := func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		started <- struct{}{}
		time.Sleep(each) // a function that does not watch ctx
		return []eos.Output{{Topic: "out", Key: rec.Key, Value: rec.Value}}, nil
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "stop",
		MaxBatch: records, RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	for range 5 {
		<-started
	}
	cancel()
	select {
	case err := <-done:
		done <- err // for the deferred wait
		require.NoError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatalf("Run had not returned 3 s after its context ended (%d records in)", len(started)+5)
	}
	st := p.Stats()
	assert.Less(t, st.Records, int64(records/2), "the claim went on through its batch")
	assert.GreaterOrEqual(t, st.Records, int64(4), "the records finished before the claim ended were not committed")
	assert.Equal(t, st.Records, st.Outputs, "what it finished committed, outputs with offsets")
}

// A function error about the Processor's own access, or a service out of
// reach, is an outage though the function did not wrap it in eos.Outage:
// Kafka's authorization and authentication errors, gRPC's
// PermissionDenied, Unauthenticated and Unavailable, a connection
// refused. The record is retried past Config.MaxAttempts and never
// dead-lettered. (Each was counted against the record, which was
// dead-lettered after MaxAttempts: a revoked credential emptied the input
// into the DLQ, a record a second.)
func TestAccessAndReachErrorsAreOutagesUnwrapped(t *testing.T) {
	for name, cause := range map[string]error{
		"topic ACL":          fmt.Errorf("look up the price: %w", sarama.ErrTopicAuthorizationFailed),
		"SASL":               sarama.ErrSASLAuthenticationFailed,
		"gRPC permission":    status.Error(codes.PermissionDenied, "no write permission"),
		"gRPC key":           status.Error(codes.Unauthenticated, "api key expired"),
		"gRPC unavailable":   status.Error(codes.Unavailable, "connection refused"),
		"connection refused": &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
	} {
		t.Run(name, func(t *testing.T) {
			kafka, err := devstack.StartKafka(0, 1, "in", "out", "in"+dlq.DefaultSuffix)
			require.NoError(t, err)
			defer kafka.Close()
			const records, outage = 3, 6 // the outage outlasts MaxAttempts (2) three times over
			require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
			var calls atomic.Int32
			enrich := enrichTo("out")
			fn := func(ctx context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
				if rec.Offset == 1 && calls.Add(1) <= outage {
					return nil, cause
				}
				return enrich(ctx, rec)
			}
			p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "reach",
				MaxAttempts: 2, RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond},
				fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			runUntilCommitted(t, p, records)
			assert.Greater(t, calls.Load(), int32(outage), "the outage never ended")
			assert.Zero(t, p.Stats().DeadLettered, "a record dead-lettered for an outage")
			assert.Equal(t, int64(records), p.Stats().Outputs)
		})
	}
}

// A function error that is the record's own (here a bad value) still
// counts against it, and after Config.MaxAttempts the record is
// dead-lettered: only access and reach are outages by themselves.
func TestARecordsOwnErrorIsStillCounted(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out", "in"+dlq.DefaultSuffix)
	require.NoError(t, err)
	defer kafka.Close()
	const records = 3
	require.NoError(t, fill(kafka.Brokers, "in", records, []byte("v")))
	enrich := enrichTo("out")
	fn := func(ctx context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		if rec.Offset == 1 {
			return nil, status.Error(codes.InvalidArgument, "price is negative")
		}
		return enrich(ctx, rec)
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "own",
		MaxAttempts: 2, RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond},
		fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, records)
	assert.Equal(t, int64(1), p.Stats().DeadLettered)
}

// A coordinator that takes InitProducerId and never answers holds neither
// the Processor's stop nor its operator in the dark: the start is logged as
// a warning after StartWarnAfter, and Run returns once its context ends.
// (The start waited a read timeout per try, fifty tries, about 25 minutes,
// silently, and held Run's return, and the group's rebalance, as long.)
func TestAnUnansweredProducerStartIsReportedAndDoesNotHoldTheStop(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out")
	require.NoError(t, err)
	defer kafka.Close()
	var inits atomic.Int32
	kafka.Cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		kafka.Cluster.KeepControl()
		inits.Add(1)
		return nil, nil, true // taken, never answered
	})
	require.NoError(t, fill(kafka.Brokers, "in", 1, []byte("v")))
	warned := make(chan string, 10)
	log := slog.New(onLog{slog.NewTextHandler(io.Discard, nil), func(r slog.Record) {
		if r.Level == slog.LevelWarn {
			select {
			case warned <- r.Message:
			default:
			}
		}
	}})
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "hung",
		StartWarnAfter: time.Second, RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond},
		enrichTo("out"), log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer cancel()

	select {
	case msg := <-warned:
		assert.Contains(t, msg, "transactional producer has not started")
		assert.Positive(t, inits.Load(), "warned before the coordinator took the request")
	case err := <-done:
		t.Fatalf("the Processor stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("no warning in 30 s against StartWarnAfter 1 s (%d producer starts taken)", inits.Load())
	}
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15 s of its context's end")
	}
}

// onLog calls fn with each record, on the logging goroutine.
type onLog struct {
	slog.Handler
	fn func(slog.Record)
}

func (h onLog) Handle(ctx context.Context, r slog.Record) error {
	h.fn(r)
	return h.Handler.Handle(ctx, r)
}

func (h onLog) WithAttrs(as []slog.Attr) slog.Handler {
	return onLog{h.Handler.WithAttrs(as), h.fn}
}

// An output the broker can never take, for a topic name Kafka refuses (here
// none), dead-letters its record, naming the output, and the records
// beside it commit. (sarama failed it locally with ErrInvalidTopic, the
// transaction aborted and was retried for ever: the partition stopped.)
func TestAnOutputToAnIllegalTopicDeadLettersItsRecord(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out", "in"+dlq.DefaultSuffix)
	require.NoError(t, err)
	defer kafka.Close()
	require.NoError(t, fill(kafka.Brokers, "in", 3, []byte("v")))
	fn := func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		topic := "out"
		if rec.Offset == 1 {
			topic = "" // no topic at all
		}
		return []eos.Output{{Topic: topic, Value: rec.Value}}, nil
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "bad",
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, 3)
	assert.Equal(t, int64(1), p.Stats().DeadLettered)
	assert.Equal(t, int64(2), p.Stats().Outputs)
}

// An output the broker refuses for what it is (INVALID_RECORD: say a
// record without a key for a compacted topic) dead-letters its record,
// once sent alone shows it is the one, and the records beside it commit.
// (The transaction aborted and was retried for ever: the partition
// stopped.)
func TestAnOutputTheBrokerRefusesDeadLettersItsRecord(t *testing.T) {
	kafka, err := devstack.StartKafka(0, 1, "in", "out", "compacted", "in"+dlq.DefaultSuffix)
	require.NoError(t, err)
	defer kafka.Close()
	var refused atomic.Int32
	kafka.Cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kafka.Cluster.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if !slices.ContainsFunc(pr.Topics, func(t kmsg.ProduceRequestTopic) bool { return t.Topic == "compacted" }) {
			return nil, nil, false
		}
		refused.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, t := range pr.Topics { // the broker refuses the request's batches
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.InvalidRecord.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	require.NoError(t, fill(kafka.Brokers, "in", 3, []byte("v")))
	fn := func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		topic := "out"
		if rec.Offset == 1 {
			topic = "compacted"
		}
		return []eos.Output{{Topic: topic, Value: rec.Value}}, nil
	}
	p, err := eos.New(eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "refused",
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, 3)
	assert.Positive(t, refused.Load(), "the broker refused no request")
	assert.Equal(t, int64(1), p.Stats().DeadLettered)
	assert.Equal(t, int64(2), p.Stats().Outputs)
}

// A setting the broker refuses stops the Processor with an error naming
// it: a TransactionTimeout over the broker's transaction.max.timeout.ms (15
// minutes by default), a SessionTimeout outside its
// group.min/max.session.timeout.ms (6 s to 30 min). The broker's refusal
// was retried for ever: nothing processed, Run returning nil when its
// context ended.
func TestASettingTheBrokerRefusesStopsTheProcessor(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*eos.Config)
		want error
		says string
	}{
		"transaction timeout": {func(c *eos.Config) { c.TransactionTimeout, c.RebalanceTimeout = 16*time.Minute, 16*time.Minute },
			sarama.ErrInvalidTransactionTimeout, "TransactionTimeout 16m0s"},
		"session timeout": {func(c *eos.Config) { c.SessionTimeout = 3 * time.Second }, sarama.ErrInvalidSessionTimeout, "SessionTimeout 3s"},
	} {
		t.Run(name, func(t *testing.T) {
			kafka, err := devstack.StartKafka(0, 1, "in", "out")
			require.NoError(t, err)
			defer kafka.Close()
			require.NoError(t, fill(kafka.Brokers, "in", 3, []byte("v")))
			cfg := eos.Config{Brokers: kafka.Brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "tt",
				RetryInitial: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond}
			tc.edit(&cfg)
			p, err := eos.New(cfg, enrichTo("out"), slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = p.Run(ctx)
			require.NoError(t, ctx.Err(), "Run stopped before its context ended")
			assert.ErrorIs(t, err, tc.want)
			assert.ErrorContains(t, err, tc.says)
		})
	}
}

// Output and DLQ topics a broker creates on first use (Kafka's
// auto.create.topics.enable, on by default) are created: the producers ask
// for them. (Validate's fix for misnamed input topics turned topic
// creation off in the producers too: every batch aborted on
// UNKNOWN_TOPIC_OR_PARTITION, and nothing on the partition committed.)
func TestOutputAndDLQTopicsTheBrokerCreatesOnFirstUseAreCreated(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	require.NoError(t, fill(brokers, "in", 3, []byte("v")))
	fn := func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		if rec.Offset == 1 {
			return nil, eos.Permanent(errors.New("poison"))
		}
		return []eos.Output{{Topic: "in-enriched", Value: rec.Value}}, nil
	}
	p, err := eos.New(eos.Config{Brokers: brokers, Group: "g", Topics: []string{"in"}, TransactionalIDPrefix: "auto",
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runUntilCommitted(t, p, 3)
	assert.Equal(t, int64(1), p.Stats().DeadLettered)
	assert.Equal(t, int64(2), p.Stats().Outputs)
}
