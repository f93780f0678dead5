package sagaworker

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/sagabridge/sagabridge/config"
)

// loadWith parses args as w's command line and loads the connections the
// way Run does, with environ as the environment.
func loadWith(t *testing.T, w Worker, environ []string, args ...string) (settings, config.Connections) {
	t.Helper()
	s, err := parseFlags(w, args, &bytes.Buffer{})
	require.NoError(t, err)
	fromEnv, err := config.FromEnv(environ)
	require.NoError(t, err)
	conns, err := config.LoadConnections(s.configPath, fromEnv, s.override)
	require.NoError(t, err)
	return s, conns
}

func TestAWorkerWithoutKafkaNeedsNoFlags(t *testing.T) {
	s, conns := loadWith(t, Worker{TaskQueue: "signups"}, nil)
	assert.Equal(t, "signups", s.taskQueue)
	assert.Equal(t, DefaultWorkflowPollers, s.pollers)
	assert.Equal(t, DefaultStickyTimeout, s.workerOptions(worker.Options{}).StickyScheduleToStartTimeout)
	assert.Equal(t, DefaultTemporalAddress, conns.Temporal.Address)
	assert.Equal(t, DefaultNamespace, conns.Temporal.Namespace)
}

func TestFlagsOverrideTheEnvironmentWhichOverridesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte("kafka:\n  brokers: [file:9092]\ntemporal:\n  address: file:7233\n  namespace: file-ns\n"), 0o600))
	w := Worker{TaskQueue: "q", Kafka: true}

	_, conns := loadWith(t, w, nil, "-config", path)
	assert.Equal(t, []string{"file:9092"}, conns.Kafka.Brokers)
	assert.Equal(t, "file:7233", conns.Temporal.Address)
	assert.Equal(t, "file-ns", conns.Temporal.Namespace)

	env := []string{"SAGABRIDGE_TEMPORAL_ADDRESS=env:7233", "SAGABRIDGE_TEMPORAL_NAMESPACE=env-ns"}
	_, conns = loadWith(t, w, env, "-config", path)
	assert.Equal(t, "env:7233", conns.Temporal.Address)
	assert.Equal(t, "env-ns", conns.Temporal.Namespace)

	_, conns = loadWith(t, w, env, "-config", path, "-temporal-address", "flag:7233", "-kafka-brokers", "a:1, b:2")
	assert.Equal(t, "flag:7233", conns.Temporal.Address)
	assert.Equal(t, "env-ns", conns.Temporal.Namespace, "a flag not given leaves the environment's value")
	assert.Equal(t, []string{"a:1", "b:2"}, conns.Kafka.Brokers)
}

// A Kafka worker takes its brokers from the environment as the bridge
// does: neither -kafka-brokers nor -config is needed. (It refused to start:
// "-kafka-brokers or -config is required".) Given none anywhere, loading
// its configuration names the field.
func TestAKafkaWorkerTakesItsBrokersFromTheEnvironment(t *testing.T) {
	_, conns := loadWith(t, Worker{TaskQueue: "q", Kafka: true}, []string{"SAGABRIDGE_KAFKA_BROKERS=env:9092"})
	assert.Equal(t, []string{"env:9092"}, conns.Kafka.Brokers)

	s, err := parseFlags(Worker{TaskQueue: "q", Kafka: true}, nil, &bytes.Buffer{})
	require.NoError(t, err)
	_, err = config.LoadConnections(s.configPath, s.override)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kafka.brokers")
}

func TestTheEnvironmentAppliesWithoutAFile(t *testing.T) {
	_, conns := loadWith(t, Worker{TaskQueue: "q"}, []string{"SAGABRIDGE_TEMPORAL_ADDRESS=env:7233"})
	assert.Equal(t, "env:7233", conns.Temporal.Address)
}

func TestBadCommandLinesAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    Worker
		args []string
		want string
	}{
		{"no task queue", Worker{}, nil, "-task-queue is required"},
		// The bridge refuses the same padding in routes[].task_queue: the
		// worker polled a queue no record was sent to.
		{"a padded task queue", Worker{TaskQueue: "q"}, []string{"-task-queue", "orders "}, `-task-queue "orders " has spaces at its ends`},
		{"a blank task queue", Worker{TaskQueue: "q"}, []string{"-task-queue", " "}, "-task-queue is required"},
		{"no pollers", Worker{TaskQueue: "q"}, []string{"-workflow-pollers", "0"}, "-workflow-pollers must be at least 1, not 0"},
		{"an argument", Worker{TaskQueue: "q"}, []string{"extra"}, `unexpected argument "extra"`},
		{"a sticky timeout below a second", Worker{TaskQueue: "q"}, []string{"-sticky-timeout", "500ms"}, "-sticky-timeout must be at least 1s, not 500ms"},
		{"a sticky timeout that is not a duration", Worker{TaskQueue: "q"}, []string{"-sticky-timeout", "20"}, `invalid value "20" for flag -sticky-timeout`},
		{"kafka flag on a worker without Kafka", Worker{TaskQueue: "q"}, []string{"-kafka-brokers", "a:1"}, "flag provided but not defined: -kafka-brokers"},
		// An empty value (a variable that is unset in "-namespace $NS")
		// must not stand for the default in place of the file's value.
		// (The worker polled the namespace "default".)
		{"an empty namespace", Worker{TaskQueue: "q"}, []string{"-namespace", ""}, "-namespace is given but empty"},
		{"an empty address", Worker{TaskQueue: "q"}, []string{"-temporal-address="}, "-temporal-address is given but empty"},
		{"empty brokers", Worker{TaskQueue: "q", Kafka: true}, []string{"-kafka-brokers", " "}, "-kafka-brokers is given but empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.w, tc.args, &bytes.Buffer{})
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrUsage)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestTheTaskQueueFlagOverridesTheWorkers(t *testing.T) {
	s, err := parseFlags(Worker{TaskQueue: "q"}, []string{"-task-queue", "other", "-workflow-pollers", "4"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "other", s.taskQueue)
	assert.Equal(t, 4, s.pollers)
}

// -sticky-timeout defaults to the timeout a Worker's options set, else
// DefaultStickyTimeout, and replaces it when given, even with the default.
func TestTheStickyTimeoutFlagSetsTheWorkersOption(t *testing.T) {
	own := Worker{TaskQueue: "q", Options: worker.Options{StickyScheduleToStartTimeout: 3 * time.Second, MaxConcurrentActivityExecutionSize: 7}}
	for _, tc := range []struct {
		name string
		w    Worker
		args []string
		want time.Duration
	}{
		{"the Worker's own", own, nil, 3 * time.Second},
		{"the default when the Worker sets none", Worker{TaskQueue: "q"}, nil, DefaultStickyTimeout},
		{"given", own, []string{"-sticky-timeout", "30s"}, 30 * time.Second},
		{"given as the default's value", own, []string{"-sticky-timeout", DefaultStickyTimeout.String()}, DefaultStickyTimeout},
		{"the least accepted", Worker{TaskQueue: "q"}, []string{"-sticky-timeout", "1s"}, time.Second},
		{"a Worker's own below a second is the SDK's to judge", Worker{TaskQueue: "q", Options: worker.Options{StickyScheduleToStartTimeout: 500 * time.Millisecond}}, nil, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseFlags(tc.w, tc.args, &bytes.Buffer{})
			require.NoError(t, err)
			opts := s.workerOptions(tc.w.Options)
			assert.Equal(t, tc.want, opts.StickyScheduleToStartTimeout)
			assert.Equal(t, tc.w.Options.MaxConcurrentActivityExecutionSize, opts.MaxConcurrentActivityExecutionSize, "the Worker's other options are kept")
		})
	}

	var out bytes.Buffer
	_, err := parseFlags(own, []string{"-h"}, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, out.String(), "(default 3s)", "the usage shows the Worker's timeout as the default")
}

func TestUsageListsTheFlags(t *testing.T) {
	var out bytes.Buffer
	_, err := parseFlags(Worker{Name: "signup-worker", TaskQueue: "signups", Kafka: true}, []string{"-h"}, &out)
	assert.True(t, errors.Is(err, flag.ErrHelp))
	for _, f := range []string{"Usage of signup-worker", "-config", "-temporal-address", "-namespace", "-task-queue", `(default "signups")`, "-workflow-pollers", "-sticky-timeout", "-log-level", "-kafka-brokers"} {
		assert.Contains(t, out.String(), f)
	}
}

func TestRunRefusesAWorkerThatRegistersNothing(t *testing.T) {
	err := Run(context.Background(), Worker{TaskQueue: "q"}, nil, nil)
	assert.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), "Worker.Register is nil")
}

