// Command worker runs both example sagas on one task queue: the order saga
// (examples/saga) and the trip saga (examples/trip).
//
//	worker -kafka-brokers host:port[,...] [-temporal-address host:port] [-namespace default] [-task-queue orders]
//	worker -config bridge.yaml [-task-queue orders]
//
// With -config it reads the kafka and temporal sections of the bridge's
// configuration file: brokers, TLS and SASL, the Temporal address and
// namespace, TLS or mTLS, API key, and the temporal.codec payload
// encryption, which the worker must share with the bridge. Flags given on
// the command line override the file, and SAGABRIDGE_* environment variables
// (as for the bridge) sit between the two. With OTEL_EXPORTER_OTLP_ENDPOINT set
// it exports the workflows' and activities' spans, continuing the traces the
// bridge started from the records' traceparent.
//
// The brokers receive the order sagas' outcome events (topic order-outcomes)
// and the trip saga's failed steps: a booking that exhausts its retries is
// dead-lettered through the DeadLetter activity to its record's DLQ topic
// (the source topic plus ".dlq").
// It stops on SIGINT or SIGTERM after in-flight tasks finish.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	enumspb "go.temporal.io/api/enums/v1"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/examples/trip"
	"github.com/sagabridge/sagabridge/internal/cli"
	"github.com/sagabridge/sagabridge/internal/connect"
)

func main() {
	configPath := flag.String("config", "", "the bridge's YAML config; its kafka and temporal sections are used")
	brokers := flag.String("kafka-brokers", "", "comma-separated brokers for outcome events and dead letters (required without -config)")
	addr := flag.String("temporal-address", "127.0.0.1:7233", "Temporal frontend host:port")
	namespace := flag.String("namespace", "default", "Temporal namespace")
	taskQueue := flag.String("task-queue", saga.TaskQueue, "task queue to poll")
	pollers := flag.Int("workflow-pollers", 16, "concurrent workflow-task pollers; the default 2 of the SDK halves fan-out throughput")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	log, err := cli.NewLogger(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *pollers < 1 {
		fmt.Fprintln(os.Stderr, "worker: -workflow-pollers must be at least 1")
		os.Exit(2)
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(c *config.Config) {
		if set["kafka-brokers"] {
			c.Kafka.Brokers = cli.SplitList(*brokers)
		}
		if set["temporal-address"] || *configPath == "" {
			c.Temporal.Address = *addr
		}
		if set["namespace"] || *configPath == "" {
			c.Temporal.Namespace = *namespace
		}
	}
	if *configPath == "" && *brokers == "" {
		fmt.Fprintln(os.Stderr, "worker: -kafka-brokers or -config is required")
		os.Exit(2)
	}
	fromEnv, err := config.FromEnv(os.Environ())
	if err != nil {
		cli.Fatal(log, "invalid configuration in the environment", err)
	}
	conns, err := config.LoadConnections(*configPath, fromEnv, override)
	if err != nil {
		cli.Fatal(log, "invalid configuration", err)
	}
	opts, err := connect.ClientOptions(conns.Temporal, sdklog.NewStructuredLogger(log.With("component", "temporal")))
	if err != nil {
		cli.Fatal(log, "temporal configuration", err)
	}
	tp, shutdownTracing, err := cli.TracerProvider(context.Background(), "sagabridge-worker")
	if err != nil {
		cli.Fatal(log, "tracing", err)
	}
	defer shutdownTracing(context.Background())
	tracing, err := connect.TracingInterceptor(tp)
	if err != nil {
		cli.Fatal(log, "tracing", err)
	}
	opts.Interceptors = append(opts.Interceptors, tracing)
	c, err := client.Dial(opts)
	if err != nil {
		cli.Fatal(log, "connect to Temporal", err)
	}
	defer c.Close()
	pc, err := connect.DLQProducerConfig(conns.Kafka, 0) // idempotent, acknowledged by all replicas, with TLS/SASL
	if err != nil {
		cli.Fatal(log, "kafka configuration", err)
	}
	pc.ClientID = "sagabridge-worker"
	producer, err := connect.SyncProducer(conns.Kafka, pc)
	if err != nil {
		cli.Fatal(log, "start the outcome producer", err)
	}
	defer producer.Close()
	required := map[string]enumspb.IndexedValueType{saga.StatusSearchAttribute: enumspb.INDEXED_VALUE_TYPE_KEYWORD}
	if err := cli.RequireSearchAttributes(context.Background(), c, opts.Namespace, required); err != nil {
		cli.Fatal(log, "the namespace is not ready for the order saga", err)
	}
	w := worker.New(c, *taskQueue, worker.Options{MaxConcurrentWorkflowTaskPollers: *pollers})
	saga.RegisterWith(w, saga.NewActivities(), &activities.Publisher{Producer: producer})
	trip.RegisterWith(w, trip.NewServices(), &activities.DeadLetterer{Producer: producer})
	log.Info("worker started", "task_queue", *taskQueue, "namespace", opts.Namespace, "workflow_pollers", *pollers,
		"payload_encryption", conns.Temporal.Codec.KeyEnv != "" || conns.Temporal.Codec.KeyFile != "")
	if err := w.Run(worker.InterruptCh()); err != nil {
		cli.Fatal(log, "worker stopped", err)
	}
}
