package devstack

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A dev server that exits before it serves, as one does when another
// process took one of its ports between FreePorts and its bind ("address
// already in use"), is started again on new ports. (The benchmark lost a
// 2 h 40 min run to one such start: the server's HTTP port was taken.)
// The first start here is a stand-in for the temporal CLI that fails as
// that server did; the second runs the real one.
func TestADevServerThatExitsBeforeItServesIsStartedAgain(t *testing.T) {
	real, err := FindTemporal()
	require.NoError(t, err)
	dir := t.TempDir()
	mark := filepath.Join(dir, "failed-once")
	bin := filepath.Join(dir, "temporal")
	script := fmt.Sprintf(`#!/bin/sh
if [ ! -e %[1]q ]; then
	touch %[1]q
	echo "failed listening for HTTP API: bind: address already in use" >&2
	exit 1
fi
exec %[2]q "$@"
`, mark, real)
	require.NoError(t, os.WriteFile(bin, []byte(script), 0o755))

	tc, err := StartTemporal(context.Background(), TemporalOptions{Bin: bin})
	require.NoError(t, err, "the second start was not tried")
	defer tc.Close()
	require.FileExists(t, mark, "the first start did not fail")
}

// The server that answers on the port must be the one just started: when
// another dev server held the port (two test runs, or a port taken
// between FreePorts and the bind), the new one exited with "address
// already in use" while the other answered the readiness check, and
// StartTemporal reported success for a server that was gone; the tests
// then ran against one without their search attributes or dynamic config.
func TestADevServerIsReadyOnlyWhenItIsTheOneThatAnswers(t *testing.T) {
	other, err := StartTemporal(context.Background(), TemporalOptions{})
	require.NoError(t, err)
	defer other.Close()
	_, port, err := net.SplitHostPort(other.Address)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)

	tc, err := StartTemporal(context.Background(), TemporalOptions{Port: p, StartTimeout: 30 * time.Second})
	if err == nil {
		alive := true
		select {
		case <-tc.proc.Done():
			alive = false
		default:
		}
		_ = tc.Close()
		t.Fatalf("StartTemporal on a port another server holds reported success (its own server alive: %v)", alive)
	}
	require.ErrorIs(t, err, errExitedEarly)
}

// What a developer's shell sets for their own bridge or Temporal CLI does
// not reach the tests' processes; what steers the tests does.
func TestHermeticRemovesTheCallersBridgeAndCLISettings(t *testing.T) {
	for _, kv := range os.Environ() { // the caller's own, which Hermetic removes too
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "SAGABRIDGE_") || strings.HasPrefix(name, "TEMPORAL_") {
			t.Setenv(name, "")
			require.NoError(t, os.Unsetenv(name))
		}
	}
	t.Setenv("SAGABRIDGE_KAFKA_BROKERS", "prod-kafka:9092")
	t.Setenv("TEMPORAL_NAMESPACE", "prod")
	t.Setenv("SAGABRIDGE_SEED", "42")
	removed := Hermetic()
	assert.ElementsMatch(t, []string{"SAGABRIDGE_KAFKA_BROKERS", "TEMPORAL_NAMESPACE"}, removed)
	_, set := os.LookupEnv("SAGABRIDGE_KAFKA_BROKERS")
	assert.False(t, set)
	_, set = os.LookupEnv("TEMPORAL_NAMESPACE")
	assert.False(t, set)
	assert.Equal(t, "42", os.Getenv("SAGABRIDGE_SEED"))
}

// Ports handed out to be bound later come from outside the kernel's
// ephemeral range: released, such a port can be taken by any outgoing
// connection meanwhile (a dev server restarted on its port after a minute
// down failed "address already in use"); below the range only another
// explicit bind can take it.
func TestFreePortsAreOutsideTheEphemeralRange(t *testing.T) {
	lo, _, ok := ephemeralRange()
	if !ok {
		t.Skip("no /proc/sys/net/ipv4/ip_local_port_range: not Linux") // FreePorts falls back to port 0
	}
	ports, err := FreePorts(20)
	require.NoError(t, err)
	seen := map[int]bool{}
	for _, p := range ports {
		assert.Less(t, p, lo, "port %d is in the ephemeral range", p)
		assert.GreaterOrEqual(t, p, minPort)
		assert.False(t, seen[p], "port %d twice", p)
		seen[p] = true
	}
}

// A start interrupted (Ctrl-C while the server comes up) says so and ends
// at once, the server stopped: it said "not ready after 1m30s", which
// reads as a broken server, and devstack exited 1.
func TestAnInterruptedStartSaysItWasInterrupted(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "temporal")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 300\n"), 0o755)) // never answers
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	tc, err := StartTemporal(ctx, TemporalOptions{Bin: bin})
	require.Nil(t, tc)
	require.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, err.Error(), "not ready after")
	assert.Less(t, time.Since(start), 20*time.Second)
}

// Closing a server that failed to start again is a no-op: membench's
// deferred Close panicked on the nil a failed restart left, hiding the
// restart's error behind a stack trace.
func TestClosingNoServerIsANoOp(t *testing.T) {
	var none *Temporal
	assert.NotPanics(t, func() { assert.NoError(t, none.Close()) })
}

// A start asked for after the interrupt (Ctrl-C while Kafka came up)
// starts no server at all.
func TestAStartAfterTheInterruptStartsNothing(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "started")
	bin := filepath.Join(dir, "temporal")
	// Not executable: any start fails at once, so the test cannot pass by a
	// start that is stopped before its script ran.
	require.NoError(t, os.WriteFile(bin, []byte(fmt.Sprintf("#!/bin/sh\ntouch %q\nexec sleep 300\n", mark)), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := StartTemporal(ctx, TemporalOptions{Bin: bin})
	require.ErrorIs(t, err, context.Canceled, "a start was tried")
	assert.NoFileExists(t, mark)
}
