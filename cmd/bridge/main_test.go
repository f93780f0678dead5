package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/internal/devstack"
)

// runMainEnv makes the test binary run main instead of the tests, with the
// arguments it was given: the only way to see main's exit code.
const runMainEnv = "BRIDGE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	if removed := devstack.Hermetic(); len(removed) > 0 {
		fmt.Fprintln(os.Stderr, "cmd/bridge tests: ignoring from the environment:", strings.Join(removed, ", "))
	}
	os.Exit(m.Run())
}

// A word after the flags is refused before anything starts. (It was
// ignored: "bridge -config b.yaml offsets move ..." started a consuming
// group member, the one thing offsets move needs stopped.)
func TestAnArgumentAfterTheFlagsIsRefused(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-config", "/nonexistent/bridge.yaml", "offsets", "move")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "bridge exited with %v; stderr:\n%s", err, stderr.String())
	assert.Equal(t, 2, exit.ExitCode())
	assert.Contains(t, stderr.String(), `unexpected argument "offsets"`)
}
