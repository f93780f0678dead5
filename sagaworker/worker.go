package sagaworker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"strings"

	"github.com/IBM/sarama"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/cli"
	"github.com/sagabridge/sagabridge/internal/connect"
)

// Worker describes a worker program: what it registers and what the
// namespace must provide. Main and Run turn it into a running Temporal
// worker.
type Worker struct {
	// Name names the program in its usage text, its Kafka client ID and its
	// traces' service.name. Optional, default "worker".
	Name string
	// TaskQueue is the task queue polled unless -task-queue says otherwise:
	// the task_queue of the bridge routes that feed the workflows. Required
	// (here or by the flag).
	TaskQueue string
	// SearchAttributes must be registered on the namespace, each with its
	// type, before the worker starts polling (see RequireSearchAttributes);
	// list the Entity's StatusSearchAttribute here with Keyword. Optional.
	SearchAttributes map[string]enumspb.IndexedValueType
	// Kafka connects the worker to Kafka for activities that write to it
	// (activities.Publisher, activities.DeadLetterer): -kafka-brokers (or
	// -config) becomes required and Deps.Producer is set, and Run registers
	// activities.DeadLetterer on it after Register, unless Register
	// registered an activity of its name itself, since every Entity
	// workflow may dead-letter a record that arrives after its final
	// status (dispatch.on_closed_workflow: dlq, the default). Optional,
	// default false: the worker talks to Temporal only, and warns at start
	// that its sagas cannot dead-letter (unless Register registered one).
	Kafka bool
	// Register registers the workflows and activities on r. Register each
	// workflow under the name the bridge route's workflow_type gives
	// (workflow.RegisterOptions{Name: ...}). Required.
	Register func(r worker.Registry, d Deps) error
	// Options are the SDK worker's options. -workflow-pollers and
	// -workflow-poller-behavior replace MaxConcurrentWorkflowTaskPollers
	// and WorkflowTaskPollerBehavior; -sticky-timeout defaults to
	// StickyScheduleToStartTimeout when it is set and replaces it when given;
	// WorkerStopTimeout is DefaultWorkerStopTimeout when not set.
	// Optional.
	Options worker.Options
}

// Deps are what Register may hand to workflows' activities. They live
// until the worker stops.
type Deps struct {
	// Client is the Temporal client the worker polls with.
	Client client.Client
	// Producer is an idempotent Kafka producer acknowledged by all in-sync
	// replicas, with the kafka section's TLS and SASL, that takes records
	// up to Kafka's default max.message.bytes (1048588), or
	// DLQ.MaxMessageBytes if larger: outcomes are not bound by the DLQ's
	// limit, and DeadLetterer reduces a dead letter over it itself. Nil
	// unless Worker.Kafka.
	Producer sarama.SyncProducer
	// Alone is Producer's twin that sends one record per request
	// (dlq.AloneConfig): give it to activities.Publisher and
	// DeadLetterer as Alone. Nil unless Worker.Kafka.
	Alone sarama.SyncProducer
	// DLQ is the configuration's dlq section (its defaults when -config
	// names no file): give its Suffix and MaxMessageBytes to an
	// activities.DeadLetterer, so the worker's dead letters go where the
	// bridge's go, in reduced form when one would not fit.
	DLQ config.DLQ
	// Log is the program's logger.
	Log *slog.Logger
}

// name is the program's name.
func (w Worker) name() string {
	if w.Name == "" {
		return "worker"
	}
	return w.Name
}

// Main runs w with the process's arguments and environment until SIGINT,
// SIGTERM or SIGHUP, then exits: status 0 after a clean stop (one during
// start-up too, or -h), 2 for a bad
// command line, 1 for any other error (logged).
func Main(w Worker) {
	ctx, stop := cli.SignalContext(nil)
	err := Run(ctx, w, os.Args[1:], os.Environ())
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(os.Stderr, "%s: %v\n", w.name(), err)
		os.Exit(2)
	default:
		os.Exit(1) // Run logged it
	}
}

// Run parses args (without the program name) and environ (KEY=VALUE,
// for the SAGABRIDGE_* variables), connects, checks the search attributes,
// registers and polls until ctx ends, then stops the worker after its
// in-flight tasks. It logs JSON to stderr; an error that is not ErrUsage is
// logged too.
func Run(ctx context.Context, w Worker, args, environ []string) error {
	if w.Register == nil {
		return fmt.Errorf("%w: Worker.Register is nil: nothing to run", ErrUsage)
	}
	s, err := parseFlags(w, args, os.Stderr)
	if err != nil {
		return err
	}
	log, err := cli.NewLogger(s.logLevel)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if err := run(ctx, w, s, environ, log); err != nil {
		if cli.StoppedWhileStarting(ctx, err) { // a clean stop, as Main promises
			log.Info("stopped before the worker was up", "err", err)
			return nil
		}
		log.Error("worker failed", "err", err)
		return err
	}
	return nil
}

