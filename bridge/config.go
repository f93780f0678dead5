package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"
	"go.yaml.in/yaml/v3"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// Config is the bridge's whole configuration, as read from YAML. Fields
// marked Optional take the default shown when left empty.
type Config struct {
	Kafka    KafkaConfig    `yaml:"kafka"`
	Temporal TemporalConfig `yaml:"temporal"`
	DLQ      DLQConfig      `yaml:"dlq"`
	Batch    BatchConfig    `yaml:"batch"`
	Dispatch DispatchConfig `yaml:"dispatch"`
	Routes   []RouteConfig  `yaml:"routes"`
}

// KafkaConfig says which brokers and consumer group to use.
type KafkaConfig struct {
	// Brokers lists bootstrap brokers as host:port. Required.
	Brokers []string `yaml:"brokers"`
	// Group is the consumer group ID. Required.
	Group string `yaml:"group"`
	// ClientID names this client to the brokers. Optional, default "sagabridge".
	ClientID string `yaml:"client_id"`
	// Version is the Kafka protocol version to speak. Optional, default "3.6.0".
	Version string `yaml:"version"`
	// InitialOffset is where a group with no committed offset starts:
	// "oldest" or "newest". Optional, default "oldest".
	InitialOffset string `yaml:"initial_offset"`
}

// TemporalConfig says which Temporal frontend and namespace to use.
type TemporalConfig struct {
	// Address is the frontend's host:port. Optional, default "127.0.0.1:7233".
	Address string `yaml:"address"`
	// Namespace is the Temporal namespace. Optional, default "default".
	Namespace string `yaml:"namespace"`
}

// DLQConfig says where undeliverable records go.
type DLQConfig struct {
	// Suffix is appended to a topic's name to name its DLQ topic.
	// Optional, default ".dlq".
	Suffix string `yaml:"suffix"`
}

// BatchConfig says how records of one partition are gathered before they
// are grouped by workflow and dispatched.
type BatchConfig struct {
	// MaxRecords flushes a batch at this many records. Larger batches give
	// each workflow more events per call when catching up on a backlog (on
	// a 1,000-key backlog, 2,000 records per batch matched pre-batched
	// calls; 500 made twice as many calls). Optional, default 2000.
	MaxRecords int `yaml:"max_records"`
	// MaxBytes flushes a batch at this many bytes of keys and values.
	// Optional, default 2 MiB.
	MaxBytes int `yaml:"max_bytes"`
	// Linger flushes a batch this long after its first record arrived,
	// even if it is not full. Optional, default 5ms.
	Linger time.Duration `yaml:"linger"`
	// MaxInFlight caps the records of one partition that are read but not
	// yet committable; at the cap the partition stops reading. Optional,
	// default 2 × max_records.
	MaxInFlight int `yaml:"max_in_flight"`
}

// The closed-workflow policies: what happens to a record that is new to a
// workflow that has already closed. A record the closed run already applied
// is always skipped.
const (
	// OnClosedDLQ writes the record to the DLQ with class workflow_closed.
	OnClosedDLQ = "dlq"
	// OnClosedDrop drops the record and counts it.
	OnClosedDrop = "drop"
	// OnClosedNewRun starts a new run of the workflow ID with the record.
	OnClosedNewRun = "new_run"
)

