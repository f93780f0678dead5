package eos_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/eos"
	"github.com/sagabridge/sagabridge/internal/devstack"
)

// BenchmarkTransactionalVsPlainPipe runs, side by side on one embedded
// broker (kfake over TCP), the transactional Processor and a plain
// at-least-once pipe (the same consumer group, an idempotent producer, the
// same batches, offsets marked and auto-committed) over the same records,
// and reports each one's records/s and their ratio (target >= 0.7).
//
//	go test -run '^$' -bench TransactionalVsPlain -benchtime 4x ./eos/
func BenchmarkTransactionalVsPlainPipe(b *testing.B) {
	const records, partitions = 200_000, 8
	kafka, err := devstack.StartKafka(0, partitions)
	if err != nil {
		b.Fatal(err)
	}
	defer kafka.Close()
	value := make([]byte, 200)
	var txnRate, plainRate float64
	for i := range b.N {
		in, outTxn, outPlain := fmt.Sprintf("in-%d", i), fmt.Sprintf("txn-%d", i), fmt.Sprintf("plain-%d", i)
		for _, t := range []string{in, outTxn, outPlain} {
			if err := kafka.Cluster.CreateTopic(t, partitions, nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := fill(kafka.Brokers, in, records, value); err != nil {
			b.Fatal(err)
		}
		// Alternate the order so neither side always runs on a warmer broker.
		runs := []func() (float64, error){
			func() (float64, error) { return runTxn(kafka.Brokers, in, outTxn, records, i) },
			func() (float64, error) { return runPlain(kafka.Brokers, in, outPlain, records, i) },
		}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		var rates [2]float64
		for j, run := range runs {
			if rates[j], err = run(); err != nil {
				b.Fatal(err)
			}
		}
		if i%2 == 1 {
			rates[0], rates[1] = rates[1], rates[0]
		}
		txnRate += rates[0]
		plainRate += rates[1]
	}
	b.ReportMetric(txnRate/float64(b.N), "txn-records/s")
	b.ReportMetric(plainRate/float64(b.N), "plain-records/s")
	b.ReportMetric(txnRate/plainRate, "txn/plain")
}

func enrichTo(out string) eos.Func {
	return func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		return []eos.Output{{Topic: out, Key: rec.Key, Value: rec.Value}}, nil
	}
}

func runTxn(brokers []string, in, out string, records, i int) (float64, error) {
	group := fmt.Sprintf("bench-txn-%d", i)
	p, err := eos.New(eos.Config{Brokers: brokers, Group: group, Topics: []string{in}, TransactionalIDPrefix: group},
		enrichTo(out), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
	for p.Stats().Records < int64(records) {
		select {
		case err := <-done:
			return 0, fmt.Errorf("processor stopped early: %w", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	cancel()
	return float64(records) / elapsed.Seconds(), <-done
}

// plainHandler is the baseline: at-least-once, no transactions.
type plainHandler struct {
	prod      sarama.SyncProducer
	out       string
	processed *atomic.Int64
}

func (plainHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (plainHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h plainHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	fn := enrichTo(h.out)
	var batch []*sarama.ConsumerMessage
	flush := func() error {
		var msgs []*sarama.ProducerMessage
		for _, rec := range batch {
			outs, _ := fn(sess.Context(), rec)
			for _, o := range outs {
				msgs = append(msgs, &sarama.ProducerMessage{Topic: o.Topic, Key: sarama.ByteEncoder(o.Key), Value: sarama.ByteEncoder(o.Value)})
			}
		}
		if err := h.prod.SendMessages(msgs); err != nil {
			return err
		}
		sess.MarkMessage(batch[len(batch)-1], "")
		h.processed.Add(int64(len(batch)))
		batch = batch[:0]
		return nil
	}
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	for {
		select {
		case rec, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			if len(batch) == 0 {
				linger.Reset(50 * time.Millisecond)
			}
			if batch = append(batch, rec); len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-linger.C:
			if len(batch) > 0 {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

func runPlain(brokers []string, in, out string, records, i int) (float64, error) {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Net.MaxOpenRequests = 1
	prod, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return 0, err
	}
	defer prod.Close()
	group, err := sarama.NewConsumerGroup(brokers, fmt.Sprintf("bench-plain-%d", i), cfg)
	if err != nil {
		return 0, err
	}
	defer group.Close()
	var processed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		for ctx.Err() == nil {
			if err := group.Consume(ctx, []string{in}, plainHandler{prod: prod, out: out, processed: &processed}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for processed.Load() < int64(records) {
		select {
		case err := <-done:
			return 0, fmt.Errorf("plain pipe stopped early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	cancel()
	return float64(records) / elapsed.Seconds(), <-done
}

// fill writes records records of value, keyed over 1,000 keys.
func fill(brokers []string, topic string, records int, value []byte) error {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, 0, 1000)
	for i := range records {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%1000)), Value: sarama.ByteEncoder(value)})
		if len(msgs) == cap(msgs) || i == records-1 {
			if err := p.SendMessages(msgs); err != nil {
				return fmt.Errorf("fill %s: %w", topic, err)
			}
			msgs = msgs[:0]
		}
	}
	return nil
}