// run is Run after the command line was parsed.
func run(ctx context.Context, w Worker, s settings, environ []string, log *slog.Logger) error {
	fromEnv, err := config.FromEnv(environ)
	if err != nil {
		return fmt.Errorf("configuration in the environment: %w", err)
	}
	conns, err := config.LoadConnections(s.configPath, fromEnv, s.override)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	kafka := conns.Kafka
	if !w.Kafka {
		kafka = config.Kafka{} // not used
	}
	for _, warning := range connect.Insecure(kafka, conns.Temporal) {
		log.Warn(warning)
	}
	opts, err := connect.ClientOptions(conns.Temporal, sdklog.NewStructuredLogger(log.With("component", "temporal")))
	if err != nil {
		return fmt.Errorf("temporal configuration: %w", err)
	}
	tp, shutdownTracing, err := cli.TracerProvider(ctx, w.name())
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()
	tracing, err := connect.TracingInterceptor(tp)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	opts.Interceptors = append(opts.Interceptors, tracing)
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s (namespace %s): %w", opts.HostPort, opts.Namespace, err)
	}
	defer c.Close()
	if err := RequireSearchAttributes(ctx, c, opts.Namespace, w.SearchAttributes); err != nil {
		return fmt.Errorf("namespace %s is not ready for task queue %s: %w", opts.Namespace, s.taskQueue, err)
	}
	deps := Deps{Client: c, Log: log, DLQ: conns.DLQ}
	if w.Kafka {
		producer, err := kafkaProducer(ctx, conns.Kafka, conns.DLQ.MaxMessageBytes, w.name(), false)
		if err != nil {
			return err
		}
		defer func() { _ = producer.Close() }()
		alone, err := kafkaProducer(ctx, conns.Kafka, conns.DLQ.MaxMessageBytes, w.name(), true)
		if err != nil {
			return err
		}
		defer func() { _ = alone.Close() }()
		deps.Producer, deps.Alone = producer, alone
	}
	wo := s.workerOptions(w.Options)
	// The SDK stops a worker on a fatal error (its namespace gone, a
	// client version the server refuses); Run then returns it, so the
	// process exits rather than living on polling nothing.
	fatal := make(chan error, 1)
	own := wo.OnFatalError
	wo.OnFatalError = func(err error) {
		if own != nil {
			own(err)
		}
		select {
		case fatal <- err:
		default:
		}
	}
	tw := worker.New(c, s.taskQueue, wo)
	ownDeadLetter, err := register(tw, w, deps)
	if err != nil {
		return err
	}
	if deps.Producer == nil && !ownDeadLetter {
		log.Warn("the worker has no Kafka producer (Worker.Kafka is false): a record that reaches one of its sagas after the final status cannot be dead-lettered under dispatch.on_closed_workflow: dlq, the default, and is only listed in the saga's rejected records",
			"activity", activities.DeadLetterActivity)
	}
	if err := tw.Start(); err != nil {
		return fmt.Errorf("start the worker on task queue %s: %w", s.taskQueue, err)
	}
	log.Info("worker started", "task_queue", s.taskQueue, "namespace", opts.Namespace, "temporal_address", opts.HostPort,
		"workflow_pollers", s.pollers, "workflow_poller_behavior", s.pollerBehavior,
		"sticky_timeout", s.stickyTimeout, "payload_encryption", conns.Temporal.Codec.KeyEnv != "" || conns.Temporal.Codec.KeyFile != "")
	select {
	case <-ctx.Done():
		log.Info("stopping the worker after its in-flight tasks", "task_queue", s.taskQueue, "worker_stop_timeout", wo.WorkerStopTimeout)
		tw.Stop()
		return nil
	case err := <-fatal:
		tw.Stop() // the SDK stops it as well; Stop is idempotent
		return fmt.Errorf("the worker on task queue %s stopped on a fatal error: %w", s.taskQueue, err)
	}
}

// register runs w.Register on r, then, for a worker with Kafka (d has a
// Producer), registers activities.DeadLetterer on d's producers under
// activities.DeadLetterActivity, unless Register registered an activity of
// that name itself (ownDeadLetter): the runtime of every Entity workflow
// calls it for a record that arrives after the saga's final status, and a
// worker without it leaves such records undead-lettered (retried every
// minute, then listed as rejected).
func register(r worker.Registry, w Worker, d Deps) (ownDeadLetter bool, err error) {
	seen := &registrations{Registry: r}
	if err := w.Register(seen, d); err != nil {
		return false, fmt.Errorf("register workflows and activities: %w", err)
	}
	if d.Producer != nil && !seen.deadLetter {
		dl := &activities.DeadLetterer{Producer: d.Producer, Alone: d.Alone, Suffix: d.DLQ.Suffix, MaxMessageBytes: d.DLQ.MaxMessageBytes}
		r.RegisterActivityWithOptions(dl.DeadLetter, activity.RegisterOptions{Name: activities.DeadLetterActivity})
	}
	return seen.deadLetter, nil
}

