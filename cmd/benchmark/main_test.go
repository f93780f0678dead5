package main

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/sagaworker"
)

// A run that succeeded leaves no dev-server log behind; one that failed
// keeps it and says where it is.
func TestTheDevServersLogIsKeptOnlyWhenTheRunFails(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())

	var said strings.Builder
	f, finish, err := serverLog(&said)
	require.NoError(t, err)
	finish(nil)
	assert.NoFileExists(t, f.Name(), "removed after a run that succeeded")
	assert.Empty(t, said.String())

	f, finish, err = serverLog(&said)
	require.NoError(t, err)
	finish(errors.New("the probe failed"))
	assert.FileExists(t, f.Name(), "kept after a run that failed")
	assert.Contains(t, said.String(), f.Name())
	require.NoError(t, os.Remove(f.Name()))
}

// The benchmark's worker runs what cmd/worker runs unless told otherwise.
func TestTheWorkerHasCmdWorkersPollersByDefault(t *testing.T) {
	auto := workerOptions(sagaworker.DefaultPollerBehavior)
	assert.NotNil(t, auto.WorkflowTaskPollerBehavior, "autoscaled pollers, normal and sticky queue apart")
	assert.Zero(t, auto.MaxConcurrentWorkflowTaskPollers)

	fixed := workerOptions(sagaworker.PollerFixed)
	assert.Nil(t, fixed.WorkflowTaskPollerBehavior)
	assert.Equal(t, 16, fixed.MaxConcurrentWorkflowTaskPollers)
}
