// Command enrich is a runnable eos.Processor: it reads records from one
// topic and writes each, tagged with where it came from, to another, exactly
// once for read_committed consumers. Records whose value contains the
// poison marker are dead-lettered (to <in>.dlq) in the transaction that
// commits their offset.
//
//	enrich -brokers host:port -group enrich -in orders -out orders-enriched \
//	       [-txn-prefix enrich] [-delay 0] [-poison POISON] [-log-level info]
//
// Each output's value is "<topic>/<partition>/<offset> <input value>" and
// its key is the input's key. SIGINT or SIGTERM finishes the open batches
// and leaves the group; a fenced instance exits with status 3.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/eos"
)

func main() {
	brokers := flag.String("brokers", "", "comma-separated Kafka brokers (required)")
	group := flag.String("group", "enrich", "consumer group")
	in := flag.String("in", "", "input topic (required)")
	out := flag.String("out", "", "output topic (required)")
	prefix := flag.String("txn-prefix", "enrich", "transactional ID prefix; keep it stable across restarts")
	delay := flag.Duration("delay", 0, "simulated work per record")
	poison := flag.String("poison", "POISON", "values containing this are dead-lettered at once; empty turns it off")
	batch := flag.Int("batch", 0, "records per transaction; 0 keeps the default (500)")
	session := flag.Duration("session-timeout", 0, "consumer group session timeout; 0 keeps the default (10s)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "enrich: -log-level: %q is not one of debug, info, warn, error\n", *logLevel)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	for name, v := range map[string]string{"-brokers": *brokers, "-in": *in, "-out": *out} {
		if v == "" {
			fmt.Fprintf(os.Stderr, "enrich: %s is required\n", name)
			os.Exit(2)
		}
	}
	fn := func(ctx context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		if *poison != "" && strings.Contains(string(rec.Value), *poison) {
			return nil, eos.Permanent(fmt.Errorf("value contains the poison marker %q", *poison))
		}
		if *delay > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(*delay):
			}
		}
		value := fmt.Sprintf("%s/%d/%d %s", rec.Topic, rec.Partition, rec.Offset, rec.Value)
		return []eos.Output{{Topic: *out, Key: rec.Key, Value: []byte(value)}}, nil
	}
	p, err := eos.New(eos.Config{
		Brokers: strings.FieldsFunc(*brokers, func(r rune) bool { return r == ',' || r == ' ' }), Group: *group, Topics: []string{*in},
		TransactionalIDPrefix: *prefix, MaxBatch: *batch, SessionTimeout: *session,
	}, fn, log)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		os.Exit(2)
	}
	// SIGINT or SIGTERM stops the processor; a second ends the process at
	// once (the default handling is back once the first is caught).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Info("stopping on a signal; a second ends the process at once")
		stop()
	}()
	if err := p.Run(ctx); err != nil {
		log.Error("processor stopped", "err", err)
		if errors.Is(err, eos.ErrFenced) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}
