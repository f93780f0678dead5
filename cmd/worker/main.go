// Command worker runs both example sagas on one task queue: the order saga
// (examples/saga) and the trip saga (examples/trip). It is a
// sagaworker.Main, as a worker for your own sagas would be.
//
//	worker -kafka-brokers host:port[,...] [-temporal-address host:port] [-namespace default] [-task-queue orders]
//	worker -config bridge.yaml [-task-queue orders]
//
// plus package sagaworker's -workflow-pollers, -workflow-poller-behavior,
// -sticky-timeout and -log-level.
//
// With -config it reads the kafka, temporal and dlq sections of the
// bridge's configuration file: brokers, TLS and SASL, the Temporal address
// and namespace, TLS or mTLS, API key, the temporal.codec payload
// encryption, which the worker must share with the bridge, and where and
// how large dead letters are written (dlq.suffix, dlq.max_message_bytes),
// so the trip saga's go where the bridge's go. Flags given on
// the command line override the file, and SAGABRIDGE_* environment variables
// (as for the bridge) sit between the two. With OTEL_EXPORTER_OTLP_ENDPOINT set
// it exports the workflows' and activities' spans, continuing the traces the
// bridge started from the records' traceparent.
//
// The brokers receive the order sagas' outcome events (topic order-outcomes)
// and the trip saga's failed steps: a booking that exhausts its retries is
// dead-lettered through the DeadLetter activity to its record's DLQ topic
// (the source topic plus ".dlq"). It refuses to start on a namespace
// without the SagaStatus search attribute, naming the command that adds it.
// It stops on SIGINT, SIGTERM or SIGHUP after in-flight tasks finish.
package main

import (
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/examples/trip"
	"github.com/sagabridge/sagabridge/sagaworker"
)

func main() {
	sagaworker.Main(sagaworker.Worker{
		Name:             "sagabridge-worker",
		TaskQueue:        saga.TaskQueue,
		SearchAttributes: sagaworker.Keyword(saga.StatusSearchAttribute),
		Kafka:            true,
		Register: func(r worker.Registry, d sagaworker.Deps) error {
			saga.RegisterWith(r, saga.NewActivities(), &activities.Publisher{Producer: d.Producer, Alone: d.Alone})
			trip.RegisterWith(r, trip.NewServices(), &activities.DeadLetterer{Producer: d.Producer, Alone: d.Alone, Suffix: d.DLQ.Suffix, MaxMessageBytes: d.DLQ.MaxMessageBytes})
			return nil
		},
	})
}
