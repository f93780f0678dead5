package config

import (
	"time"
)

// Config is the bridge's whole configuration, as read from YAML. Fields
// marked Optional take the default shown when left empty; see Default and
// WithDefaults.
type Config struct {
	Kafka    Kafka    `yaml:"kafka"`
	Temporal Temporal `yaml:"temporal"`
	DLQ      DLQ      `yaml:"dlq"`
	Batch    Batch    `yaml:"batch"`
	Dispatch Dispatch `yaml:"dispatch"`
	// Backpressure bounds what the bridge holds and says when it pauses.
	Backpressure Backpressure `yaml:"backpressure"`
	// Metrics says where /metrics, /healthz and /readyz are served, and
	// whether Go's profiles are too.
	Metrics Metrics `yaml:"metrics"`
	// Log says what the bridge's log lines may show.
	Log Log `yaml:"log"`
	// Memory sets the process's soft memory limit (cmd/bridge applies it).
	Memory Memory  `yaml:"memory"`
	Routes []Route `yaml:"routes"`

	// set holds the paths a file or the environment set explicitly, so a
	// zero set on purpose (low_tasks: 0) is not replaced by its default.
	set map[string]bool
	// defaulted is true once WithDefaults ran.
	defaulted bool
	// envUnknown are SAGABRIDGE_* variables that name no field (FromEnv);
	// decode refuses them unless a *_env field names them.
	envUnknown []string
}

// DLQ says where undeliverable records go.
type DLQ struct {
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
	// CreateTopics creates a DLQ topic that does not exist (one
	// partition, the brokers' default replication) when the bridge starts.
	// Optional, default false: the bridge refuses to start, naming the
	// missing topic, since where brokers do not create topics on their own
	// (the production default) the first poison record would otherwise
	// stall its partition.
	CreateTopics bool `yaml:"create_topics"`
	// MaxMessageBytes is the largest DLQ record the bridge writes; set it
	// to the DLQ topics' max.message.bytes. A dead letter that does not fit
	// is written in reduced form (value dropped, headers trimmed, a header
	// saying so). At least 65536, so a reduced dead letter always fits (a
	// DLQ topic must take that much). Optional, default 1048588 (Kafka's
	// default).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// TransactionalIDPrefix starts the transactional IDs,
	// "<prefix>-<group>-<topic>-<partition>"; keep it stable across
	// restarts. Required with transactional.
	TransactionalIDPrefix string `yaml:"transactional_id_prefix"`
}

