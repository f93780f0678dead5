// Command worker runs the signup saga (examples/signup) on task queue
// "signups", for the bridge configured by examples/signup/bridge.yaml:
//
//	go run ./examples/signup/worker -temporal-address 127.0.0.1:7233 -kafka-brokers 127.0.0.1:9092
//
// It is a sagaworker.Main: it takes the flags package sagaworker lists
// (-config, -temporal-address, -namespace, -kafka-brokers, -task-queue, -workflow-pollers,
// -workflow-poller-behavior, -sticky-timeout, -log-level), checks that the namespace
// has the SagaStatus search attribute (naming the command that adds it),
// and stops on SIGINT or SIGTERM.
package main

import (
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/examples/signup"
	"github.com/sagabridge/sagabridge/sagaworker"
)

func main() {
	sagaworker.Main(sagaworker.Worker{
		Name:             "signup-worker",
		TaskQueue:        signup.TaskQueue,
		SearchAttributes: sagaworker.Keyword(signup.StatusSearchAttribute),
		Kafka:            true, // the saga dead-letters a record that comes after its end (sagaworker registers DeadLetter)
		Register: func(r worker.Registry, _ sagaworker.Deps) error {
			signup.RegisterWith(r, &signup.Activities{})
			return nil
		},
	})
}
