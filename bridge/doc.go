// Package bridge is sagabridge's engine: it consumes Kafka topics with a
// sarama consumer group and delivers every record to the Temporal workflow
// that owns it, one SignalWithStart per workflow per batch, in offset order
// per key, committing an offset only once Temporal holds every record below
// it (or the DLQ does).
//
// # The flow, one file per stage
//
//	Kafka ─► consume.go   claimHandler/flow: one goroutine per claimed partition reads,
//	           │          counts each record against the in-flight budget, batches
//	           ▼          (max records / bytes / linger) and waits while paused
//	         route.go     Router: decode, event type, workflow ID; poison ─► DLQ;
//	           │          topicid.go: the record's topic ID (read at each rebalance)
//	           ▼
//	         dispatch.go  dispatch: group a batch by workflow ID and route (offset
//	           │          order kept); dispatcher: a FIFO per workflow, one call in
//	           │          flight per workflow, Dispatch.Concurrency workers taking
//	           ▼          ready workflows from one lane per route in turn, each lane
//	           │          capped at routes[].concurrency; workflows of an open
//	           │          circuit are parked, holding no worker
//	         deliver.go   send/call: SignalWithStart through the limiter and the
//	           │          target's circuit, retry with backoff, classify errors,
//	           │          closed-workflow policy, dead letters; window.go: per-workflow
//	           │          flow control (wait while a workflow has not applied enough)
//	           ▼
//	         offsets.go   tracker: mark the offset after the longest finished prefix
//	         txncommit.go with dlq.transactional: offsets and dead letters in one
//	                      Kafka transaction per commit
//
//	         backpressure.go  pressure: pause and resume partitions (in-flight budget,
//	                          open circuits, backed-up task queues)
//	         circuit.go       a circuit breaker per route target (namespace and task
//	                          queue): an open one pauses only its routes' topics
//	         backlog.go       polls each routed task queue's backlog
//	         limiter.go       AIMD limit on concurrent calls
//	         coalesce.go      a dispatch window per routed task queue: while its
//	                          sampled workflow tasks wait to start, a workflow's
//	                          records wait for more of its own
//	         metrics.go       Prometheus metrics, /healthz and /readyz
//	         tracing.go       a span per delivery, continuing the records' traces
//
// The seams to the outside world are in seams.go (Temporal, DeadLetters and
// the sarama consumer group; startopts.go adds the optional
// SearchAttributeLister); errors.go holds the sentinel and typed errors;
// options.go the Options of New (WithRouteFunc: a route's workflow IDs
// named in Go).
//
// # Who owns what
//
//   - A flow (one claimed partition) is owned by its ConsumeClaim goroutine;
//     its tracker and held counters are safe for the dispatch workers that
//     finish its units.
//   - The dispatcher's queues, lanes and parked workflows are guarded by
//     its mutex; a workflow's queue is served by one worker at a time.
//   - Each circuit's breaker guards its own state; its parking flag and
//     unpark count are atomics written only by its state changes, which
//     unpark the dispatcher's workflows from another goroutine (the
//     dispatcher's mutex is never taken under a breaker's).
//   - pressure's reasons and pause state are guarded by its mutex; the
//     in-flight counters are atomics. Only pressure pauses and resumes
//     partitions in sarama.
//   - A txnCommitter's producer belongs to its run goroutine until close.
//   - The per-workflow windows and the topic IDs are guarded by their own
//     mutexes.
//   - Each coalescer's dispatch window and recent sends are guarded by its
//     mutex (the map of coalescers is built in New and only read after); the dispatcher reads the window holding its own (never the
//     other way round), and a queue waiting out the window is scheduled by
//     a timer that takes the dispatcher's mutex.
//   - Bridge holds only immutable configuration, the seams and counters.
//
// The engine depends on the seams only: it must not import the Temporal SDK
// client (bridge/temporalsdk implements the seam) or command-line code. It
// reads its configuration from package config and builds Kafka settings
// with internal/connect.
package bridge
