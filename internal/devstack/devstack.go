// Package devstack runs the embedded development stack: an in-process
// Kafka-protocol broker (kfake) and the Temporal CLI's dev server as a child
// process. The dev command, the demo and the end-to-end tests all start the
// stack through this package, on free ports and their own data, so runs
// never collide.
//
// It is development and test tooling: no library package may import it,
// and it must not import the bridge engine.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// Kafka is a running kfake cluster with one broker.
type Kafka struct {
	Cluster *kfake.Cluster
	// Brokers are the bootstrap addresses.
	Brokers []string

	reaper     *reaper // nil with KafkaOptions.KeepDeadMembers
	stopReaper context.CancelFunc
	closeOnce  sync.Once
}

// KafkaOptions configures the embedded broker.
type KafkaOptions struct {
	// Port is the broker's port; 0 picks a free one.
	Port int
	// Topics are created with Partitions partitions each.
	Topics     []string
	Partitions int32
	// NoAutoCreateTopics makes the broker refuse to create topics on
	// their own, as production brokers are usually configured.
	NoAutoCreateTopics bool
	// KeepDeadMembers turns off the workaround for kfake's bug that keeps
	// a dead group member (reaper.go, docs/KFAKE.md); only to reproduce it.
	KeepDeadMembers bool
	// Logger receives what the workaround does. Optional, default discard.
	Logger *slog.Logger
}

// StartKafka starts one kfake broker on a free loopback port (or port, when
// not zero) with the given topics seeded.
func StartKafka(port int, partitions int32, topics ...string) (*Kafka, error) {
	return StartKafkaWith(KafkaOptions{Port: port, Topics: topics, Partitions: partitions})
}

// StartKafkaWith starts one kfake broker as o says, with the dead-member
// workaround on unless o.KeepDeadMembers.
func StartKafkaWith(o KafkaOptions) (*Kafka, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(o.Port)}
	if !o.NoAutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if len(o.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(o.Partitions, o.Topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	k := &Kafka{Cluster: c, Brokers: c.ListenAddrs(), stopReaper: func() {}}
	if !o.KeepDeadMembers {
		if o.Logger == nil {
			o.Logger = discardLogger()
		}
		ctx, stop := context.WithCancel(context.Background())
		if k.reaper, err = startReaper(ctx, c, o.Logger); err != nil {
			stop()
			c.Close()
			return nil, fmt.Errorf("start the kfake dead-member workaround: %w", err)
		}
		k.stopReaper = stop
	}
	return k, nil
}

// Heartbeats counts the heartbeats the broker received for group; sarama
// sends one every 3 s per member, so two more mean at least 3 s passed
// with the group's members alive. -1 with KafkaOptions.KeepDeadMembers.
func (k *Kafka) Heartbeats(group string) int64 {
	if k.reaper == nil {
		return -1
	}
	k.reaper.mu.Lock()
	defer k.reaper.mu.Unlock()
	return k.reaper.heartbeats[group]
}

// Reaped counts the dead group members the workaround removed.
func (k *Kafka) Reaped() int64 {
	if k.reaper == nil {
		return 0
	}
	return k.reaper.reaped.Load()
}

// Close stops the workaround, then the broker. Safe to call twice.
func (k *Kafka) Close() {
	k.closeOnce.Do(func() {
		k.stopReaper()
		k.Cluster.Close()
	})
}

// BoundedLongPolls is the dynamic config value test stacks pass in
// TemporalOptions.DynamicConfig. Under a burst of new workflows the dev
// server sometimes leaves first workflow tasks in its backlog while every
// poller of the task queue waits, until the long polls expire (60 s by
// default): the benchmark stalled for a minute in one run of three or four,
// and an e2e test once waited 60 s with 25 of 50 tasks queued and 8 idle
// pollers while the bridge had delivered every record. Five-second long
// polls bound such a stall to five seconds; one task-queue partition
// instead of four did not help (docs/BENCHMARKS.md).
const BoundedLongPolls = `matching.longPollExpirationInterval="5s"`

// TemporalOptions configures the Temporal dev server.
type TemporalOptions struct {
	// Bin is the temporal CLI. Optional, default FindTemporal().
	Bin string
	// Port is the frontend gRPC port. Optional, default a free port.
	Port int
	// UIPort serves the Web UI; 0 runs headless.
	UIPort int
	// DBFile persists state across restarts; empty keeps it in memory.
	DBFile string
	// SearchAttributes registers KEY=TYPE search attributes.
	SearchAttributes []string
	// DynamicConfig sets KEY=VALUE dynamic config values (the value is JSON).
	DynamicConfig []string
	// Output receives the server's log; nil discards it.
	Output io.Writer
	// StartTimeout bounds the wait for the server to answer. Optional, default 90s.
	StartTimeout time.Duration
}

// Temporal is a running Temporal dev server.
type Temporal struct {
	// Address is the frontend's host:port.
	Address string
	// UIAddress is the Web UI's URL, empty when headless.
	UIAddress string
	Bin       string

	proc *Process
}

// errExitedEarly is a dev server that exited before it served.
var errExitedEarly = errors.New("temporal dev server exited before it was ready")

// startAttempts is how many times StartTemporal starts a server that
// exits before it serves, each time on new ports.
const startAttempts = 3

// StartTemporal starts the dev server and waits until it serves the
// default namespace. The server dies with this process (Pdeathsig), so a
// crashed test leaves nothing running.
//
// The ports it picks (FreePorts) are free when picked, not when the server
// binds them: another process may take one in between (an outgoing
// connection's ephemeral port, another server starting), and the server
// then exits ("address already in use"). So a server that exits before it
// serves is started again on new ports, startAttempts times in all (on the
// same o.Port if the caller fixed it).
func StartTemporal(ctx context.Context, o TemporalOptions) (*Temporal, error) {
	if o.Bin == "" {
		bin, err := FindTemporal()
		if err != nil {
			return nil, err
		}
		o.Bin = bin
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 90 * time.Second
	}
	var err error
	for range startAttempts {
		var t *Temporal
		if t, err = startTemporal(ctx, o); err == nil || !errors.Is(err, errExitedEarly) {
			return t, err
		}
	}
	return nil, fmt.Errorf("%w (started %d times, on new ports each time)", err, startAttempts)
}

// startTemporal starts the dev server once, as StartTemporal describes.
func startTemporal(ctx context.Context, o TemporalOptions) (*Temporal, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("temporal dev server: start interrupted: %w", err)
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	if o.Port == 0 {
		o.Port = ports[0]
	}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(o.Port),
		"--http-port", strconv.Itoa(ports[1]), "--metrics-port", strconv.Itoa(ports[2]), "--log-level", "warn"}
	if o.UIPort == 0 {
		args = append(args, "--headless")
	} else {
		args = append(args, "--ui-port", strconv.Itoa(o.UIPort))
	}
	if o.DBFile != "" {
		args = append(args, "--db-filename", o.DBFile)
	}
	for _, sa := range o.SearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	for _, dc := range o.DynamicConfig {
		args = append(args, "--dynamic-config-value", dc)
	}
	// A namespace only this server has: the readiness check asks for it,
	// so another server answering on the port (which made this one exit,
	// "address already in use") is not taken for this one.
	own := fmt.Sprintf("sagabridge-ready-%d-%d", os.Getpid(), ports[2])
	args = append(args, "--namespace", own)
	proc, err := StartProcess(o.Output, o.Bin, args...)
	if err != nil {
		return nil, err
	}
	t := &Temporal{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port)), Bin: o.Bin, proc: proc}
	if o.UIPort != 0 {
		t.UIAddress = fmt.Sprintf("http://127.0.0.1:%d", o.UIPort)
	}
	if err := t.waitReady(ctx, o.StartTimeout, own); err != nil {
		_ = t.Close()
		return nil, err
	}
	return t, nil
}