// registrations is the registry Register gets: it notes whether Register
// registered an activity named activities.DeadLetterActivity itself (an
// activities.DeadLetterer of its own, or another activity of that name),
// which register then leaves in place.
type registrations struct {
	worker.Registry
	deadLetter bool
}

// RegisterActivity registers a and notes its names.
func (r *registrations) RegisterActivity(a any) {
	r.note(a, "")
	r.Registry.RegisterActivity(a)
}

// RegisterActivityWithOptions registers a and notes its names.
func (r *registrations) RegisterActivityWithOptions(a any, o activity.RegisterOptions) {
	r.note(a, o.Name)
	r.Registry.RegisterActivityWithOptions(a, o)
}

// note records whether a, registered with name (a function's name, or a
// struct's prefix), takes the dead-letter activity's name, as the SDK
// names it: a function by name or else by its own name; a struct's
// exported methods by prefix plus method name.
func (r *registrations) note(a any, name string) {
	v := reflect.ValueOf(a)
	switch {
	case !v.IsValid():
	case v.Kind() == reflect.Func:
		if name == "" {
			name = funcName(v)
		}
		r.deadLetter = r.deadLetter || name == activities.DeadLetterActivity
	default:
		method, ok := strings.CutPrefix(activities.DeadLetterActivity, name)
		if _, has := v.Type().MethodByName(method); ok && has {
			r.deadLetter = true
		}
	}
}

// funcName is a function's name as the SDK registers it: the last element
// of its full name, without a method value's "-fm".
func funcName(v reflect.Value) string {
	full := runtime.FuncForPC(v.Pointer()).Name()
	if i := strings.LastIndex(full, "."); i >= 0 {
		full = full[i+1:]
	}
	return strings.TrimSuffix(full, "-fm")
}

// kafkaProducer is the producer of Deps: idempotent, acknowledged by all
// in-sync replicas, with the kafka section's TLS and SASL, taking records
// up to Kafka's default max.message.bytes or maxMessageBytes
// (dlq.max_message_bytes), whichever is larger; alone, one record per
// request (dlq.AloneConfig); at most maxSendsUnderWay sends under way.
func kafkaProducer(ctx context.Context, k config.Kafka, maxMessageBytes int, clientID string, alone bool) (sarama.SyncProducer, error) {
	pc, err := connect.DLQProducerConfig(k, max(maxMessageBytes, kafkaMaxMessageBytes))
	if err != nil {
		return nil, fmt.Errorf("kafka configuration: %w", err)
	}
	pc.ClientID = clientID
	if alone {
		pc = dlq.AloneConfig(pc)
	}
	p, err := connect.SyncProducer(ctx, k, pc)
	if err != nil {
		return nil, fmt.Errorf("start the Kafka producer (brokers %v): %w", k.Brokers, err)
	}
	return dlq.Bounded(p, maxSendsUnderWay), nil
}

// maxSendsUnderWay bounds the sends of a worker's producer that an
// activity gave up on and sarama still tries (dlq.Bounded): while Kafka
// does not answer, each attempt of each Publish and DeadLetter left one.
const maxSendsUnderWay = 256

// kafkaMaxMessageBytes is Kafka's default max.message.bytes, the least the
// worker's producer takes.
const kafkaMaxMessageBytes = 1048588

// DataConverter returns dc (the SDK's default if nil) for a worker's
// client: the SDK's deadlock detector, which fails a workflow task whose
// code runs a second without yielding, is paused while it decodes. An
// entity decodes every signal that has arrived in one stretch (each
// dispatch carries up to dispatch.max_call_bytes of records), and a few
// megabytes of them on a busy worker took over a second: the task failed,
// and failed again on every retry, since each replays the same signals
// (e2e TestAHotKeyOfTwentyMegabytesContinuesAsNewWithinTheLimits under
// load; [TMPRL1101] in json.Unmarshal under settleUpdates). Main's client
// has it already (its options come from the configuration with it); use it
// for a worker you build on a client of your own.
func DataConverter(dc converter.DataConverter) converter.DataConverter {
	if dc == nil {
		dc = converter.GetDefaultDataConverter()
	}
	return workflow.DataConverterWithoutDeadlockDetection(dc)
}
