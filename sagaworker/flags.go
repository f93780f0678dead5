package sagaworker

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/cli"
)

// ErrUsage marks an error in the command line; Main exits with status 2
// for it (1 for every other error).
var ErrUsage = errors.New("usage")

// Flag defaults, as cmd/worker has them.
const (
	// DefaultTemporalAddress is the default of -temporal-address.
	DefaultTemporalAddress = "127.0.0.1:7233"
	// DefaultNamespace is the default of -namespace.
	DefaultNamespace = "default"
	// DefaultWorkflowPollers is the default of -workflow-pollers: the SDK's
	// default of 2 measured half as fast on fan-out.
	DefaultWorkflowPollers = 16
	// DefaultPollerBehavior is the default of -workflow-poller-behavior:
	// with 16 fixed pollers the dev server left workflow tasks waiting 30 to
	// 60 s in 7 of 14 benchmark runs at 500 events/s, with autoscaled ones in
	// none of 14 (docs/BENCHMARKS.md).
	DefaultPollerBehavior = PollerAutoscale
	// DefaultStickyTimeout is the default of -sticky-timeout, four times
	// the SDK's 5 s. Under load near the server's capacity a task that
	// waited 5 s on the sticky queue went to the normal queue and the same
	// worker replayed the workflow's whole history for it; at 1,000 events/s
	// on warm entities that made the bridge's P99 12.6-16.6 s in three runs
	// against 4.1-5.4 s with 20 s, at which none of the slowest workflows'
	// tasks timed out (docs/BENCHMARKS.md).
	// The cost is paid when a worker dies without a graceful stop: each of
	// its workflows whose next task the server scheduled within about 10 s
	// of the worker's last poll waits the full timeout once, 20 s instead of
	// 5 s (measured on the dev server). A graceful stop hands them on at once.
	DefaultStickyTimeout = 20 * time.Second
)

// The values of -workflow-poller-behavior.
const (
	// PollerAutoscale lets the SDK scale workflow-task pollers between 1
	// and -workflow-pollers, for the normal and the sticky queue apart.
	PollerAutoscale = "autoscale"
	// PollerFixed keeps -workflow-pollers pollers, shared by the normal and
	// the sticky queue (the SDK polls the sticky one first while it reports
	// a backlog).
	PollerFixed = "fixed"
)

// unusedBroker stands in for the kafka section of a worker without Kafka:
// config.LoadConnections requires brokers, and such a worker never
// connects to them.
const unusedBroker = "unused.invalid:9092"

// settings are a worker's parsed command line.
type settings struct {
	configPath string
	taskQueue  string
	pollers    int
	// pollerBehavior is PollerAutoscale or PollerFixed.
	pollerBehavior string
	// stickyTimeout is the worker's StickyScheduleToStartTimeout.
	stickyTimeout time.Duration
	logLevel      string
	// override applies the flags given after the file and the environment
	// (the flags' defaults are the configuration's).
	override config.Override
}

