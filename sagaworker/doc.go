// Package sagaworker is the main of a worker process for sagas the bridge
// feeds: it dials Temporal with the bridge's configuration conventions,
// registers your workflows and activities, checks at start that the
// namespace has the search attributes they need (naming the command that
// adds a missing one), and runs until SIGINT, SIGTERM or SIGHUP.
//
// A worker main is one call:
//
//	func main() {
//		sagaworker.Main(sagaworker.Worker{
//			Name:             "signup-worker",
//			TaskQueue:        "signups",
//			SearchAttributes: sagaworker.Keyword("SagaStatus"), // Entity.StatusSearchAttribute
//			Register: func(r worker.Registry, _ sagaworker.Deps) error {
//				r.RegisterWorkflowWithOptions(SignupSaga, workflow.RegisterOptions{Name: "SignupSaga"})
//				r.RegisterActivity(&Activities{})
//				return nil
//			},
//		})
//	}
//
// The program then takes the flags cmd/worker takes:
//
//	-config bridge.yaml      the bridge's configuration; its kafka (but for its TLS and SASL
//	                         settings in a worker without Kafka), temporal and dlq sections are used
//	-temporal-address h:p    default 127.0.0.1:7233
//	-namespace ns            default "default"
//	-task-queue q            default Worker.TaskQueue
//	-workflow-pollers n      default 16 (the SDK's 2 halve fan-out throughput): the most
//	                         for each of the normal and the sticky queue, or in all when fixed
//	-workflow-poller-behavior autoscale (default; the SDK scales pollers to the tasks) or fixed
//	-sticky-timeout d        default Worker.Options.StickyScheduleToStartTimeout, else 20s (the
//	                         SDK's is 5s): how long a workflow task waits on the worker's sticky
//	                         queue before the server moves it to the normal queue
//	-log-level level         debug, info, warn or error; default info
//	-kafka-brokers a,b       only with Worker.Kafka (required then, unless -config gives them)
//
// Precedence is the bridge's: defaults, the file, SAGABRIDGE_* environment
// variables (SAGABRIDGE_TEMPORAL_ADDRESS, ...; a misspelled one is an error),
// then the flags given. The temporal section's TLS, API key and payload
// encryption (temporal.codec, which the worker must share with the bridge)
// apply, and OTEL_EXPORTER_OTLP_ENDPOINT turns on tracing that continues the
// bridge's spans.
//
// The registered workflow name must equal the workflow_type of the bridge
// route that feeds it, and the worker must poll the route's task_queue.
package sagaworker