func TestRunReportsABadConfigurationBeforeConnecting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	register := func(worker.Registry, Deps) error { return nil }
	err := Run(ctx, Worker{TaskQueue: "q", Register: register}, []string{"-log-level", "error"}, []string{"SAGABRIDGE_TEMPORAL_ADRESS=x:1"})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), "SAGABRIDGE_TEMPORAL_ADRESS")
}

// The Go SDK panics at worker.New with one fixed workflow-task poller (it
// would poll only the sticky queue); the flag said at least 1.
func TestOneFixedPollerIsAUsageError(t *testing.T) {
	_, err := parseFlags(Worker{TaskQueue: "q"}, []string{"-workflow-poller-behavior", "fixed", "-workflow-pollers", "1"}, &bytes.Buffer{})
	require.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), "-workflow-pollers must be at least 2 with -workflow-poller-behavior fixed")

	_, err = parseFlags(Worker{TaskQueue: "q"}, []string{"-workflow-poller-behavior", "elastic"}, &bytes.Buffer{})
	require.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), `-workflow-poller-behavior must be autoscale or fixed, not "elastic"`)
}

// Every accepted poller setting builds a worker: the SDK panics on
// options it rejects (both pollers fields set, one fixed poller).
func TestEveryAcceptedPollerSettingBuildsAWorker(t *testing.T) {
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	defer c.Close()
	for _, args := range [][]string{
		nil,
		{"-workflow-pollers", "1"},
		{"-workflow-poller-behavior", "fixed"},
		{"-workflow-poller-behavior", "fixed", "-workflow-pollers", "2"},
	} {
		s, err := parseFlags(Worker{TaskQueue: "q"}, args, &bytes.Buffer{})
		require.NoError(t, err, args)
		// Options a Worker may bring, which the flags replace.
		for _, given := range []worker.Options{{}, {MaxConcurrentWorkflowTaskPollers: 4}, {WorkflowTaskPollerBehavior: worker.NewPollerBehaviorSimpleMaximum(worker.PollerBehaviorSimpleMaximumOptions{MaximumNumberOfPollers: 3})}} {
			opts := s.workerOptions(given)
			assert.NotPanics(t, func() { worker.New(c, "q", opts) }, "%v with %+v", args, given)
			if s.pollerBehavior == "fixed" {
				assert.Equal(t, s.pollers, opts.MaxConcurrentWorkflowTaskPollers)
				assert.Nil(t, opts.WorkflowTaskPollerBehavior)
			} else {
				assert.Zero(t, opts.MaxConcurrentWorkflowTaskPollers)
				assert.NotNil(t, opts.WorkflowTaskPollerBehavior)
			}
		}
	}
}

// A worker stopping (SIGTERM) gives its in-flight activities
// DefaultWorkerStopTimeout to finish unless the Worker sets its own: with
// the SDK's default of none they were cancelled at once, and the Kafka
// producer closed under activities still publishing.
func TestAStoppingWorkerGivesItsActivitiesTimeToFinish(t *testing.T) {
	s, err := parseFlags(Worker{TaskQueue: "q"}, nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, DefaultWorkerStopTimeout, s.workerOptions(worker.Options{}).WorkerStopTimeout)
	assert.Equal(t, time.Minute, s.workerOptions(worker.Options{WorkerStopTimeout: time.Minute}).WorkerStopTimeout, "the Worker's own")
}

// A worker that accepts any certificate says so when it starts, as the
// bridge does: the README promises a warning at start for
// insecure_skip_verify, and the worker, which reads the same sections,
// was silent.
func TestAWorkerThatSkipsCertificateChecksWarns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`kafka: {brokers: ["127.0.0.1:1"], tls: {enabled: true, insecure_skip_verify: true}}
temporal: {address: "127.0.0.1:1", tls: {enabled: true, insecure_skip_verify: true}}
`), 0o600))
	w := Worker{TaskQueue: "q", Kafka: true, Register: func(worker.Registry, Deps) error { return nil }}
	s, err := parseFlags(w, []string{"-config", path}, &bytes.Buffer{})
	require.NoError(t, err)
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing need connect
	_ = run(ctx, w, s, nil, slog.New(slog.NewTextHandler(&out, nil)))
	assert.Contains(t, out.String(), "kafka.tls.insecure_skip_verify is on")
	assert.Contains(t, out.String(), "temporal.tls.insecure_skip_verify is on")
}

