package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/codec"
	"github.com/sagabridge/sagabridge/internal/secretname"
)

// RebalanceTimeout is how long sarama waits for a revoked claim's handler to
// return, and how long the broker may hold a JoinGroup for members that have
// not rejoined. dispatch.drain_timeout must stay below it, so an in-flight
// call never outlives the claim and races the partition's next owner. It
// must also stay below sarama's Net.ReadTimeout (30 s): sarama reads the
// JoinGroup response with that deadline, so with sarama's defaults (60 s
// rebalance) a rebalance that waits on a crashed member times out on the
// client, over and over.
const RebalanceTimeout = 20 * time.Second

// MaxPayloadBytes is Temporal's default limit on one payload (2 MiB).
const MaxPayloadBytes = 2 << 20

// FieldError is a configuration error at one field, such as "routes[1].topic".
type FieldError struct {
	// Field is the field's path in the file, such as "dlq.suffix".
	Field string
	// Msg says what is wrong with it.
	Msg string
}

// Error returns "field: message".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// maxCircuitFailures bounds backpressure.circuit.failures.
const maxCircuitFailures = 10_000

// maxConcurrency bounds dispatch.concurrency.
const maxConcurrency = 10_000

// minSampleInterval bounds dispatch.coalesce.sample_interval from below.
const minSampleInterval = 10 * time.Millisecond

// validateConnections checks what the bridge and the worker both need to
// reach Kafka and Temporal (LoadConnections checks only this).
func (c Config) validateConnections(bad func(field, format string, args ...any)) {
	c.validateKafkaConnection(bad)
	c.Temporal.validate(bad)
	c.validateDLQWrites(bad)
}

// validateKafkaConnection checks what reaching Kafka needs: the kafka
// section's brokers, client ID, instance ID, timeout, version, TLS and
// SASL (LoadForKafkaTools checks only this and the DLQ's topics).
func (c Config) validateKafkaConnection(bad func(field, format string, args ...any)) {
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker is required")
	}
	for i, b := range c.Kafka.Brokers {
		if b == "" {
			bad(fmt.Sprintf("kafka.brokers[%d]", i), "must not be empty")
		} else if err := hostPort(b); err != nil {
			bad(fmt.Sprintf("kafka.brokers[%d]", i), "%q: %v", b, err)
		}
	}
	unpadded(bad, "kafka.client_id", c.Kafka.ClientID)
	if id := c.Kafka.InstanceID; id != "" && (id == "." || id == ".." || len(id) > 249 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "") {
		bad("kafka.instance_id", "%q: use up to 249 letters, digits, '.', '_' and '-' (not \".\" or \"..\")", id)
	}
	if c.Kafka.ConnectTimeout <= 0 {
		bad("kafka.connect_timeout", "must be positive")
	}
	if v, err := sarama.ParseKafkaVersion(c.Kafka.Version); err != nil {
		bad("kafka.version", "%q is not a Kafka version: %v", c.Kafka.Version, err)
	} else if !v.IsAtLeast(sarama.V2_4_0_0) {
		bad("kafka.version", "%s is older than 2.4.0, which the bridge's and the worker's clients need (cooperative-sticky rebalancing, KIP-429)", c.Kafka.Version)
	}
	c.Kafka.validateSecurity(bad)
}

// validateGroupReading checks how the group reads: its name, where it
// starts and its isolation level (the offsets tool reads as it does).
func (c Config) validateGroupReading(bad func(field, format string, args ...any)) {
	// Names matched exactly: padded (a ConfigMap value's trailing newline),
	// the bridge would join another group, with no committed offsets.
	unpadded(bad, "kafka.group", c.Kafka.Group)
	if c.Kafka.InitialOffset != "oldest" && c.Kafka.InitialOffset != "newest" {
		bad("kafka.initial_offset", "must be \"oldest\" or \"newest\", not %q", c.Kafka.InitialOffset)
	}
	if c.Kafka.IsolationLevel != ReadCommitted && c.Kafka.IsolationLevel != ReadUncommitted {
		bad("kafka.isolation_level", "must be %q or %q, not %q", ReadCommitted, ReadUncommitted, c.Kafka.IsolationLevel)
	}
}

// validateDLQWrites checks where and how large dead letters are written:
// the bridge's and the worker's (activities.DeadLetterer) alike.
func (c Config) validateDLQWrites(bad func(field, format string, args ...any)) {
	if c.DLQ.MaxMessageBytes < 64<<10 {
		bad("dlq.max_message_bytes", "must be at least 65536, so a reduced dead letter always fits")
	}
	if c.DLQ.Suffix == "" {
		bad("dlq.suffix", "must not be empty")
	} else if !legalTopic("a" + c.DLQ.Suffix) {
		bad("dlq.suffix", "%q makes DLQ topic names Kafka refuses: use letters, digits, '.', '_' and '-'", c.DLQ.Suffix)
	}
}

