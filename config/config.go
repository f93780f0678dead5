package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

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
	// Backpressure bounds what the bridge holds and says when it pauses.
	Backpressure BackpressureConfig `yaml:"backpressure"`
	// Metrics says where /metrics, /healthz and /readyz are served.
	Metrics MetricsConfig `yaml:"metrics"`
	// Memory sets the process's soft memory limit (cmd/bridge applies it).
	Memory MemoryConfig  `yaml:"memory"`
	Routes []RouteConfig `yaml:"routes"`
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
	// TLS and SASL secure the connections to the brokers (security.go).
	// Optional, default plaintext without authentication.
	TLS  TLSConfig       `yaml:"tls"`
	SASL KafkaSASLConfig `yaml:"sasl"`
}

// TemporalConfig says which Temporal frontend and namespace to use, and
// how to connect to it (temporalconn.go).
type TemporalConfig struct {
	// Address is the frontend's host:port. Optional, default "127.0.0.1:7233".
	Address string `yaml:"address"`
	// Namespace is the Temporal namespace. Optional, default "default".
	Namespace string `yaml:"namespace"`
	// TLS to the frontend; with cert_file and key_file, mutual TLS.
	// Optional, default plaintext.
	TLS TLSConfig `yaml:"tls"`
	// APIKeyEnv or APIKeyFile hold an API key (Temporal Cloud), sent as a
	// bearer token; at most one. Optional. Needs TLS.
	APIKeyEnv  string `yaml:"api_key_env"`
	APIKeyFile string `yaml:"api_key_file"`
	// Codec encrypts payloads at rest in Temporal. Optional, default off.
	Codec CodecConfig `yaml:"codec"`
}

// CodecConfig is AES-256-GCM payload encryption (package codec). The
// bridge, the workers and the codec server need the same key.
type CodecConfig struct {
	// KeyEnv or KeyFile hold the 32-byte key in base64 (`head -c 32
	// /dev/urandom | base64`); one of them turns encryption on.
	KeyEnv  string `yaml:"key_env"`
	KeyFile string `yaml:"key_file"`
	// KeyID names the key in each payload, for rotation. Optional,
	// default "default".
	KeyID string `yaml:"key_id"`
	// DecryptKeys are older keys that decrypt payloads they encrypted but
	// never encrypt, for rotation: "ID=file:PATH" or "ID=env:VARIABLE",
	// with the key in base64 as for the key. Optional.
	DecryptKeys []string `yaml:"decrypt_keys"`
}