// A worker without Kafka (Worker.Kafka false) run with the bridge's
// configuration file does not need the bridge's Kafka password or
// certificates on its host: it never connects to Kafka. It refused to
// start: "kafka.tls.ca_file: stat /etc/kafka/ca.pem: no such file or
// directory", "kafka.sasl.password_env: the environment variable
// KAFKA_PASSWORD is not set".
func TestAWorkerWithoutKafkaNeedsNoKafkaSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`kafka:
  brokers: [kafka-0.internal:9093]
  tls: {enabled: true, ca_file: /etc/kafka/ca.pem}
  sasl: {mechanism: SCRAM-SHA-512, username: bridge, password_env: KAFKA_PASSWORD}
  connect_timeout: 30s
temporal:
  address: temporal.internal:7233
  namespace: orders
`), 0o600))
	s, err := parseFlags(Worker{TaskQueue: "signups"}, []string{"-config", path}, &bytes.Buffer{})
	require.NoError(t, err)
	fromEnv, err := config.FromEnv(nil)
	require.NoError(t, err)
	conns, err := config.LoadConnections(s.configPath, fromEnv, s.override)
	require.NoError(t, err)
	assert.Equal(t, "orders", conns.Temporal.Namespace)

	s, err = parseFlags(Worker{TaskQueue: "signups", Kafka: true}, []string{"-config", path}, &bytes.Buffer{})
	require.NoError(t, err)
	_, err = config.LoadConnections(s.configPath, fromEnv, s.override)
	assert.ErrorContains(t, err, "kafka.tls.ca_file", "a worker with Kafka still checks them")
}

// A worker stopped (SIGTERM) while it connects, Temporal out of reach,
// stops cleanly: a rollout during an outage recorded failed pods ("worker
// failed ... context canceled", exit 1).
func TestAWorkerStoppedWhileItConnectsStopsCleanly(t *testing.T) {
	ln, _ := silentListener(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	w := Worker{TaskQueue: "q", Register: func(worker.Registry, Deps) error { return nil }}
	err := Run(ctx, w, []string{"-temporal-address", ln.Addr().String()}, nil)
	assert.NoError(t, err)

	// A real failure stays one, though the stop came meanwhile.
	err = Run(ctx, w, []string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}, nil)
	assert.ErrorContains(t, err, "missing.yaml")
}

// silentListener accepts connections and never answers; dialled is
// closed at its first connection.
func silentListener(t *testing.T) (ln net.Listener, dialled <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	first := make(chan struct{})
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if conns = append(conns, c); len(conns) == 1 {
				close(first)
			}
		}
	}()
	return ln, first
}

// frontend answers the SDK's connection check as a Temporal server does.
type frontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
}

func (frontend) GetSystemInfo(context.Context, *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	return &workflowservice.GetSystemInfoResponse{}, nil
}

// A stop that came while the worker's Kafka producer connected (Temporal
// up, brokers that accept and never answer) waited out
// kafka.connect_timeout and then exited 1, "worker failed": the start of
// the producer did not see the stop.
func TestAWorkerStoppedWhileKafkaConnectsStopsCleanlyAtOnce(t *testing.T) {
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("temporal.api.workflowservice.v1.WorkflowService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	workflowservice.RegisterWorkflowServiceServer(srv, frontend{})
	go func() { _ = srv.Serve(tln) }()
	defer srv.Stop()
	kln, dialled := silentListener(t)
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte("kafka: {brokers: [\""+kln.Addr().String()+"\"], connect_timeout: 4s}\ntemporal: {address: \""+tln.Addr().String()+"\"}\n"), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the stop comes once the worker dials Kafka
		select {
		case <-dialled:
			cancel()
		case <-ctx.Done():
		}
	}()
	w := Worker{TaskQueue: "q", Kafka: true, Register: func(worker.Registry, Deps) error { return nil }}
	start := time.Now()
	err = Run(ctx, w, []string{"-config", path, "-log-level", "error"}, nil)
	assert.NoError(t, err, "a stop while connecting is a clean stop (exit 0)")
	assert.Less(t, time.Since(start), 3*time.Second, "the stop waited for kafka.connect_timeout (4s)")
}