// Validate checks every field of a configuration whose defaults are filled
// and returns all problems found, each a *FieldError.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	c.validateConnections(bad)
	if c.Kafka.Group == "" {
		bad("kafka.group", "is required")
	}
	c.validateGroupReading(bad)
	unpadded(bad, "dlq.transactional_id_prefix", c.DLQ.TransactionalIDPrefix)
	if c.DLQ.Transactional {
		if c.DLQ.TransactionalIDPrefix == "" {
			bad("dlq.transactional_id_prefix", "is required with dlq.transactional, and must stay the same across restarts")
		}
		if c.Kafka.IsolationLevel != ReadCommitted {
			bad("kafka.isolation_level", "must be %q with dlq.transactional: the partitions' offsets are read with require_stable, and the DLQ with read_committed", ReadCommitted)
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
		"dispatch.max_call_bytes":          c.Dispatch.MaxCallBytes,
		"dispatch.workflow_window_records": c.Dispatch.WorkflowWindowRecords,
		"dispatch.workflow_window_bytes":   c.Dispatch.WorkflowWindowBytes,
		"backpressure.max_records":         c.Backpressure.MaxRecords, "backpressure.max_bytes": c.Backpressure.MaxBytes,
		"backpressure.circuit.failures":         c.Backpressure.Circuit.Failures,
		"backpressure.adaptive.min_concurrency": c.Backpressure.Adaptive.MinConcurrency,
	} {
		if n < 1 {
			bad(name, "must be at least 1")
		}
	}
	if c.Backpressure.Circuit.Failures > maxCircuitFailures {
		bad("backpressure.circuit.failures", "must be at most %d: a circuit that never opens retries every record against a Temporal that does not answer, and the bridge trips each circuit at start with as many calls", maxCircuitFailures)
	}
	if c.Batch.MaxInFlight < c.Batch.MaxRecords {
		bad("batch.max_in_flight", "must be at least batch.max_records (%d)", c.Batch.MaxRecords)
	}
	bp := c.Backpressure
	if bp.MaxRecords < c.Batch.MaxRecords {
		bad("backpressure.max_records", "must be at least batch.max_records (%d), or a batch could never fill", c.Batch.MaxRecords)
	}
	if c.Memory.SoftLimit < -1 || c.Memory.SoftLimit == 0 {
		bad("memory.soft_limit", "must be a number of bytes, or -1 for the runtime's default")
	} else if c.Memory.SoftLimit > 0 && c.Memory.SoftLimit < int64(bp.MaxBytes) {
		bad("memory.soft_limit", "must be at least backpressure.max_bytes (%d): it is a number of bytes, and under the records the bridge holds the garbage collector would run without pause", bp.MaxBytes)
	}
	if bp.MaxBytes >= 1 && bp.MaxBytes < 64<<10 {
		bad("backpressure.max_bytes", "must be at least 65536: it is a number of bytes, and a budget smaller than a few records pauses every partition")
	}
	if !(bp.ResumeAt > 0 && bp.ResumeAt < 1) { // NaN too, which compares false with everything
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
	if c.Dispatch.MaxCallBytes > MaxPayloadBytes {
		bad("dispatch.max_call_bytes", "must not exceed Temporal's payload limit of %d bytes", MaxPayloadBytes)
	} else if c.Dispatch.MaxCallBytes >= 1 && c.Dispatch.MaxCallBytes < 1<<10 {
		bad("dispatch.max_call_bytes", "must be at least 1024: a record larger than it is dead-lettered, and every record's envelope alone is a few hundred bytes")
	}
	switch c.Dispatch.OnClosedWorkflow {
	case OnClosedDLQ, OnClosedDrop, OnClosedNewRun:
	default:
		bad("dispatch.on_closed_workflow", "must be %q, %q or %q, not %q", OnClosedDLQ, OnClosedDrop, OnClosedNewRun, c.Dispatch.OnClosedWorkflow)
	}
	switch c.Dispatch.BatchFormat {
	case BatchFull, BatchCompact:
	default:
		bad("dispatch.batch_format", "must be %q or %q, not %q", BatchFull, BatchCompact, c.Dispatch.BatchFormat)
	}
	for name, d := range map[string]time.Duration{
		"batch.linger": c.Batch.Linger, "dispatch.drain_timeout": c.Dispatch.DrainTimeout,
		"backpressure.backlog.low_age": c.Backpressure.Backlog.LowAge,
		"dispatch.coalesce.max_window": c.Dispatch.Coalesce.MaxWindow,
	} {
		if d < 0 {
			bad(name, "must not be negative")
		}
	}
	for name, d := range map[string]time.Duration{
		"dispatch.call_timeout": c.Dispatch.CallTimeout, "dispatch.retry_initial": c.Dispatch.RetryInitial,
		"dispatch.retry_max":                   c.Dispatch.RetryMax,
		"dispatch.coalesce.target_lag":         c.Dispatch.Coalesce.TargetLag,
		"dispatch.coalesce.sample_interval":    c.Dispatch.Coalesce.SampleInterval,
		"backpressure.backlog.poll_interval":   c.Backpressure.Backlog.PollInterval,
		"backpressure.backlog.high_age":        c.Backpressure.Backlog.HighAge,
		"backpressure.circuit.open_for":        c.Backpressure.Circuit.OpenFor,
		"backpressure.adaptive.latency_target": c.Backpressure.Adaptive.LatencyTarget,
	} {
		if d <= 0 {
			bad(name, "must be positive")
		}
	}
	if si := c.Dispatch.Coalesce.SampleInterval; si > 0 && si < minSampleInterval {
		bad("dispatch.coalesce.sample_interval", "must be at least %s, not %s: each sample is a DescribeWorkflowExecution", minSampleInterval, si)
	}
	if c.Dispatch.Concurrency > maxConcurrency {
		bad("dispatch.concurrency", "must be at most %d, not %d: each is a worker of its own, and Temporal's frontend limits the calls per second long before", maxConcurrency, c.Dispatch.Concurrency)
	}
	if c.Dispatch.RetryMax < c.Dispatch.RetryInitial {
		bad("dispatch.retry_max", "must be at least dispatch.retry_initial (%s)", c.Dispatch.RetryInitial)
	}
	if c.Dispatch.DrainTimeout >= RebalanceTimeout {
		bad("dispatch.drain_timeout", "must be below the rebalance timeout (%s), or a call could outlive its partition", RebalanceTimeout)
	}
	if len(c.Routes) == 0 {
		bad("routes", "at least one route is required")
	}
	errs = append(errs, ValidateRoutes(c.Routes, c.DLQ.Suffix)...)
	for i, r := range c.Routes {
		if r.Concurrency > c.Dispatch.Concurrency {
			bad(fmt.Sprintf("routes[%d].concurrency", i), "must not exceed dispatch.concurrency (%d)", c.Dispatch.Concurrency)
		}
	}
	if l := c.Metrics.Listen; l != "" {
		// Checked here, not when the server starts after the Temporal
		// client and the producers; an empty host serves every interface.
		// as net.Listen takes it: an empty port or 0 is any free one, and a
		// service name (http) its port.
		if _, port, err := net.SplitHostPort(l); err != nil {
			bad("metrics.listen", "want host:port, such as 127.0.0.1:9464: %v", err)
		} else if _, err := net.LookupPort("tcp", port); port != "" && err != nil {
			bad("metrics.listen", "the port %q is not a number from 0 to 65535 nor a service name", port)
		}
	}
	return errors.Join(errs...)
}

// validate checks a TLS section named prefix ("kafka.tls").
func (t TLS) validate(prefix string, bad func(field, format string, args ...any)) {
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		bad(prefix+".enabled", "must be true when other %s fields are set", prefix)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad(prefix+".cert_file", "cert_file and key_file go together")
	}
	for field, path := range map[string]string{prefix + ".ca_file": t.CAFile, prefix + ".cert_file": t.CertFile, prefix + ".key_file": t.KeyFile} {
		if path != "" {
			if _, err := os.Stat(path); err != nil {
				if field == prefix+".key_file" {
					err = secretname.FileError(err) // the key itself may stand where its path goes
				}
				bad(field, "%v", err)
			}
		}
	}
}