// parseFlags parses args as w's command line. Usage text and errors go to
// out; an error wraps ErrUsage.
func parseFlags(w Worker, args []string, out io.Writer) (settings, error) {
	fs := flag.NewFlagSet(w.name(), flag.ContinueOnError)
	fs.SetOutput(out)
	var s settings
	fs.StringVar(&s.configPath, "config", "", "the bridge's YAML config; its kafka, temporal and dlq sections are used")
	addr := fs.String("temporal-address", DefaultTemporalAddress, "Temporal frontend host:port")
	namespace := fs.String("namespace", DefaultNamespace, "Temporal namespace")
	fs.StringVar(&s.taskQueue, "task-queue", w.TaskQueue, "task queue to poll (the bridge route's task_queue)")
	fs.IntVar(&s.pollers, "workflow-pollers", DefaultWorkflowPollers, "workflow-task pollers: the most for each of the normal and the sticky queue with autoscale, in all with fixed; the SDK's default 2 halves fan-out throughput")
	fs.StringVar(&s.pollerBehavior, "workflow-poller-behavior", DefaultPollerBehavior, "autoscale (the SDK scales the pollers to the tasks) or fixed (-workflow-pollers all the time)")
	fs.DurationVar(&s.stickyTimeout, "sticky-timeout", cmp.Or(w.Options.StickyScheduleToStartTimeout, DefaultStickyTimeout), "how long a workflow task waits on this worker's sticky queue before the server moves it to the normal queue (StickyScheduleToStartTimeout)")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	var brokers *string
	if w.Kafka {
		brokers = fs.String("kafka-brokers", "", "comma-separated Kafka brokers (or SAGABRIDGE_KAFKA_BROKERS, or -config)")
	}
	if err := fs.Parse(args); err != nil {
		return settings{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	set := map[string]bool{}
	var empty string
	fs.Visit(func(f *flag.Flag) {
		set[f.Name] = true
		if (f.Name == "temporal-address" || f.Name == "namespace" || f.Name == "kafka-brokers") && strings.TrimSpace(f.Value.String()) == "" {
			empty = f.Name
		}
	})
	switch {
	case empty != "":
		// Taken as given, it would put the default in place of the
		// file's or the environment's value, as the environment's own
		// check says of an empty variable.
		return settings{}, fmt.Errorf("%w: -%s is given but empty; leave it out to keep the configuration's value", ErrUsage, empty)
	case fs.NArg() > 0:
		return settings{}, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	case s.pollerBehavior != PollerAutoscale && s.pollerBehavior != PollerFixed:
		return settings{}, fmt.Errorf("%w: -workflow-poller-behavior must be %s or %s, not %q", ErrUsage, PollerAutoscale, PollerFixed, s.pollerBehavior)
	case s.pollers < 1:
		return settings{}, fmt.Errorf("%w: -workflow-pollers must be at least 1, not %d", ErrUsage, s.pollers)
	case s.pollerBehavior == PollerFixed && s.pollers < 2:
		// The SDK panics: one fixed poller would poll only the sticky queue.
		return settings{}, fmt.Errorf("%w: -workflow-pollers must be at least 2 with -workflow-poller-behavior %s (one for the normal and one for the sticky queue), not %d",
			ErrUsage, PollerFixed, s.pollers)
	case set["sticky-timeout"] && s.stickyTimeout < time.Second:
		// The SDK documents the timeout's resolution as seconds. (A
		// Worker's own Options value is the SDK's to judge.)
		return settings{}, fmt.Errorf("%w: -sticky-timeout must be at least 1s, not %s", ErrUsage, s.stickyTimeout)
	case strings.TrimSpace(s.taskQueue) == "":
		return settings{}, fmt.Errorf("%w: -task-queue is required", ErrUsage)
	case strings.TrimSpace(s.taskQueue) != s.taskQueue:
		// The bridge refuses it in routes[].task_queue: matched exactly,
		// the worker would poll a queue no record is sent to.
		return settings{}, fmt.Errorf("%w: -task-queue %q has spaces at its ends", ErrUsage, s.taskQueue)
	}
	s.override = func(c *config.Config) {
		if brokers != nil && set["kafka-brokers"] {
			c.Kafka.Brokers = cli.SplitList(*brokers)
		}
		if !w.Kafka {
			// Never connected to: the bridge's Kafka password, key files
			// and certificates need not be on the worker's host. (The rest
			// of the section stays, as the file set it, and is checked.)
			c.Kafka.TLS, c.Kafka.SASL = config.TLS{}, config.SASL{}
			if len(c.Kafka.Brokers) == 0 {
				c.Kafka.Brokers = []string{unusedBroker}
			}
		}
		if set["temporal-address"] {
			c.Temporal.Address = *addr
		}
		if set["namespace"] {
			c.Temporal.Namespace = *namespace
		}
	}
	return s, nil
}

// workerOptions returns given with the workflow-task pollers the flags
// set, replacing any the Worker's options set (the SDK rejects both), and
// the sticky timeout of -sticky-timeout (whose default is the Worker's,
// else DefaultStickyTimeout).
func (s settings) workerOptions(given worker.Options) worker.Options {
	wo := given
	wo.StickyScheduleToStartTimeout = s.stickyTimeout
	if wo.WorkerStopTimeout == 0 {
		wo.WorkerStopTimeout = DefaultWorkerStopTimeout
	}
	wo.MaxConcurrentWorkflowTaskPollers, wo.WorkflowTaskPollerBehavior = 0, nil
	if s.pollerBehavior == PollerFixed {
		wo.MaxConcurrentWorkflowTaskPollers = s.pollers
		return wo
	}
	wo.WorkflowTaskPollerBehavior = AutoscaledPollers(s.pollers)
	return wo
}

// DefaultWorkerStopTimeout is how long a stopping worker lets its
// in-flight activities finish before cancelling them, unless
// Worker.Options.WorkerStopTimeout says otherwise (the SDK's own default
// is none). It fits in Kubernetes' default 30 s grace period.
const DefaultWorkerStopTimeout = 10 * time.Second

// AutoscaledPollers is the workflow-task poller behaviour of
// -workflow-poller-behavior autoscale: the SDK scales the pollers of the
// normal and of the sticky queue apart, each up to most, starting at 5 (the
// SDK's default) or most if that is fewer.
func AutoscaledPollers(most int) worker.PollerBehavior {
	return worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{
		InitialNumberOfPollers: min(initialPollers, most), MaximumNumberOfPollers: most,
	})
}

// initialPollers is how many workflow-task pollers an autoscaling worker
// starts with (the SDK's default).
const initialPollers = 5