// Batch says how records of one partition are gathered before they
// are grouped by workflow and dispatched.
type Batch struct {
	// MaxRecords flushes a batch at this many records. Larger batches give
	// each workflow more events per call when catching up on a backlog (on
	// a 1,000-key backlog, with the other defaults, 0.016-0.018 calls per
	// event against 0.011 for calls grouped ahead; docs/BENCHMARKS.md).
	// Optional, default 2000.
	MaxRecords int `yaml:"max_records"`
	// MaxBytes flushes a batch at this many bytes of keys and values.
	// Optional, default 2 MiB.
	MaxBytes int `yaml:"max_bytes"`
	// Linger flushes a batch this long after its first record arrived,
	// even if it is not full. Optional, default 5ms.
	Linger time.Duration `yaml:"linger"`
	// MaxInFlight caps the records of one partition that are read but not
	// yet committable (from the oldest unfinished record to the newest
	// read); at the cap the partition stops reading. It bounds what a crash
	// or a rebalance redelivers. Optional, default 10 × max_records.
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

// The forms of the batch a signal carries (dispatch.batch_format; event.Batch).
const (
	// BatchFull has every record name its topic, topic ID, partition and key.
	BatchFull = "full"
	// BatchCompact names them once per run of records that share them.
	BatchCompact = "compact"
)

// Dispatch tunes calls to Temporal.
type Dispatch struct {
	// Concurrency is how many SignalWithStart calls may be in flight at
	// once, across all partitions. There is never more than one per
	// workflow, and a workflow whose call waits (for a retry, for its
	// window, for the DLQ) holds none of them. At most 10000. Optional,
	// default 64.
	Concurrency int `yaml:"concurrency"`
	// MaxCallBytes caps the events one call carries; larger groups are
	// split, and a record larger on its own is dead-lettered (class
	// temporal_rejected). Temporal rejects payloads over 2 MB. From 1024 to
	// 2 MiB. Optional, default 1.5 MiB.
	MaxCallBytes int `yaml:"max_call_bytes"`
	// OnClosedWorkflow is the policy for a new record whose workflow has
	// closed: "dlq", "drop" or "new_run". Optional, default "dlq".
	OnClosedWorkflow string `yaml:"on_closed_workflow"`
	// BatchFormat is the JSON form of the batch each signal carries: "full"
	// (every record names its topic, topic ID, partition and key) or
	// "compact" (each run of records that share them names them once:
	// about a third of the bytes for small records, so smaller histories
	// and fewer ContinueAsNew). Workers built before sagabridge read
	// "compact" drop such signals as corrupted: deploy the workers first.
	// Optional, default "full".
	BatchFormat string `yaml:"batch_format"`
	// WorkflowWindowRecords and WorkflowWindowBytes bound what the bridge
	// sends one workflow that it does not know applied: past either, it
	// asks the workflow what it has applied (query sagabridge.applied) and
	// waits until it has caught up, so a workflow that is behind (slow
	// handlers on a hot key) is not flooded with signals it could never
	// carry across ContinueAsNew. Workflows that do not answer the query
	// (not built on workflows.Inbox) are not bounded: once one of a
	// workflow type says it has no such query, the type goes without the
	// bound for 5 minutes, then is asked again. Optional, default
	// 10000 records and 4 MiB (at 1,000 records a hot key of small records
	// waited on the query every few seconds while workflow tasks queued, and
	// was the slowest key; docs/BENCHMARKS.md).
	WorkflowWindowRecords int `yaml:"workflow_window_records"`
	WorkflowWindowBytes   int `yaml:"workflow_window_bytes"`
	// CallTimeout bounds one SignalWithStart call, one read of a closed
	// workflow's memo, and one write to the DLQ (a write given up on
	// counts as a failing DLQ, and may still land). Optional, default 10s.
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
	// Coalesce widens a dispatch window while workflow tasks wait to start.
	Coalesce Coalesce `yaml:"coalesce"`
}

// Coalesce sets the dispatch window that follows how long workflow tasks
// wait to start. SignalWithStart returns before a worker applies the
// signal, so when the workers fall behind every extra call is one more
// queued workflow task. Each routed task queue has its own window: four
// times a second (SampleInterval) the bridge reads the pending task of a
// workflow of that task queue it signalled at least TargetLag ago, and
// the age of the task queue's backlog. While that wait exceeds both
// TargetLag and half the window two samples in a row, the window widens
// (at once to at least the wait, then by half, up to MaxWindow; one such
// sample opens a closed window at 10ms and holds an open one); while it
// is under half of the larger of the two it narrows, by a quarter, or by
// a sixty-fourth within 1.5 times the window at which tasks last began to
// wait (if that is under two thirds of MaxWindow) while the calls per
// second stay over half of what they were then, and closes below 10ms. A
// workflow's records wait up to the window for more of its records, all
// sent in one call; dead letters never wait. The windows are exported as
// sagabridge_task_queue_dispatch_window_seconds, the widest as
// sagabridge_dispatch_window_seconds.
type Coalesce struct {
	// TargetLag is the workflow-task wait above which the window opens: a
	// sampled wait over it (and over half the window) opens a closed window
	// at 10ms and holds an open one; two in a row widen it. Optional,
	// default 200ms.
	TargetLag time.Duration `yaml:"target_lag"`
	// MaxWindow caps the window; 0s turns coalescing off. Optional,
	// default 1s.
	MaxWindow time.Duration `yaml:"max_window"`
	// SampleInterval is how often a workflow's pending task is read
	// (DescribeWorkflowExecution); each read may take four intervals, and
	// at least a second. At least 10ms. Optional, default 250ms.
	SampleInterval time.Duration `yaml:"sample_interval"`
}

// Backpressure bounds the records the bridge holds and says when it
// stops fetching. Fetching pauses (sarama's Pause) while any reason holds
// and resumes by itself when all have cleared; meanwhile lag grows in
// Kafka, never in the bridge's memory.
type Backpressure struct {
	// MaxRecords caps records read and not yet accepted by Temporal or
	// written to the DLQ, across all partitions. At the cap every
	// partition pauses. When the routes use n > 1 sets of targets
	// (namespace and task queues of a topic's routes), each set's topics
	// may hold only 1/n of it, and pause alone at that, so a target that
	// stops answering cannot hold what the others need; raise the budget
	// n-fold to keep each set's read-ahead. The budget also bounds how many of a key's records
	// one call can carry while a backlog drains: 30,000 records and 6 MiB
	// made 0.016 calls per event on a 1,000-key backlog against 0.019 for
	// 20,000 and 4 MiB, and kept RSS under 64 MB (docs/BENCHMARKS.md).
	// Optional, default 30000.
	MaxRecords int `yaml:"max_records"`
	// MaxBytes caps the bytes of those records (key, value, headers and
	// an estimate of the envelope); at least 65536. Optional, default
	// 6 MiB.
	MaxBytes int `yaml:"max_bytes"`
	// ResumeAt is the low-water mark, as a fraction of MaxRecords and
	// MaxBytes, below which paused partitions resume. Optional, default 0.5.
	ResumeAt float64 `yaml:"resume_at"`
	// Backlog pauses the topics that feed a backed-up task queue.
	Backlog Backlog `yaml:"backlog"`
	// Circuit stops calls to Temporal while it keeps failing.
	Circuit Circuit `yaml:"circuit"`
	// Adaptive adjusts dispatch concurrency to Temporal's latency and errors.
	Adaptive Adaptive `yaml:"adaptive"`
}

// Backlog watches each routed task queue's workflow-task backlog
// (DescribeTaskQueue with ReportStats) and pauses the partitions of the
// topics that route to it while it is above the high-water mark. A topic
// that routes to several task queues pauses when any of them is backed up.
type Backlog struct {
	// Disabled turns the backlog check off. Optional, default false.
	Disabled bool `yaml:"disabled"`
	// PollInterval is how often each task queue is described. Optional, default 2s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// HighTasks pauses at this many backlogged workflow tasks, once the
	// oldest of them has waited a second (the count is approximate and
	// lags: beside tasks that start at once it is stale). Optional,
	// default 10000.
	HighTasks int64 `yaml:"high_tasks"`
	// LowTasks resumes at or below this many. Optional, default HighTasks/5.
	LowTasks int64 `yaml:"low_tasks"`
	// HighAge pauses when the oldest backlogged task is this old. Optional, default 30s.
	HighAge time.Duration `yaml:"high_age"`
	// LowAge resumes when it is at most this old. Optional, default HighAge/6.
	LowAge time.Duration `yaml:"low_age"`
}

// Circuit is the circuit breakers around calls to Temporal, one per route
// target (namespace and task queue; routes that share a target share its
// circuit). A circuit opens after Failures consecutive retryable failures
// (Unavailable, ResourceExhausted, timeouts) of calls to its target, or at
// once when Temporal refuses the bridge (credentials, namespace); while
// open no call is made to the target, its workflows hold no dispatch
// worker, and the partitions of the topics that route to it pause (a
// partition whose topic also routes elsewhere pauses too, so per-partition
// order holds). Topics routed only to other targets keep flowing. After
// OpenFor one probe call is let through: success closes the circuit,
// failure opens it again.
type Circuit struct {
	// Failures is how many consecutive failures open the circuit, at most
	// 10,000. Optional, default 5.
	Failures int `yaml:"failures"`
	// OpenFor is how long the circuit stays open before probing. Optional, default 5s.
	OpenFor time.Duration `yaml:"open_for"`
}

// Adaptive is the AIMD concurrency limit on calls to Temporal: it
// grows by one call per round of successful calls up to
// dispatch.concurrency and shrinks by a quarter when a call fails with a
// retryable error or takes longer than LatencyTarget.
type Adaptive struct {
	// MinConcurrency is the floor of the limit. Optional, default 4 (or
	// dispatch.concurrency if lower). Set it to dispatch.concurrency to
	// turn adaptation off.
	MinConcurrency int `yaml:"min_concurrency"`
	// LatencyTarget is the call latency above which the limit shrinks.
	// Optional, default 2s.
	LatencyTarget time.Duration `yaml:"latency_target"`
}

// Metrics says where the bridge serves Prometheus metrics
// (/metrics) and its health (/healthz) and readiness (/readyz).
type Metrics struct {
	// Listen is the host:port to serve on, for example "127.0.0.1:9464".
	// A wildcard host (":9464", "0.0.0.0", "::") serves every interface,
	// and cmd/bridge logs a warning saying so. Optional; empty serves
	// nothing.
	Listen string `yaml:"listen"`
	// Pprof also serves Go's profiles (net/http/pprof: /debug/pprof/ and
	// its cmdline, profile, symbol and trace handlers) with the metrics
	// (Bridge.Handler, which cmd/bridge serves on Listen). They show the
	// command line, stacks and heap, and cost CPU while a profile runs:
	// turn them on only where Listen is private. Optional, default false
	// (they answer 404).
	Pprof bool `yaml:"pprof"`
}

// Log says what the bridge's log lines may show. Record values are never
// logged; record keys are, inside the workflow IDs made from them (the
// attribute workflow_id). The level is cmd/bridge's -log-level flag.
type Log struct {
	// RedactKeys replaces every workflow ID and record key in the bridge's
	// log lines (the attributes workflow_id and key, and the same text
	// anywhere else on the line, such as an error that names the workflow)
	// with "sha256:" and the first 12 hex digits of its SHA-256, so the
	// lines of one key still correlate.
	// A hash of a guessable key (a sequence number) can be reversed by
	// hashing guesses. The DLQ records and the metrics are not logs and
	// are unchanged. Optional, default false.
	RedactKeys bool `yaml:"redact_keys"`
}

// Memory is the Go runtime's soft memory limit for cmd/bridge. The
// in-flight budget bounds what the bridge holds; the limit makes the
// garbage collector return the rest instead of letting the heap grow to
// twice what is live. A library user sets it (or GOMEMLIMIT) in their own
// main; the Bridge type never changes process-wide settings.
type Memory struct {
	// SoftLimit is the limit in bytes (runtime/debug.SetMemoryLimit).
	// GOMEMLIMIT in the environment takes precedence. Optional, default
	// 3 × backpressure.max_bytes + 14 MiB (32 MiB with the default budget;
	// 4 × + 16 MiB let catch-up RSS reach 64.6 MiB); -1 leaves the
	// runtime's default. Otherwise at least backpressure.max_bytes.
	SoftLimit int64 `yaml:"soft_limit"`
}

// Route maps records of one topic (optionally of some event types)
// to the workflow that owns them.
type Route struct {
	// Topic is the Kafka topic to consume. Required. It must exist when
	// the bridge starts, which refuses to start otherwise and never
	// creates it.
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
	// WorkflowType is the workflow type to start, at most 1000 bytes
	// (Temporal's default limit.maxIDLength). Required.
	WorkflowType string `yaml:"workflow_type"`
	// WorkflowID is the workflow ID template, with placeholders {key},
	// {topic}, {type}, {json:field} (a top-level string or number field of
	// the JSON value; needs payload "json") and {header:name}, for example
	// "order-{key}", or "order-{json:order_id}" where the key is a
	// customer ID. A record whose placeholder is empty or missing goes to
	// the DLQ (class route), and so does one whose ID is over 1000 bytes;
	// the shortest ID the template can make (its text, the topic's name
	// for {topic} and a byte for each other placeholder) must fit, and its
	// text must be valid UTF-8 without control characters (a YAML block
	// scalar ends in a newline). Values are put in as they are: two
	// placeholders need text between them, and one that cannot appear in
	// the values ("{header:tenant}/{key}" where tenants have no "/"), or
	// tenant "acme" key "b-42" and tenant "acme-b" key "42" share
	// "acme-b-42". Required.
	WorkflowID string `yaml:"workflow_id"`
	// TaskQueue is the task queue the workflow runs on, at most 1000
	// bytes. Required.
	TaskQueue string `yaml:"task_queue"`
	// Signal is the signal name that carries events, at most 1000 bytes.
	// Optional, default "events".
	Signal string `yaml:"signal"`
	// Name names the route in logs and to a Go routing function
	// (bridge.WithRouteFunc, for library users: the function then names
	// each record's workflow and workflow_id is not used, though still
	// required). Optional; unique among the routes; letters, digits, '.',
	// '_' and '-'.
	Name string `yaml:"name"`
	// Concurrency is the share of dispatch.concurrency this route's
	// records may use: the most calls to Temporal they have in flight at
	// once, each holding a dispatch worker while it calls. Workers take
	// ready workflows from the routes in turn, so a busy route never makes
	// another wait behind its whole queue; a call that must wait (a retry's
	// backoff, a workflow past its window, a route whose circuit is open)
	// holds no worker meanwhile. Optional, default
	// dispatch.concurrency (the route may use every worker the others
	// leave idle); at most dispatch.concurrency.
	Concurrency int `yaml:"concurrency"`
	// RunTimeout is the workflow run timeout of the workflows this route
	// starts (each run, so a workflow that continues as new gets it again).
	// Like every start option below it applies only when a call starts the
	// workflow, never to one already running. Optional, default none.
	RunTimeout time.Duration `yaml:"run_timeout"`
	// ExecutionTimeout is the workflow execution timeout of the workflows
	// this route starts, across runs (ContinueAsNew). Optional, default
	// none; at least run_timeout when both are set.
	ExecutionTimeout time.Duration `yaml:"execution_timeout"`
	// Memo is set on every workflow the route starts, as given (strings,
	// numbers, lists, maps). The key "sagabridge.applied" is the bridge's
	// own. Optional.
	Memo map[string]any `yaml:"memo"`
	// SearchAttributes are set on every workflow the route starts, by name,
	// each with its type: for example {CustomerTier: {type: keyword, value:
	// gold}}. The names must be registered in the namespace with these
	// types; the bridge checks them at start. Optional.
	SearchAttributes map[string]SearchAttribute `yaml:"search_attributes"`
}

// SearchAttribute is one typed search attribute a route sets at start.
type SearchAttribute struct {
	// Type is the attribute's type as registered in the namespace:
	// keyword, text, int, double, bool, datetime or keyword_list. Required.
	Type string `yaml:"type"`
	// Value is the attribute's value: a string (keyword, text; datetime in
	// RFC 3339), an integer (int), a number (double), true or false
	// (bool), or a list of strings (keyword_list). Required.
	Value any `yaml:"value"`
}

// The payload kinds a route accepts.
const (
	PayloadJSON  = "json"
	PayloadBytes = "bytes"
)
