package sagaworker

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/IBM/sarama/mocks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/examples/signup"
)

// A worker with Kafka registers the dead-letter activity itself, so a saga
// whose Register forgot it (the signup example's did) still dead-letters
// a record that arrives after its final status. (Without it the saga asked
// again every minute for ten minutes, then listed the record as "could not
// be dead-lettered": unregistered activity.)
func TestAKafkaWorkerRegistersTheDeadLetterActivity(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	producer := mocks.NewSyncProducer(t, sarama.NewConfig())
	var sent []*sarama.ProducerMessage
	producer.ExpectSendMessageWithMessageCheckerFunctionAndSucceed(func(m *sarama.ProducerMessage) error {
		sent = append(sent, m)
		return nil
	})
	w := Worker{Register: func(r worker.Registry, _ Deps) error {
		signup.RegisterWith(r, &signup.Activities{})
		return nil
	}}
	own, err := register(env, w, Deps{Producer: producer, DLQ: config.DLQ{Suffix: ".dlq"}})
	require.NoError(t, err)
	assert.False(t, own)

	rec := func(off int64, typ, value string) event.Envelope {
		return event.Envelope{Topic: signup.Topic, Offset: off, Key: "7", Type: typ, Value: []byte(value)}
	}
	start := env.Now()
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(event.DefaultSignal, event.Batch{OnClosed: "dlq", Events: []event.Envelope{
			rec(0, signup.SignupRequested, `{"email":"ann@example.com","plan":"pro"}`),
			rec(1, signup.SignupCancelled, `{"reason":"changed my mind"}`),
			rec(2, signup.PaymentMethodAdded, `{"payment_method":"pm_visa"}`), // after the final status
		}})
	}, time.Second)
	env.ExecuteWorkflow(signup.WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st signup.State
	require.NoError(t, env.GetWorkflowResult(&st))
	require.Len(t, st.Rejected, 1)
	assert.Contains(t, st.Rejected[0].Reason, "dead-lettered (on_closed_workflow: dlq)")
	assert.NotContains(t, st.Rejected[0].Reason, "could not be dead-lettered")
	assert.Less(t, env.Now().Sub(start), time.Minute, "the saga waited for a dead-letter activity")
	require.Len(t, sent, 1)
	assert.Equal(t, signup.Topic+".dlq", sent[0].Topic)
}

// A Register that registers a DeadLetterer of its own keeps it: the worker
// does not replace it with one on Deps' producer. (It was replaced
// silently: dead letters went to another producer and suffix.)
func TestAWorkersOwnDeadLettererIsKept(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	theirs := mocks.NewSyncProducer(t, sarama.NewConfig())
	theirs.ExpectSendMessageAndSucceed()
	ours := mocks.NewSyncProducer(t, sarama.NewConfig()) // expects nothing: a send fails the test
	w := Worker{Register: func(r worker.Registry, _ Deps) error {
		signup.RegisterWith(r, &signup.Activities{})
		r.RegisterActivity(&activities.DeadLetterer{Producer: theirs, Suffix: ".theirs"})
		return nil
	}}
	own, err := register(env, w, Deps{Producer: ours, DLQ: config.DLQ{Suffix: ".dlq"}})
	require.NoError(t, err)
	assert.True(t, own)
	rec := func(off int64, typ, value string) event.Envelope {
		return event.Envelope{Topic: signup.Topic, Offset: off, Key: "7", Type: typ, Value: []byte(value)}
	}
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(event.DefaultSignal, event.Batch{OnClosed: "dlq", Events: []event.Envelope{
			rec(0, signup.SignupRequested, `{"email":"ann@example.com","plan":"pro"}`),
			rec(1, signup.SignupCancelled, `{"reason":"changed my mind"}`),
			rec(2, signup.PaymentMethodAdded, `{"payment_method":"pm_visa"}`),
		}})
	}, time.Second)
	env.ExecuteWorkflow(signup.WorkflowType)
	require.NoError(t, env.GetWorkflowError())
	var st signup.State
	require.NoError(t, env.GetWorkflowResult(&st))
	require.Len(t, st.Rejected, 1)
	assert.Contains(t, st.Rejected[0].Reason, "dead-lettered (on_closed_workflow: dlq)")
}
