package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// Default returns the configuration with every default applied and nothing
// else set: no brokers, group or routes.
func Default() Config { return Config{}.WithDefaults() }

// WithDefaults fills every optional field that was not set. A field counts
// as set when it is not zero, or when the file or the environment it was
// read from named it (so `low_tasks: 0` stays 0); an empty string always
// takes its default. Derived defaults (batch.max_in_flight,
// backpressure.backlog.low_tasks and low_age,
// backpressure.adaptive.min_concurrency, memory.soft_limit) follow the
// fields they derive from. This is the one place defaults are applied;
// bridge.New calls it for a Config built in Go.
func (c Config) WithDefaults() Config {
	cv := reflect.ValueOf(&c).Elem()
	for _, d := range defaults() {
		f := cv.FieldByIndex(fieldIndex(d.path))
		if f.IsZero() && (f.Kind() == reflect.String || !c.set[d.path]) {
			d.apply(&c)
		}
	}
	routes := make([]Route, len(c.Routes))
	for i, r := range c.Routes {
		routes[i] = r.withDefaults(c.Dispatch, c.set[fmt.Sprintf("routes[%d].concurrency", i)])
	}
	c.Routes = routes
	c.defaulted = true
	return c
}

// Defaulted reports whether WithDefaults (or Load, Parse) filled c.
func (c Config) Defaulted() bool { return c.defaulted }

// fieldDefault is the default of the field at path.
type fieldDefault struct {
	path  string
	apply func(c *Config)
}

