package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/examples/trip"
	"github.com/sagabridge/sagabridge/workflows"
)

// A saga activity that always fails (the car rental service is down) runs
// out of retries: the workflow writes exactly one DLQ record, with the
// workflow ID, run ID and activity type, and ends compensated. Once the
// service is back, `bridge dlq redrive` puts the original record back on its
// topic and the bridge starts a new run of the same workflow ID, which books
// the trip.
func TestFailedActivityGoesToTheDLQAndRedriveCompletesANewSaga(t *testing.T) {
	e := newEnv(t, 1)
	tripTopic, stop := runTripBridge(t, e, config.OnClosedNewRun) // a redriven record is new
	defer stop()
	tripDLQ := dlq.TopicFor(tripTopic, dlq.DefaultSuffix)

	e.trips.World.Break("car")
	key := "t-" + e.id
	value := `{"flight":"LH400","hotel":"H-9","car":"C-1"}`
	bookTrip(t, e, tripTopic, key, value)

	wid := "trip-" + key
	// The record is dead-lettered before the bookings are cancelled. The
	// car's cancellation, registered before its booking (whose answer may
	// have been lost), waits for the car service: the trip closes once it
	// is back.
	dead := readAll(t, tripDLQ, 1, 30*time.Second)
	require.Len(t, dead, 1, "exactly one DLQ record for the failed activity")
	e.trips.World.Fix("car")
	first := tripResult(t, e, wid, "")
	assert.Equal(t, trip.StatusCompensated, first.state.Status)
	assert.True(t, first.state.State.DeadLettered)
	assert.Equal(t, []string{"Bookflight", "Bookhotel"}, first.state.CompletedSteps)
	assert.Equal(t, []string{"Cancelcar", "Cancelhotel", "Cancelflight"}, compensationNames(first.state.Compensations))
	assert.Empty(t, e.trips.World.Booked(), "the flight and hotel were cancelled")

	f, err := dlq.Parse(dead[0])
	require.NoError(t, err)
	assert.Equal(t, dlq.ClassActivity, f.Class)
	assert.Equal(t, wid, f.WorkflowID)
	assert.Equal(t, first.runID, f.RunID)
	assert.Equal(t, "BookCar", f.ActivityType)
	assert.Equal(t, trip.MaxAttempts, f.Attempts)
	assert.Contains(t, f.Err, "car service unavailable")
	assert.Equal(t, tripTopic, f.Topic)
	assert.Equal(t, key, string(f.Key))
	assert.JSONEq(t, value, string(f.Value))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bridgeBin, "dlq", "redrive", "-brokers", stack.Kafka.Brokers[0],
		"-topic", tripDLQ, "-partition", "0", "-offset", strconv.FormatInt(dead[0].Offset, 10)).CombinedOutput()
	require.NoError(t, err, "dlq redrive: %s", out)

	second := tripResult(t, e, wid, first.runID)
	recordHistory(t, "trip", "trip-car-down-dead-lettered", wid, first.runID)
	recordHistory(t, "trip", "trip-booked-after-redrive", wid, second.runID)
	assert.NotEqual(t, first.runID, second.runID, "a new run of the same workflow ID")
	assert.Equal(t, trip.StatusBooked, second.state.Status)
	assert.Len(t, e.trips.World.Booked(), 3)

	// The state and the list by status, through the real Temporal CLI.
	st, err := queryWorkflowState[trip.State](t, wid)
	require.NoError(t, err)
	assert.Equal(t, trip.StatusBooked, st.Status)
	assert.Equal(t, key, st.Key)
	assert.Len(t, st.State.Bookings, 3)
	assert.Equal(t, []string{"Bookflight", "Bookhotel", "Bookcar"}, st.CompletedSteps)
	for status, want := range map[trip.Status][]string{trip.StatusBooked: {wid}, trip.StatusCompensated: {wid}, trip.StatusNew: {}} {
		query := fmt.Sprintf(`WorkflowType=%q AND %s=%q AND WorkflowId=%q`, trip.WorkflowType, trip.StatusSearchAttribute, status, wid)
		var got []string
		require.Eventually(t, func() bool { got = listWorkflows(t, query); return slices.Equal(want, got) }, 30*time.Second, 250*time.Millisecond,
			"%s: want %v, listed %v (one run each: the dead-lettered one and the redriven one)", status, want, got)
	}
	// Both runs have closed (listed above with their final status): the
	// DLQ's end offset is final, where a 2 s read looked for absence.
	assert.Equal(t, int64(1), endOffsets(t, tripDLQ), "the new run dead-lettered nothing")
}