// DLQConfig says where undeliverable records go.
type DLQConfig struct {
	// Suffix is appended to a topic's name to name its DLQ topic.
	// Optional, default ".dlq".
	Suffix string `yaml:"suffix"`
	// Transactional commits each partition's offsets in Kafka
	// transactions, with its DLQ records in the transaction whose offset
	// passes them: a dead letter and its offset commit are atomic, so a
	// crash neither loses one nor writes it twice (read the DLQ with
	// read_committed). Uses one transactional producer per claimed
	// partition and eager rebalancing. Optional, default false.
	Transactional bool `yaml:"transactional"`
	// TransactionalIDPrefix starts the transactional IDs,
	// "<prefix>-<group>-<topic>-<partition>"; keep it stable across
	// restarts. Required with transactional.
	TransactionalIDPrefix string `yaml:"transactional_id_prefix"`
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

// BackpressureConfig bounds the records the bridge holds and says when it
// stops fetching. Fetching pauses (sarama's Pause) while any reason holds
// and resumes by itself when all have cleared; meanwhile lag grows in
// Kafka, never in the bridge's memory.
type BackpressureConfig struct {
	// MaxRecords caps records read and not yet accepted by Temporal or
	// written to the DLQ, across all partitions. At the cap every
	// partition pauses. Optional, default 20000.
	MaxRecords int `yaml:"max_records"`
	// MaxBytes caps the bytes of those records (key, value, headers and
	// an estimate of the envelope). Optional, default 4 MiB.
	MaxBytes int `yaml:"max_bytes"`
	// ResumeAt is the low-water mark, as a fraction of MaxRecords and
	// MaxBytes, below which paused partitions resume. Optional, default 0.5.
	ResumeAt float64 `yaml:"resume_at"`
	// Backlog pauses the topics that feed a backed-up task queue.
	Backlog BacklogConfig `yaml:"backlog"`
	// Circuit stops calls to Temporal while it keeps failing.
	Circuit CircuitConfig `yaml:"circuit"`
	// Adaptive adjusts dispatch concurrency to Temporal's latency and errors.
	Adaptive AdaptiveConfig `yaml:"adaptive"`
}

// BacklogConfig watches each routed task queue's workflow-task backlog
// (DescribeTaskQueue with ReportStats) and pauses the partitions of the
// topics that route to it while it is above the high-water mark. A topic
// that routes to several task queues pauses when any of them is backed up.
type BacklogConfig struct {
	// Disabled turns the backlog check off. Optional, default false.
	Disabled bool `yaml:"disabled"`
	// PollInterval is how often each task queue is described. Optional, default 2s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// HighTasks pauses at this many backlogged workflow tasks. Optional, default 10000.
	HighTasks int64 `yaml:"high_tasks"`
	// LowTasks resumes at or below this many. Optional, default HighTasks/5.
	LowTasks int64 `yaml:"low_tasks"`
	// HighAge pauses when the oldest backlogged task is this old. Optional, default 30s.
	HighAge time.Duration `yaml:"high_age"`
	// LowAge resumes when it is at most this old. Optional, default HighAge/6.
	LowAge time.Duration `yaml:"low_age"`
}

// CircuitConfig is the circuit breaker around calls to Temporal. It opens
// after Failures consecutive retryable failures (Unavailable,
// ResourceExhausted, timeouts); while open no call is made and every
// partition pauses. After OpenFor one probe call is let through: success
// closes the circuit, failure opens it again.
type CircuitConfig struct {
	// Failures is how many consecutive failures open the circuit. Optional, default 5.
	Failures int `yaml:"failures"`
	// OpenFor is how long the circuit stays open before probing. Optional, default 5s.
	OpenFor time.Duration `yaml:"open_for"`
}

// AdaptiveConfig is the AIMD concurrency limit on calls to Temporal: it
// grows by one call per round of successful calls up to
// dispatch.concurrency and shrinks by a quarter when a call fails with a
// retryable error or takes longer than LatencyTarget.
type AdaptiveConfig struct {
	// MinConcurrency is the floor of the limit. Optional, default 4 (or
	// dispatch.concurrency if lower). Set it to dispatch.concurrency to
	// turn adaptation off.
	MinConcurrency int `yaml:"min_concurrency"`
	// LatencyTarget is the call latency above which the limit shrinks.
	// Optional, default 2s.
	LatencyTarget time.Duration `yaml:"latency_target"`
}

// MetricsConfig says where the bridge serves Prometheus metrics
// (/metrics) and its health (/healthz) and readiness (/readyz).
type MetricsConfig struct {
	// Listen is the host:port to serve on, for example "127.0.0.1:9464".
	// Optional; empty serves nothing.
	Listen string `yaml:"listen"`
}

// MemoryConfig is the Go runtime's soft memory limit for cmd/bridge. The
// in-flight budget bounds what the bridge holds; the limit makes the
// garbage collector return the rest instead of letting the heap grow to
// twice what is live. A library user sets it (or GOMEMLIMIT) in their own
// main; the Bridge type never changes process-wide settings.
type MemoryConfig struct {
	// SoftLimit is the limit in bytes (runtime/debug.SetMemoryLimit).
	// GOMEMLIMIT in the environment takes precedence. Optional, default
	// 4 × backpressure.max_bytes + 16 MiB; -1 leaves the runtime's default.
	SoftLimit int64 `yaml:"soft_limit"`
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
		Backpressure: BackpressureConfig{
			MaxRecords: 20000, MaxBytes: 4 << 20, ResumeAt: 0.5,
			Backlog:  BacklogConfig{PollInterval: 2 * time.Second, HighTasks: 10000, HighAge: 30 * time.Second},
			Circuit:  CircuitConfig{Failures: 5, OpenFor: 5 * time.Second},
			Adaptive: AdaptiveConfig{MinConcurrency: 4, LatencyTarget: 2 * time.Second},
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
	cfg, err := decodeConfig(data, overrides)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// decodeConfig reads YAML over the defaults (unknown fields are errors; an
// empty document sets nothing), applies overrides, then fills what is still
// unset.
func decodeConfig(data []byte, overrides []Override) (Config, error) {
	cfg := defaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	for _, o := range overrides {
		o(&cfg)
	}
	return cfg.withDefaults(), nil
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
	bp, dbp := &c.Backpressure, d.Backpressure
	fillInt(&bp.MaxRecords, dbp.MaxRecords)
	fillInt(&bp.MaxBytes, dbp.MaxBytes)
	if bp.ResumeAt == 0 {
		bp.ResumeAt = dbp.ResumeAt
	}
	fillDur(&bp.Backlog.PollInterval, dbp.Backlog.PollInterval)
	if bp.Backlog.HighTasks == 0 {
		bp.Backlog.HighTasks = dbp.Backlog.HighTasks
	}
	if bp.Backlog.LowTasks == 0 {
		bp.Backlog.LowTasks = bp.Backlog.HighTasks / 5
	}
	fillDur(&bp.Backlog.HighAge, dbp.Backlog.HighAge)
	fillDur(&bp.Backlog.LowAge, bp.Backlog.HighAge/6)
	fillInt(&bp.Circuit.Failures, dbp.Circuit.Failures)
	fillDur(&bp.Circuit.OpenFor, dbp.Circuit.OpenFor)
	fillInt(&bp.Adaptive.MinConcurrency, min(dbp.Adaptive.MinConcurrency, c.Dispatch.Concurrency))
	fillDur(&bp.Adaptive.LatencyTarget, dbp.Adaptive.LatencyTarget)
	if c.Memory.SoftLimit == 0 {
		c.Memory.SoftLimit = 4*int64(bp.MaxBytes) + 16<<20
	}
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
