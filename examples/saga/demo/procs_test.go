package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/internal/devstack"
)

// sh starts a shell process running script and waits until it has run
// its first command (so that a trap it sets is in place).
func sh(t *testing.T, script string) *devstack.Process {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	p, err := devstack.StartProcess(io.Discard, "/bin/sh", "-c", strings.Replace(script, "; ", "; touch "+ready+"; ", 1))
	require.NoError(t, err)
	t.Cleanup(p.Kill)
	require.Eventually(t, func() bool { _, err := os.Stat(ready); return err == nil }, 10*time.Second, time.Millisecond)
	return p
}

// The demo's verdict counts its binaries: a bridge that exits non-zero when
// told to stop fails the demo (its exit status was thrown away, and the
// demo said every saga reached its state), and one that dies while the
// sagas run ends the wait at once, naming it and its log (it waited out
// the 3-minute timeout and said only that).
func TestTheDemoFailsWhenOneOfItsBinariesFails(t *testing.T) {
	procs := binaries{logDir: "/logs"}
	procs.add("worker", sh(t, `trap 'exit 0' TERM; while :; do sleep 0.05; done`))
	procs.add("bridge", sh(t, `trap 'exit 3' TERM; while :; do sleep 0.05; done`))
	err := procs.stop(5 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bridge exited with exit status 3 when stopped (see /logs/bridge.log)")
	assert.NotContains(t, err.Error(), "worker")

	procs = binaries{logDir: "/logs"}
	procs.add("worker", sh(t, `trap 'exit 0' TERM; while :; do sleep 0.05; done`))
	procs.add("bridge", sh(t, `sleep 0.2; exit 2`))
	ctx, cancel := procs.watch(context.Background())
	defer cancel()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end when the bridge died")
	}
	assert.EqualError(t, context.Cause(ctx), "bridge exited while the sagas ran: exit status 2 (see /logs/bridge.log)")
	require.Error(t, procs.stop(5*time.Second))
}