// runTripBridge creates the env's trip topic and its DLQ topic and runs a
// bridge routing the trip topic to TripSaga beside the env's own route,
// with dispatch.on_closed_workflow onClosed ("" for the default). It
// returns the trip topic and the bridge's stop.
func runTripBridge(t *testing.T, e *env, onClosed string) (string, func()) {
	t.Helper()
	tripTopic := e.topic + "-trips"
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(tripTopic, 1, nil))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(dlq.TopicFor(tripTopic, dlq.DefaultSuffix), 1, nil))
	_, stop := e.runBridgeWith(e.topic, func(c *config.Config) {
		if onClosed != "" {
			c.Dispatch.OnClosedWorkflow = onClosed
		}
		c.Routes = append(c.Routes, config.Route{
			Topic: tripTopic, TypeHeader: trip.TypeHeader, WorkflowType: trip.WorkflowType,
			WorkflowID: "trip-{key}", TaskQueue: e.taskQueue, Signal: trip.Signal,
		})
	})
	return tripTopic, stop
}

// bookTrip produces a BookTrip record with key and value to topic.
func bookTrip(t *testing.T, e *env, topic, key, value string) {
	t.Helper()
	_, _, err := e.producer.SendMessage(&sarama.ProducerMessage{
		Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(value),
		Headers: []sarama.RecordHeader{{Key: []byte(trip.TypeHeader), Value: []byte(trip.BookTrip)}},
	})
	require.NoError(t, err)
}

type tripRun struct {
	runID string
	state trip.State
}

// tripResult waits for a closed run of wid other than notRunID and returns it.
func tripResult(t *testing.T, e *env, wid, notRunID string) tripRun {
	t.Helper()
	var run tripRun
	require.Eventually(t, func() bool {
		d, err := e.tc.DescribeWorkflowExecution(context.Background(), wid, "")
		if err != nil {
			return false
		}
		info := d.GetWorkflowExecutionInfo()
		if info.GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING || info.GetExecution().GetRunId() == notRunID {
			return false
		}
		run.runID = info.GetExecution().GetRunId()
		return e.tc.GetWorkflow(context.Background(), wid, run.runID).Get(context.Background(), &run.state) == nil
	}, 2*time.Minute, 200*time.Millisecond, "workflow %s never closed (other than run %q)", wid, notRunID)
	return run
}

// compensationNames lists the names of rs, in order.
func compensationNames(rs []workflows.CompensationResult) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// A trip cancelled (temporal workflow cancel) while its hotel is booked
// waits for the booking to land, then cancels it with the flight: the
// trip ends cancelled with nothing held. (The cancellation of the hotel
// ran at once and the booking landed after it: a hotel held for a
// cancelled trip, which ended compensated.)
func TestATripCancelledWhileBookingCancelsTheBookingAfterItLands(t *testing.T) {
	e := newEnv(t, 1)
	tripTopic, stop := runTripBridge(t, e, "")
	defer stop()

	e.trips.World.Slow("hotel")
	key := "t-" + e.id
	bookTrip(t, e, tripTopic, key, `{"flight":"LH400","hotel":"H-9","car":"C-1"}`)
	wid := "trip-" + key
	require.Eventually(t, func() bool { begun, _ := e.trips.World.SlowBookings(); return begun == 1 }, 60*time.Second, 10*time.Millisecond,
		"the hotel booking never started")
	out, err := temporalCLI(t, "workflow", "cancel", "--workflow-id", wid)
	require.NoError(t, err, "temporal workflow cancel: %s", out)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var canceled *temporal.CanceledError
	require.ErrorAs(t, e.tc.GetWorkflow(ctx, wid, "").Get(ctx, nil), &canceled, "the trip's workflow reports itself cancelled")
	require.Eventually(t, func() bool { _, landed := e.trips.World.SlowBookings(); return landed == 1 }, 30*time.Second, 10*time.Millisecond,
		"the hotel booking never landed")
	assert.Empty(t, e.trips.World.Booked(), "a booking is held on a cancelled trip")
	st, err := queryWorkflowState[trip.State](t, wid)
	require.NoError(t, err)
	assert.Equal(t, trip.StatusCancelled, st.Status)
	assert.Equal(t, []string{"Cancelflight", "Cancelhotel"}, slices.Sorted(slices.Values(compensationNames(st.Compensations))))
	_, hasCar := st.State.Bookings["car"]
	assert.False(t, hasCar, "a cancelled trip booked on")
}
