package devstack

import (
	"context"
	"io"
	"log/slog"

	"go.temporal.io/api/workflowservice/v1"
)

// Options configures a whole stack.
type Options struct {
	// Topics are created with Partitions partitions each.
	Topics     []string
	Partitions int32
	// KafkaPort is the broker's port; 0 picks a free one.
	KafkaPort int
	// Logger receives what the kfake workaround does (reaper.go).
	// Optional, default discard.
	Logger   *slog.Logger
	Temporal TemporalOptions
}

// Stack is Kafka and Temporal together.
type Stack struct {
	Kafka    *Kafka
	Temporal *Temporal
}

// Start starts Kafka, then Temporal; on failure nothing is left running.
func Start(ctx context.Context, o Options) (*Stack, error) {
	k, err := StartKafkaWith(KafkaOptions{Port: o.KafkaPort, Topics: o.Topics, Partitions: o.Partitions, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	t, err := StartTemporal(ctx, o.Temporal)
	if err != nil {
		k.Close()
		return nil, err
	}
	return &Stack{Kafka: k, Temporal: t}, nil
}

// Close stops Temporal, then Kafka. Safe to call twice.
func (s *Stack) Close() {
	_ = s.Temporal.Close()
	s.Kafka.Close()
}

func describeDefault() *workflowservice.DescribeNamespaceRequest {
	return &workflowservice.DescribeNamespaceRequest{Namespace: "default"}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
