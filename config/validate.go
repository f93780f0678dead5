package bridge

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// validateConnections checks what the bridge and the worker both need to
// reach Kafka and Temporal (LoadConnections checks only this).
func (c Config) validateConnections(bad func(field, format string, args ...any)) {
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker is required")
	}
	for i, b := range c.Kafka.Brokers {
		if b == "" {
			bad(fmt.Sprintf("kafka.brokers[%d]", i), "must not be empty")
		}
	}
	if _, err := sarama.ParseKafkaVersion(c.Kafka.Version); err != nil {
		bad("kafka.version", "%q is not a Kafka version: %v", c.Kafka.Version, err)
	}
	c.Kafka.validateSecurity(bad)
	c.Temporal.validate(bad)
}

// Validate checks every field and returns all problems found, each a *FieldError.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	c.validateConnections(bad)
	if c.Kafka.Group == "" {
		bad("kafka.group", "is required")
	}
	if c.Kafka.InitialOffset != "oldest" && c.Kafka.InitialOffset != "newest" {
		bad("kafka.initial_offset", "must be \"oldest\" or \"newest\", not %q", c.Kafka.InitialOffset)
	}
	if c.DLQ.Suffix == "" {
		bad("dlq.suffix", "must not be empty")
	}
	if c.DLQ.Transactional {
		if c.DLQ.TransactionalIDPrefix == "" {
			bad("dlq.transactional_id_prefix", "is required with dlq.transactional, and must stay the same across restarts")
		}
		if v, err := sarama.ParseKafkaVersion(c.Kafka.Version); err == nil && !v.IsAtLeast(sarama.V2_5_0_0) {
			bad("kafka.version", "%s is older than 2.5.0, which dlq.transactional needs (group-metadata fencing)", c.Kafka.Version)
		}
	} else if c.DLQ.TransactionalIDPrefix != "" {
		bad("dlq.transactional_id_prefix", "is set but dlq.transactional is false")
	}
	for name, n := range map[string]int{
		"batch.max_records": c.Batch.MaxRecords, "batch.max_bytes": c.Batch.MaxBytes,
		"batch.max_in_flight": c.Batch.MaxInFlight, "dispatch.concurrency": c.Dispatch.Concurrency,
		"dispatch.max_call_bytes":  c.Dispatch.MaxCallBytes,
		"backpressure.max_records": c.Backpressure.MaxRecords, "backpressure.max_bytes": c.Backpressure.MaxBytes,
		"backpressure.circuit.failures":         c.Backpressure.Circuit.Failures,
		"backpressure.adaptive.min_concurrency": c.Backpressure.Adaptive.MinConcurrency,
	} {
		if n < 1 {
			bad(name, "must be at least 1")
		}
	}
	if c.Batch.MaxInFlight < c.Batch.MaxRecords {
		bad("batch.max_in_flight", "must be at least batch.max_records (%d)", c.Batch.MaxRecords)
	}
	bp := c.Backpressure
	if bp.MaxRecords < c.Batch.MaxRecords {
		bad("backpressure.max_records", "must be at least batch.max_records (%d), or a batch could never fill", c.Batch.MaxRecords)
	}
	if c.Memory.SoftLimit < -1 {
		bad("memory.soft_limit", "must be a number of bytes, or -1 for the runtime's default")
	}
	if bp.ResumeAt <= 0 || bp.ResumeAt >= 1 {
		bad("backpressure.resume_at", "must be between 0 and 1 (a fraction of the caps), not %g", bp.ResumeAt)
	}
	if bp.Backlog.HighTasks < 1 {
		bad("backpressure.backlog.high_tasks", "must be at least 1")
	}
	if bp.Backlog.LowTasks < 0 || bp.Backlog.LowTasks >= bp.Backlog.HighTasks {
		bad("backpressure.backlog.low_tasks", "must be at least 0 and below high_tasks (%d)", bp.Backlog.HighTasks)
	}
	if bp.Backlog.LowAge >= bp.Backlog.HighAge {
		bad("backpressure.backlog.low_age", "must be below high_age (%s)", bp.Backlog.HighAge)
	}
	if bp.Adaptive.MinConcurrency > c.Dispatch.Concurrency {
		bad("backpressure.adaptive.min_concurrency", "must not exceed dispatch.concurrency (%d)", c.Dispatch.Concurrency)
	}
	if c.Dispatch.MaxCallBytes > maxPayloadBytes {
		bad("dispatch.max_call_bytes", "must not exceed Temporal's payload limit of %d bytes", maxPayloadBytes)
	}
	switch c.Dispatch.OnClosedWorkflow {
	case OnClosedDLQ, OnClosedDrop, OnClosedNewRun:
	default:
		bad("dispatch.on_closed_workflow", "must be %q, %q or %q, not %q", OnClosedDLQ, OnClosedDrop, OnClosedNewRun, c.Dispatch.OnClosedWorkflow)
	}
	for name, d := range map[string]time.Duration{
		"batch.linger":          c.Batch.Linger,
		"dispatch.call_timeout": c.Dispatch.CallTimeout, "dispatch.retry_initial": c.Dispatch.RetryInitial,
		"dispatch.retry_max": c.Dispatch.RetryMax, "dispatch.drain_timeout": c.Dispatch.DrainTimeout,
		"backpressure.backlog.poll_interval":   c.Backpressure.Backlog.PollInterval,
		"backpressure.backlog.high_age":        c.Backpressure.Backlog.HighAge,
		"backpressure.backlog.low_age":         c.Backpressure.Backlog.LowAge,
		"backpressure.circuit.open_for":        c.Backpressure.Circuit.OpenFor,
		"backpressure.adaptive.latency_target": c.Backpressure.Adaptive.LatencyTarget,
	} {
		if d < 0 {
			bad(name, "must not be negative")
		}
	}
	if c.Dispatch.RetryMax < c.Dispatch.RetryInitial {
		bad("dispatch.retry_max", "must be at least dispatch.retry_initial (%s)", c.Dispatch.RetryInitial)
	}
	if c.Dispatch.DrainTimeout >= rebalanceTimeout {
		bad("dispatch.drain_timeout", "must be below the rebalance timeout (%s), or a call could outlive its partition", rebalanceTimeout)
	}
	if len(c.Routes) == 0 {
		bad("routes", "at least one route is required")
	}
	for i, r := range c.Routes {
		errs = append(errs, r.validate(fmt.Sprintf("routes[%d]", i))...)
	}
	if _, err := compileRoutes(c.Routes, c.DLQ.Suffix); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
