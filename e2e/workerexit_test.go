package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sagabridge/sagabridge/sagaworker"
)

// A worker whose namespace is deleted under it stops polling (the SDK
// stops a worker on such a fatal error); sagaworker.Run must then return
// the error, so the process exits and is restarted or alerted on, rather
// than living on as a worker that polls nothing. (Run waited for its
// context alone: the process stayed up, idle, for ever.)
func TestAWorkerWhoseNamespaceIsDeletedExitsWithTheError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := "worker-exit-" + uuid.NewString()[:8]
	nc, err := client.NewNamespaceClient(client.Options{HostPort: stack.Temporal.Address, Logger: quietLogger()})
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.Register(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)}))
	c, err := client.Dial(client.Options{HostPort: stack.Temporal.Address, Namespace: ns, Logger: quietLogger()})
	require.NoError(t, err)
	defer c.Close()

	const taskQueue = "exit"
	done := make(chan error, 1)
	go func() {
		done <- sagaworker.Run(ctx, sagaworker.Worker{TaskQueue: taskQueue, Register: func(w worker.Registry, _ sagaworker.Deps) error {
			w.RegisterWorkflowWithOptions(func(workflow.Context) error { return nil }, workflow.RegisterOptions{Name: "Noop"})
			return nil
		}}, []string{"-log-level", "error"}, []string{
			"SAGABRIDGE_TEMPORAL_ADDRESS=" + stack.Temporal.Address, "SAGABRIDGE_TEMPORAL_NAMESPACE=" + ns})
	}()
	started := time.Now()
	require.Eventually(t, func() bool { // the worker polls
		d, err := c.DescribeTaskQueue(ctx, taskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		return err == nil && len(d.GetPollers()) > 0
	}, time.Minute, 100*time.Millisecond, "the worker never polled")
	t.Logf("the worker polled after %s", time.Since(started).Round(time.Second))

	_, err = c.OperatorService().DeleteNamespace(ctx, &operatorservice.DeleteNamespaceRequest{Namespace: ns})
	require.NoError(t, err)
	deleted := time.Now()
	select {
	case err := <-done:
		require.Error(t, err, "Run returned without the worker's error")
		t.Logf("Run returned %s after the namespace was deleted: %v", time.Since(deleted).Round(time.Second), err)
	case <-ctx.Done():
		t.Fatal("the worker's namespace was deleted and Run kept running")
	}
}
