package saga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// WorkflowID is the ID of an order's workflow, as the route's template
// "order-{key}" builds it.
func WorkflowID(orderID string) string { return "order-" + orderID }

// WaitResult waits until the order's workflow exists and has closed, and
// returns its final State. It long-polls Temporal; it does not query in a loop.
func WaitResult(ctx context.Context, c client.Client, orderID string) (State, error) {
	var st State
	for {
		err := c.GetWorkflow(ctx, WorkflowID(orderID), "").Get(ctx, &st)
		var notFound *serviceerror.NotFound
		if !errors.As(err, &notFound) {
			if err != nil {
				return st, fmt.Errorf("order %s: %w", orderID, err)
			}
			return st, nil
		}
		select { // the bridge has not started it yet
		case <-ctx.Done():
			return st, fmt.Errorf("order %s never started: %w", orderID, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
