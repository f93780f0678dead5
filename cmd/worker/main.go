// Command worker runs both example sagas on one task queue: the order saga
// (examples/saga) and the trip saga (examples/trip).
//
//	worker -kafka-brokers host:port[,...] [-temporal-address host:port] [-namespace default] [-task-queue orders]
//
// The brokers receive the order sagas' outcome events (topic order-outcomes)
// and the trip saga's failed steps: a booking that exhausts its retries is
// dead-lettered through the DeadLetter activity to its record's DLQ topic
// (the source topic plus ".dlq").
// It stops on SIGINT or SIGTERM after in-flight tasks finish.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/examples/trip"
	"github.com/sagabridge/sagabridge/internal/cli"
)

func main() {
	brokers := flag.String("kafka-brokers", "", "comma-separated brokers for outcome events (required)")
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
	if *brokers == "" {
		fmt.Fprintln(os.Stderr, "worker: -kafka-brokers is required")
		os.Exit(2)
	}
	if *pollers < 1 {
		fmt.Fprintln(os.Stderr, "worker: -workflow-pollers must be at least 1")
		os.Exit(2)
	}
	c, err := client.Dial(client.Options{
		HostPort: *addr, Namespace: *namespace,
		Logger: sdklog.NewStructuredLogger(log.With("component", "temporal")),
	})
	if err != nil {
		cli.Fatal(log, "connect to Temporal", err)
	}
	defer c.Close()
	producer, err := sarama.NewSyncProducer(cli.SplitList(*brokers), activities.ProducerConfig(sarama.V3_6_0_0))
	if err != nil {
		cli.Fatal(log, "start the outcome producer", err)
	}
	defer producer.Close()
	w := worker.New(c, *taskQueue, worker.Options{MaxConcurrentWorkflowTaskPollers: *pollers})
	saga.RegisterWith(w, saga.NewActivities(), &activities.Publisher{Producer: producer})
	trip.RegisterWith(w, trip.NewServices(), &activities.DeadLetterer{Producer: producer})
	log.Info("worker started", "task_queue", *taskQueue, "namespace", *namespace, "workflow_pollers", *pollers)
	if err := w.Run(worker.InterruptCh()); err != nil {
		cli.Fatal(log, "worker stopped", err)
	}
}