// validateSecurity checks kafka.tls and kafka.sasl; bad names the field.
func (k Kafka) validateSecurity(bad func(field, format string, args ...any)) {
	t := k.TLS
	t.validate("kafka.tls", bad)
	s := k.SASL
	if s.Mechanism == "" {
		if s.Username != "" || s.Password != "" || s.PasswordEnv != "" || s.PasswordFile != "" {
			bad("kafka.sasl.mechanism", "is required when other kafka.sasl fields are set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return
	}
	if !slices.Contains(saslMechanisms(), s.Mechanism) {
		bad("kafka.sasl.mechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)
	}
	if s.Username == "" {
		bad("kafka.sasl.username", "is required with a SASL mechanism")
	}
	sources := 0
	for _, v := range []string{s.Password, s.PasswordEnv, s.PasswordFile} {
		if v != "" {
			sources++
		}
	}
	if sources != 1 {
		bad("kafka.sasl.password", "give exactly one of password_env, password_file and password (got %d)", sources)
	}
	if s.PasswordEnv != "" {
		if _, err := secretname.LookupEnv(s.PasswordEnv); err != nil {
			bad("kafka.sasl.password_env", "%v", err)
		}
	}
	if s.PasswordFile != "" {
		if _, err := os.Stat(s.PasswordFile); err != nil {
			bad("kafka.sasl.password_file", "%v", secretname.FileError(err))
		}
	}
	if s.Mechanism == "PLAIN" && !t.Enabled {
		bad("kafka.sasl.mechanism", "PLAIN sends the password in clear text; enable kafka.tls")
	}
}

// saslMechanisms are the accepted kafka.sasl.mechanism values.
func saslMechanisms() []string { return []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} }

// validate checks the temporal section's security and connection settings.
func (t Temporal) validate(bad func(field, format string, args ...any)) {
	unpadded(bad, "temporal.namespace", t.Namespace)
	// A gRPC target with a scheme ("dns:///host:port") is the SDK's to
	// resolve; anything else must be host:port.
	if t.Address != "" && !strings.Contains(t.Address, "://") { // empty takes the default
		if err := hostPort(t.Address); err != nil {
			bad("temporal.address", "%q: %v", t.Address, err)
		}
	}
	t.TLS.validate("temporal.tls", bad)
	if _, err := t.Gzip(); err != nil {
		bad("temporal.grpc_compression", "%v", err)
	}
	if t.APIKeyEnv != "" && t.APIKeyFile != "" {
		bad("temporal.api_key_env", "give at most one of api_key_env and api_key_file")
	}
	if (t.APIKeyEnv != "" || t.APIKeyFile != "") && !t.TLS.Enabled {
		bad("temporal.tls.enabled", "an API key is sent only over TLS; enable temporal.tls")
	}
	if t.APIKeyEnv != "" {
		if _, err := secretname.LookupEnv(t.APIKeyEnv); err != nil {
			bad("temporal.api_key_env", "%v", err)
		}
	}
	if t.APIKeyFile != "" {
		if _, err := os.Stat(t.APIKeyFile); err != nil {
			bad("temporal.api_key_file", "%v", secretname.FileError(err))
		}
	}
	t.Codec.validate(bad)
}

// validate checks the codec section (temporal.codec): its key and the
// older keys that only decrypt.
func (c Codec) validate(bad func(field, format string, args ...any)) {
	switch {
	case c.KeyEnv != "" && c.KeyFile != "":
		bad("temporal.codec.key_env", "give at most one of key_env and key_file")
	case c.KeyEnv != "" || c.KeyFile != "":
		if _, err := codec.LoadKey(c.KeyEnv, c.KeyFile); err != nil {
			field := "temporal.codec.key_file"
			if c.KeyEnv != "" {
				field = "temporal.codec.key_env"
			}
			bad(field, "%v", err)
		}
	case c.KeyID != "":
		bad("temporal.codec.key_id", "is set but neither key_env nor key_file is")
	}
	if len(c.DecryptKeys) > 0 && c.KeyEnv == "" && c.KeyFile == "" {
		bad("temporal.codec.decrypt_keys", "is set but neither key_env nor key_file is")
	}
	seen := map[string]bool{cmp.Or(c.KeyID, DefaultKeyID): true}
	for i, spec := range c.DecryptKeys {
		field := fmt.Sprintf("temporal.codec.decrypt_keys[%d]", i)
		id, _, err := codec.ParseKeySpec(spec)
		switch {
		case err != nil:
			bad(field, "%v", err)
		case seen[id]:
			bad(field, "key ID %q is given twice", id)
		}
		seen[id] = true
	}
}

// DefaultKeyID names the payload key when temporal.codec.key_id is empty.
const DefaultKeyID = "default"

// hostPort checks that addr is host:port with a port number.
func hostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if host == "" {
		return errors.New("want host:port: the host is missing")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("want host:port: the port %q is not a number from 1 to 65535", port)
	}
	return nil
}

// unpadded refuses a name that is blank or has spaces at its ends: a name
// matched exactly matches nothing then. Empty is left to the caller.
func unpadded(bad func(field, format string, args ...any), field, v string) {
	switch {
	case v == "":
	case strings.TrimSpace(v) == "":
		bad(field, "%q is blank", v)
	case strings.TrimSpace(v) != v:
		bad(field, "%q has spaces at its ends", v)
	}
}
