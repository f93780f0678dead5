package activities

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// spanAndDeadline gives every activity a span (as the worker's tracing
// interceptor does) and, when timeout is set, a context that ends after it
// (as StartToCloseTimeout does).
type spanAndDeadline struct {
	interceptor.WorkerInterceptorBase
	timeout time.Duration
}

func (w *spanAndDeadline) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &spanAndDeadlineActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, timeout: w.timeout}
}

type spanAndDeadlineActivity struct {
	interceptor.ActivityInboundInterceptorBase
	timeout time.Duration
}

// activitySpan is the span every activity runs in here.
const activitySpan = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func (a *spanAndDeadlineActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: 1}))
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	return a.Next.ExecuteActivity(ctx, in)
}

// activityEnv registers acts in an activity environment whose activities
// run under spanAndDeadline.
func activityEnv(timeout time.Duration, acts ...any) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&spanAndDeadline{timeout: timeout}}})
	for _, a := range acts {
		env.RegisterActivity(a)
	}
	return env
}

// A broker that takes the connection and never answers a produce held
// Publish and DeadLetter in sarama's send, retries and read timeouts
// included, long after their context ended (8 s against a 1 s deadline
// with a 4 s read timeout and one retry; minutes with the defaults): each
// attempt that timed out left an activity slot and a goroutine behind, and
// on recovery every one of them wrote. They now return when their context
// ends.
func TestPublishAndDeadLetterReturnWhenTheirContextEnds(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "outcomes", "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	cfg := ProducerConfig(sarama.V3_6_0_0)
	cfg.Net.ReadTimeout = 4 * time.Second
	cfg.Producer.Retry.Max = 1
	p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		return nil, nil, true // taken, never answered
	})
	env := activityEnv(time.Second, &Publisher{Producer: p}, &DeadLetterer{Producer: p})
	for name, run := range map[string]func() error{
		"Publish": func() error {
			_, err := env.ExecuteActivity("Publish", Outcome{Topic: "outcomes", Type: "X", Value: []byte(`{}`)})
			return err
		},
		"DeadLetter": func() error {
			_, err := env.ExecuteActivity(DeadLetterActivity, DeadLetterInput{Event: event.Envelope{Topic: "orders", Key: "k", Raw: []byte(`{}`)}, ActivityType: "X", Error: "e"})
			return err
		},
	} {
		start := time.Now()
		err := run()
		took := time.Since(start)
		require.Error(t, err, name)
		assert.Less(t, took, 3*time.Second, "%s returned %v after its 1 s context ended", name, took)
		assert.Contains(t, err.Error(), "context deadline exceeded", name)
	}
}

// A dead letter keeps the record's headers as they were ("its key and
// headers go to the DLQ unchanged"): the activity's trace context goes in
// headers of the DLQ's own, which a redrive drops. It overwrote the
// record's traceparent with the activity's span, or added one the record
// never had, and a redrive wrote it back to the source topic.
func TestADeadLetterKeepsTheRecordsTraceHeaders(t *testing.T) {
	for name, headers := range map[string][]event.Header{
		"the record's own traceparent": {{Key: "traceparent", Value: []byte("00-11111111111111111111111111111111-2222222222222222-01")}, {Key: "tracestate", Value: []byte("vendor=x")}},
		"no traceparent":               {{Key: "h", Value: []byte("v")}},
	} {
		t.Run(name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders"+dlq.DefaultSuffix))
			require.NoError(t, err)
			t.Cleanup(cluster.Close)
			p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), ProducerConfig(sarama.V3_6_0_0))
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Close() })
			env := activityEnv(0, &DeadLetterer{Producer: p})
			_, err = env.ExecuteActivity(DeadLetterActivity, DeadLetterInput{
				Event: event.Envelope{Topic: "orders", Offset: 3, Key: "k", Raw: []byte("v"), Headers: headers}, ActivityType: "X", Error: "boom"})
			require.NoError(t, err)
			f := readDLQ(t, cluster)
			var got []event.Header
			for _, h := range f.Headers {
				got = append(got, event.Header{Key: string(h.Key), Value: h.Value})
			}
			assert.Equal(t, headers, got, "the record's headers in the dead letter")
			assert.Equal(t, activitySpan, f.TraceParent, "the activity's span, in the DLQ's own header")
			assert.Equal(t, "default-test-workflow-id/default-test-run-id/0", f.EventID, "the write's event ID, in the DLQ's own header")
		})
	}
}

// A Publisher or DeadLetterer without a producer (a worker started
// without Kafka: sagaworker's Deps.Producer is nil unless Worker.Kafka)
// fails the activity with an error that says so, and retryably: once the
// worker is fixed the outcome or dead letter goes out, nothing lost. (The
// send panicked on its own goroutine, outside the SDK's recovery, and took
// the worker process down on every retry.)
func TestAnActivityWithoutAProducerFailsRetryablyNamingIt(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(&Publisher{})
	env.RegisterActivity(&DeadLetterer{})
	for _, c := range []struct {
		name  string
		input any
		says  string
	}{
		{"Publish", Outcome{Topic: "outcomes", Type: "Booked", Value: []byte(`{}`)}, "Publisher.Producer"},
		{DeadLetterActivity, DeadLetterInput{Event: event.Envelope{Topic: "orders", Offset: 3}, ActivityType: "BookHotel"}, "DeadLetterer.Producer"},
	} {
		_, err := env.ExecuteActivity(c.name, c.input)
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, err, &appErr, c.name)
		assert.False(t, appErr.NonRetryable(), "%v", err)
		assert.Contains(t, err.Error(), c.says)
		assert.Contains(t, err.Error(), "Worker.Kafka")
	}
}

// Kafka refusing the worker's own access (an ACL, a lapsed credential) is
// the worker's fault, not the record's: Publish and DeadLetter say so with
// the type KafkaAccessDenied, retryable, which workflows.RetriesExhausted
// does not count as a record's failure. (A plain error: a saga step that
// published ran out of attempts and dead-lettered its record.)
func TestKafkaRefusingTheWorkersAccessIsKafkaAccessDenied(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "outcomes", "orders", "orders"+dlq.DefaultSuffix))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	cfg := ProducerConfig(sarama.V3_6_0_0)
	cfg.Producer.Retry.Max = 1
	p, err := sarama.NewSyncProducer(cluster.ListenAddrs(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	env := activityEnv(0, &Publisher{Producer: p}, &DeadLetterer{Producer: p})
	for name, input := range map[string]any{
		"Publish":          Outcome{Topic: "outcomes", Type: "X", Value: []byte(`{}`)},
		DeadLetterActivity: DeadLetterInput{Event: event.Envelope{Topic: "orders", Key: "k", Raw: []byte(`{}`)}, ActivityType: "X", Error: "e"},
	} {
		_, err := env.ExecuteActivity(name, input)
		var app *temporal.ApplicationError
		require.ErrorAs(t, err, &app, name)
		assert.Equal(t, "KafkaAccessDenied", app.Type(), "%s: %v", name, err)
		assert.False(t, app.NonRetryable(), name)
		assert.Contains(t, err.Error(), "not authorized", name)
	}
}
