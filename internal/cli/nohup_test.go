package cli

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A program started with SIGHUP ignored (nohup) keeps ignoring it: a
// hang-up followed by SIGTERM stops it on the SIGTERM. (signal.Notify
// installs a handler even for an ignored signal: nohup'd programs were
// stopped by the terminal hanging up.)
func TestAProgramStartedUnderNohupIgnoresSIGHUP(t *testing.T) {
	if os.Getenv("SAGABRIDGE_NOHUP_CHILD") == "1" {
		fmt.Println("ignored at start:", signal.Ignored(syscall.SIGHUP))
		var stoppedBy strings.Builder
		ctx, stop := SignalContext(slog.New(slog.NewTextHandler(&stoppedBy, nil)))
		defer stop()
		fmt.Println("ready")
		<-ctx.Done()
		fmt.Println("stopped:", strings.Contains(stoppedBy.String(), "signal=terminated"), stoppedBy.String())
		return
	}
	cmd := exec.Command("sh", "-c", `trap '' HUP; exec "$0" -test.run='^TestAProgramStartedUnderNohupIgnoresSIGHUP$'`, os.Args[0])
	out := startChild(t, cmd, "SAGABRIDGE_NOHUP_CHILD=1")
	var lines []string
	for sc := bufio.NewScanner(out); sc.Scan(); {
		lines = append(lines, sc.Text())
		if sc.Text() == "ready" {
			// Sent in this order, a handled SIGHUP reaches the program
			// first; an ignored one is discarded.
			require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		}
	}
	all := strings.Join(lines, "\n")
	require.Contains(t, all, "ignored at start: true", "the shell did not start the test with SIGHUP ignored")
	assert.Contains(t, all, "stopped: true", "the hang-up stopped a program started with it ignored:\n%s", all)
}

// After the first signal a program stops by itself; a second ends it at
// once, as Go's default for the signal does, however stuck its stop is.
func TestASecondSignalEndsTheProcessAtOnce(t *testing.T) {
	if os.Getenv("SAGABRIDGE_SECOND_SIGNAL_CHILD") == "1" {
		ctx, stop := SignalContext(nil)
		defer stop()
		fmt.Println("ready")
		<-ctx.Done()
		fmt.Println("stopping")
		time.Sleep(10 * time.Second) // a stop that is stuck
		fmt.Println("not ended")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestASecondSignalEndsTheProcessAtOnce$")
	out := startChild(t, cmd, "SAGABRIDGE_SECOND_SIGNAL_CHILD=1")
	var lines []string
	for sc := bufio.NewScanner(out); sc.Scan(); {
		lines = append(lines, sc.Text())
		switch sc.Text() {
		case "ready", "stopping": // the first signal, then the second
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		}
	}
	err := cmd.Wait()
	require.Contains(t, lines, "stopping", "the first signal did not stop it")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%v", lines)
	assert.Equal(t, "signal: terminated", exit.Error(), "the second signal ended it")
	assert.NotContains(t, lines, "not ended")
}

// startChild starts cmd, this test binary run as a child, with env added
// to the environment, and returns its stdout; it is killed when the test
// ends.
func startChild(t *testing.T, cmd *exec.Cmd, env string) io.Reader {
	t.Helper()
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return out
}
