package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A SIGTERM (or Ctrl-C) that comes while the bridge connects, to a
// broker that accepts connections and never answers with a long
// kafka.connect_timeout, stops it at once with status 0: it is a stop,
// not a failure. (The start did not see the stop: the process ran until
// the connect timeout passed, then exited 1 with "bridge failed".) A
// second signal still ends a stop that is stuck (internal/cli
// TestASecondSignalEndsTheProcessAtOnce).
func TestASignalWhileTheBridgeConnectsStopsItAtOnce(t *testing.T) {
	path, dialled := silentBrokerConfig(t)

	cmd, stderr, _, exited := startMain(t, "", nil, "-config", path)

	select { // it dials the broker after it has set up its signal handling
	case <-dialled:
	case <-time.After(30 * time.Second):
		t.Fatalf("the bridge never dialled the broker; stderr:\n%s", stderr.String())
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		exited <- err
		assert.NoError(t, err, "a stop during the start is a clean stop; stderr:\n%s", stderr.String())
		assert.Contains(t, stderr.String(), "stopped before the bridge was up")
	case <-time.After(10 * time.Second): // against kafka.connect_timeout: 2m
		t.Fatalf("the bridge had not exited 10 s after SIGTERM; stderr:\n%s", stderr.String())
	}
}

// startMain runs main in a child process with args and env beside the
// test's, and returns the process, its stderr, a channel closed once
// stderr holds text, and one that gets the process's end. The process is
// killed, and waited for, when the test ends.
func startMain(t *testing.T, text string, env []string, args ...string) (*exec.Cmd, *lockedBuffer, <-chan struct{}, chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), env...)
	stderr := &lockedBuffer{}
	seen := make(chan struct{})
	stderr.notify(text, seen)
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return cmd, stderr, seen, exited
}

// lockedBuffer is a bytes.Buffer safe for a process's writes and the
// test's reads; it closes a channel when a text first appears in it.
type lockedBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	text string
	seen chan struct{}
}

func (b *lockedBuffer) notify(text string, seen chan struct{}) { b.text, b.seen = text, seen }

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if b.seen != nil && strings.Contains(b.buf.String(), b.text) {
		close(b.seen)
		b.seen = nil
	}
	return n, err
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// SIGHUP stops the bridge as SIGTERM does, through its stop path (there is
// no live reload). (Go's default ended the process at once: no drain, no
// final commit, no log line.)
func TestSIGHUPStopsTheBridgeThroughItsStopPath(t *testing.T) {
	if signal.Ignored(syscall.SIGHUP) {
		// The child would inherit it, and keep ignoring it by design
		// (internal/cli TestAProgramStartedUnderNohupIgnoresSIGHUP).
		t.Skip("the tests run with SIGHUP ignored (nohup): the bridge they start ignores it too")
	}
	path, dialled := silentBrokerConfig(t)

	cmd, stderr, stopping, exited := startMain(t, `"signal":"hangup"`, nil, "-config", path)
	select {
	case <-dialled:
	case <-time.After(30 * time.Second):
		t.Fatalf("the bridge never dialled the broker; stderr:\n%s", stderr.String())
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	select {
	case <-stopping:
	case err := <-exited:
		exited <- err
		t.Fatalf("one SIGHUP ended the bridge at once (%v), without its stop path; stderr:\n%s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("the bridge did not say it was stopping; stderr:\n%s", stderr.String())
	}
}

// silentBrokerConfig writes a bridge configuration whose broker accepts
// connections and never answers (with a long kafka.connect_timeout), and
// returns its path and a channel that gets a value once the broker is
// dialled. The broker stops with the test.
func silentBrokerConfig(t *testing.T) (path string, dialled <-chan struct{}) {
	t.Helper()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = silent.Close() })
	d := make(chan struct{}, 1)
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // accepted, never answered
			select {
			case d <- struct{}{}:
			default:
			}
		}
	}()
	path = filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`kafka: {brokers: [%q], group: g, connect_timeout: 2m}
temporal: {address: "127.0.0.1:1"}
routes: [{topic: orders, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]
`, silent.Addr().String())), 0o600))
	return path, d
}