// DispatchConfig tunes calls to Temporal.
type DispatchConfig struct {
	// Concurrency is how many SignalWithStart calls may be in flight at
	// once, across all partitions. There is never more than one per
	// workflow. Optional, default 64.
	Concurrency int `yaml:"concurrency"`
	// MaxCallBytes caps the events one call carries; larger groups are
	// split. Temporal rejects payloads over 2 MB. Optional, default 1.5 MiB.
	MaxCallBytes int `yaml:"max_call_bytes"`
	// OnClosedWorkflow is the policy for a new record whose workflow has
	// closed: "dlq", "drop" or "new_run". Optional, default "dlq".
	OnClosedWorkflow string `yaml:"on_closed_workflow"`
	// CallTimeout bounds one SignalWithStart call. Optional, default 10s.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// RetryInitial is the first backoff after a retryable error. Optional, default 100ms.
	RetryInitial time.Duration `yaml:"retry_initial"`
	// RetryMax caps the backoff between retries. Optional, default 10s.
	// Retryable errors (Temporal unavailable, overloaded, timing out) are
	// retried for as long as the bridge runs: during an outage lag grows in
	// Kafka, and nothing goes to the DLQ.
	RetryMax time.Duration `yaml:"retry_max"`
	// DrainTimeout is how long an in-flight call may finish after shutdown
	// or partition revocation begins. Optional, default 10s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// RouteConfig maps records of one topic (optionally of some event types)
// to the workflow that owns them.
type RouteConfig struct {
	// Topic is the Kafka topic to consume. Required.
	Topic string `yaml:"topic"`
	// TypeHeader names the record header that holds the event type.
	// Optional; at most one of TypeHeader and TypeField.
	TypeHeader string `yaml:"type_header"`
	// TypeField names a top-level JSON string field of the value that holds
	// the event type. Optional; needs Payload "json".
	TypeField string `yaml:"type_field"`
	// Types, when set, limits the route to these event types; records of
	// other types go to the DLQ. Several routes may share a topic only if
	// each lists its types and no type appears twice. Optional.
	Types []string `yaml:"types"`
	// Payload is "json" (the value must be valid JSON and is passed as
	// JSON) or "bytes" (passed through untouched). Optional, default "json".
	Payload string `yaml:"payload"`
	// WorkflowType is the workflow type to start. Required.
	WorkflowType string `yaml:"workflow_type"`
	// WorkflowID is the workflow ID template, with placeholders {key},
	// {topic} and {type}, for example "order-{key}". Required.
	WorkflowID string `yaml:"workflow_id"`
	// TaskQueue is the task queue the workflow runs on. Required.
	TaskQueue string `yaml:"task_queue"`
	// Signal is the signal name that carries events. Optional, default "events".
	Signal string `yaml:"signal"`
}

// The payload kinds a route accepts.
const (
	PayloadJSON  = "json"
	PayloadBytes = "bytes"
)

// defaultConfig holds every default in one place.
func defaultConfig() Config {
	return Config{
		Kafka:    KafkaConfig{ClientID: "sagabridge", Version: "3.6.0", InitialOffset: "oldest"},
		Temporal: TemporalConfig{Address: "127.0.0.1:7233", Namespace: "default"},
		DLQ:      DLQConfig{Suffix: dlq.DefaultSuffix},
		Batch:    BatchConfig{MaxRecords: 2000, MaxBytes: 2 << 20, Linger: 5 * time.Millisecond},
		Dispatch: DispatchConfig{
			Concurrency: 64, MaxCallBytes: 3 << 19, OnClosedWorkflow: OnClosedDLQ,
			CallTimeout: 10 * time.Second, RetryInitial: 100 * time.Millisecond,
			RetryMax: 10 * time.Second, DrainTimeout: 10 * time.Second,
		},
	}
}

// routeDefaults fills a route's optional fields.
func routeDefaults(r RouteConfig) RouteConfig {
	if r.Payload == "" {
		r.Payload = PayloadJSON
	}
	if r.Signal == "" {
		r.Signal = event.DefaultSignal
	}
	return r
}

// Override changes a decoded configuration before it is validated, for
// example to apply command-line flags.
type Override func(*Config)

// LoadConfig reads the YAML file at path over the defaults, applies the
// overrides and validates the result. Unknown fields are errors. Every
// error names the file and the field.
func LoadConfig(path string, overrides ...Override) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data, overrides...)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads YAML over the defaults, applies the overrides and
// validates the result.
func ParseConfig(data []byte, overrides ...Override) (Config, error) {
	cfg := defaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	for _, o := range overrides {
		o(&cfg)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// withDefaults fills empty optional fields, including those a YAML file set
// to empty on purpose.
func (c Config) withDefaults() Config {
	d := defaultConfig()
	fill := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	fillDur := func(s *time.Duration, v time.Duration) {
		if *s == 0 {
			*s = v
		}
	}
	fillInt := func(s *int, v int) {
		if *s == 0 {
			*s = v
		}
	}
	fillInt(&c.Batch.MaxRecords, d.Batch.MaxRecords)
	fillInt(&c.Batch.MaxBytes, d.Batch.MaxBytes)
	fillDur(&c.Batch.Linger, d.Batch.Linger)
	fillInt(&c.Batch.MaxInFlight, 2*c.Batch.MaxRecords)
	fillInt(&c.Dispatch.Concurrency, d.Dispatch.Concurrency)
	fillInt(&c.Dispatch.MaxCallBytes, d.Dispatch.MaxCallBytes)
	fill(&c.Dispatch.OnClosedWorkflow, d.Dispatch.OnClosedWorkflow)
	fill(&c.Kafka.ClientID, d.Kafka.ClientID)
	fill(&c.Kafka.Version, d.Kafka.Version)
	fill(&c.Kafka.InitialOffset, d.Kafka.InitialOffset)
	fill(&c.Temporal.Address, d.Temporal.Address)
	fill(&c.Temporal.Namespace, d.Temporal.Namespace)
	fill(&c.DLQ.Suffix, d.DLQ.Suffix)
	fillDur(&c.Dispatch.CallTimeout, d.Dispatch.CallTimeout)
	fillDur(&c.Dispatch.RetryInitial, d.Dispatch.RetryInitial)
	fillDur(&c.Dispatch.RetryMax, d.Dispatch.RetryMax)
	fillDur(&c.Dispatch.DrainTimeout, d.Dispatch.DrainTimeout)
	routes := make([]RouteConfig, len(c.Routes))
	for i, r := range c.Routes {
		routes[i] = routeDefaults(r)
	}
	c.Routes = routes
	return c
}

// FieldError is a configuration error at one field, such as "routes[1].topic".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks every field and returns all problems found, each a *FieldError.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker is required")
	}
	for i, b := range c.Kafka.Brokers {
		if b == "" {
			bad(fmt.Sprintf("kafka.brokers[%d]", i), "must not be empty")
		}
	}
	if c.Kafka.Group == "" {
		bad("kafka.group", "is required")
	}
	if _, err := sarama.ParseKafkaVersion(c.Kafka.Version); err != nil {
		bad("kafka.version", "%q is not a Kafka version: %v", c.Kafka.Version, err)
	}
	if c.Kafka.InitialOffset != "oldest" && c.Kafka.InitialOffset != "newest" {
		bad("kafka.initial_offset", "must be \"oldest\" or \"newest\", not %q", c.Kafka.InitialOffset)
	}
	if c.DLQ.Suffix == "" {
		bad("dlq.suffix", "must not be empty")
	}
	for name, n := range map[string]int{
		"batch.max_records": c.Batch.MaxRecords, "batch.max_bytes": c.Batch.MaxBytes,
		"batch.max_in_flight": c.Batch.MaxInFlight, "dispatch.concurrency": c.Dispatch.Concurrency,
		"dispatch.max_call_bytes": c.Dispatch.MaxCallBytes,
	} {
		if n < 1 {
			bad(name, "must be at least 1")
		}
	}
	if c.Batch.MaxInFlight < c.Batch.MaxRecords {
		bad("batch.max_in_flight", "must be at least batch.max_records (%d)", c.Batch.MaxRecords)
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

func (r RouteConfig) validate(at string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: at + "." + field, Msg: fmt.Sprintf(format, args...)})
	}
	if r.Topic == "" {
		bad("topic", "is required")
	}
	if r.TypeHeader != "" && r.TypeField != "" {
		bad("type_field", "set type_header or type_field, not both")
	}
	switch r.Payload {
	case PayloadJSON:
	case PayloadBytes:
		if r.TypeField != "" {
			bad("type_field", "needs payload %q, the route has %q", PayloadJSON, r.Payload)
		}
	default:
		bad("payload", "must be %q or %q, not %q", PayloadJSON, PayloadBytes, r.Payload)
	}
	if len(r.Types) > 0 && r.TypeHeader == "" && r.TypeField == "" {
		bad("types", "needs type_header or type_field to read the event type from")
	}
	for j, t := range r.Types {
		if t == "" {
			bad(fmt.Sprintf("types[%d]", j), "must not be empty")
		}
	}
	if r.WorkflowType == "" {
		bad("workflow_type", "is required")
	}
	if r.TaskQueue == "" {
		bad("task_queue", "is required")
	}
	if r.WorkflowID == "" {
		bad("workflow_id", "is required")
	} else if _, err := parseTemplate(r.WorkflowID); err != nil {
		bad("workflow_id", "%v", err)
	}
	return errs
}