// defaults lists every field's default, each after the fields it derives from.
func defaults() []fieldDefault {
	return []fieldDefault{
		{"kafka.client_id", func(c *Config) { c.Kafka.ClientID = "sagabridge" }},
		{"kafka.version", func(c *Config) { c.Kafka.Version = "3.6.0" }},
		{"kafka.initial_offset", func(c *Config) { c.Kafka.InitialOffset = "oldest" }},
		{"kafka.connect_timeout", func(c *Config) { c.Kafka.ConnectTimeout = 15 * time.Second }},
		{"kafka.isolation_level", func(c *Config) { c.Kafka.IsolationLevel = ReadCommitted }},
		{"temporal.address", func(c *Config) { c.Temporal.Address = "127.0.0.1:7233" }},
		{"temporal.namespace", func(c *Config) { c.Temporal.Namespace = "default" }},
		{"temporal.grpc_compression", func(c *Config) { c.Temporal.GRPCCompression = GRPCCompressionAuto }},
		{"dlq.suffix", func(c *Config) { c.DLQ.Suffix = dlq.DefaultSuffix }},
		{"dlq.max_message_bytes", func(c *Config) { c.DLQ.MaxMessageBytes = 1048588 }},
		{"batch.max_records", func(c *Config) { c.Batch.MaxRecords = 2000 }},
		{"batch.max_bytes", func(c *Config) { c.Batch.MaxBytes = 2 << 20 }},
		{"batch.linger", func(c *Config) { c.Batch.Linger = 5 * time.Millisecond }},
		{"batch.max_in_flight", func(c *Config) { c.Batch.MaxInFlight = 10 * c.Batch.MaxRecords }},
		{"dispatch.concurrency", func(c *Config) { c.Dispatch.Concurrency = 64 }},
		{"dispatch.max_call_bytes", func(c *Config) { c.Dispatch.MaxCallBytes = 3 << 19 }},
		{"dispatch.on_closed_workflow", func(c *Config) { c.Dispatch.OnClosedWorkflow = OnClosedDLQ }},
		{"dispatch.batch_format", func(c *Config) { c.Dispatch.BatchFormat = BatchFull }},
		{"dispatch.workflow_window_records", func(c *Config) { c.Dispatch.WorkflowWindowRecords = 10000 }},
		{"dispatch.workflow_window_bytes", func(c *Config) { c.Dispatch.WorkflowWindowBytes = 4 << 20 }},
		{"dispatch.call_timeout", func(c *Config) { c.Dispatch.CallTimeout = 10 * time.Second }},
		{"dispatch.retry_initial", func(c *Config) { c.Dispatch.RetryInitial = 100 * time.Millisecond }},
		{"dispatch.retry_max", func(c *Config) { c.Dispatch.RetryMax = 10 * time.Second }},
		{"dispatch.drain_timeout", func(c *Config) { c.Dispatch.DrainTimeout = 10 * time.Second }},
		{"dispatch.coalesce.target_lag", func(c *Config) { c.Dispatch.Coalesce.TargetLag = 200 * time.Millisecond }},
		{"dispatch.coalesce.max_window", func(c *Config) { c.Dispatch.Coalesce.MaxWindow = time.Second }},
		{"dispatch.coalesce.sample_interval", func(c *Config) { c.Dispatch.Coalesce.SampleInterval = 250 * time.Millisecond }},
		{"backpressure.max_records", func(c *Config) { c.Backpressure.MaxRecords = 30000 }},
		{"backpressure.max_bytes", func(c *Config) { c.Backpressure.MaxBytes = 6 << 20 }},
		{"backpressure.resume_at", func(c *Config) { c.Backpressure.ResumeAt = 0.5 }},
		{"backpressure.backlog.poll_interval", func(c *Config) { c.Backpressure.Backlog.PollInterval = 2 * time.Second }},
		{"backpressure.backlog.high_tasks", func(c *Config) { c.Backpressure.Backlog.HighTasks = 10000 }},
		{"backpressure.backlog.low_tasks", func(c *Config) { c.Backpressure.Backlog.LowTasks = c.Backpressure.Backlog.HighTasks / 5 }},
		{"backpressure.backlog.high_age", func(c *Config) { c.Backpressure.Backlog.HighAge = 30 * time.Second }},
		{"backpressure.backlog.low_age", func(c *Config) { c.Backpressure.Backlog.LowAge = c.Backpressure.Backlog.HighAge / 6 }},
		{"backpressure.circuit.failures", func(c *Config) { c.Backpressure.Circuit.Failures = 5 }},
		{"backpressure.circuit.open_for", func(c *Config) { c.Backpressure.Circuit.OpenFor = 5 * time.Second }},
		{"backpressure.adaptive.min_concurrency", func(c *Config) {
			c.Backpressure.Adaptive.MinConcurrency = min(4, c.Dispatch.Concurrency)
		}},
		{"backpressure.adaptive.latency_target", func(c *Config) { c.Backpressure.Adaptive.LatencyTarget = 2 * time.Second }},
		{"memory.soft_limit", func(c *Config) { c.Memory.SoftLimit = 3*int64(c.Backpressure.MaxBytes) + 14<<20 }},
	}
}

// withDefaults fills a route's optional fields; d is the filled dispatch
// section, and concurrencySet says the file set the route's concurrency
// (to 0, which validation then refuses).
func (r Route) withDefaults(d Dispatch, concurrencySet bool) Route {
	if r.Concurrency == 0 && !concurrencySet {
		r.Concurrency = d.Concurrency
	}
	if r.Payload == "" {
		r.Payload = PayloadJSON
	}
	if r.Signal == "" {
		r.Signal = event.DefaultSignal
	}
	return r
}

// fieldIndex returns the reflect index of the field at a YAML path such as
// "backpressure.backlog.low_tasks". It panics on an unknown path: the
// defaults table and the types must agree, which the tests check.
func fieldIndex(path string) []int {
	t := reflect.TypeFor[Config]()
	var index []int
	for name := range strings.SplitSeq(path, ".") {
		f, ok := fieldByYAMLName(t, name)
		if !ok {
			panic("config: no field " + path)
		}
		index = append(index, f.Index...)
		t = f.Type
	}
	return index
}

// fieldByYAMLName finds the field of struct t tagged name.
func fieldByYAMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