// waitReady polls until the server answers for the default namespace and
// for own, the namespace only it has.
func (t *Temporal) waitReady(parent context.Context, timeout time.Duration, own string) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var last error
	for {
		select {
		case <-t.proc.Done():
			return fmt.Errorf("%w: %v", errExitedEarly, t.proc.Err())
		default:
		}
		c, err := client.Dial(client.Options{HostPort: t.Address, Logger: sdklog.NewStructuredLogger(discardLogger())})
		if err == nil {
			_, err = c.WorkflowService().DescribeNamespace(ctx, describeDefault())
			if err == nil {
				_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: own})
			}
			c.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return fmt.Errorf("temporal dev server at %s: start interrupted: %w", t.Address, err)
			}
			return fmt.Errorf("temporal dev server at %s not ready after %s: %v", t.Address, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close stops the server: SIGTERM, then SIGKILL after 15 s. Safe to call
// twice, and on nil (a start that failed).
func (t *Temporal) Close() error {
	if t == nil {
		return nil
	}
	_ = t.proc.Stop(15 * time.Second) // the exit status of a dev server told to stop says nothing useful
	return nil
}

// Pid is the server's process ID.
func (t *Temporal) Pid() int { return t.proc.Pid() }

// Kill stops the server at once with SIGKILL, as a crash would.
func (t *Temporal) Kill() { t.proc.Kill() }

// FindTemporal returns the temporal CLI: $SAGABRIDGE_TEMPORAL if set, else
// bin/temporal in the module root above the working directory. The error
// says how to install it.
func FindTemporal() (string, error) {
	if p := os.Getenv("SAGABRIDGE_TEMPORAL"); p != "" {
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("temporal CLI not found at %s: run `make tools` first", p)
	}
	return p, nil
}

// ModuleRoot returns the nearest directory at or above the working
// directory that holds go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePorts returns n distinct loopback ports that were free a moment ago,
// for a process to bind later. They are drawn at random from below the
// kernel's ephemeral range (ip_local_port_range), where outgoing
// connections never take a port: a port from that range, once released,
// can be any connection's source port by the time it is bound again (a
// dev server restarted on its port after a minute down failed "address
// already in use"). Where the range is unknown, the kernel picks them.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	lo, _, ok := ephemeralRange()
	for tries := 0; ok && lo-minPort > 10*n && len(ports) < n && tries < 100*n; tries++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", minPort+rand.IntN(lo-minPort)))
		if err != nil {
			continue // taken
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// minPort is the lowest port FreePorts draws: above the well-known and
// most registered services' ports.
const minPort = 10000

// ephemeralRange reads the kernel's range of source ports for outgoing
// connections (Linux); ok is false where it cannot be read.
func ephemeralRange() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 0 || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}
