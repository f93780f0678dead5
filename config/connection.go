package config

import (
	"fmt"
	"time"
)

// The connection sections: where the bridge finds Kafka and Temporal, and
// how it authenticates to them and protects what it sends.

// Kafka says which brokers and consumer group to use.
type Kafka struct {
	// Brokers lists bootstrap brokers as host:port. Required.
	Brokers []string `yaml:"brokers"`
	// Group is the consumer group ID. Required.
	Group string `yaml:"group"`
	// ClientID names the bridge's Kafka clients (and its tools') to the
	// brokers; a worker (sagaworker) names its producers after itself.
	// Optional, default "sagabridge".
	ClientID string `yaml:"client_id"`
	// Version is the Kafka protocol version to speak: at least 2.4.0
	// (cooperative-sticky rebalancing). Optional, default "3.6.0".
	Version string `yaml:"version"`
	// InitialOffset is where a group with no committed offset starts, and
	// where one whose committed offset has left the log (retention passed
	// it, or the log was truncated) starts again: "oldest" or "newest".
	// The offset of the first record read is committed at once, so a
	// partition started at "newest" resumes there after a restart; one
	// handed to another member before it read any record has committed
	// nothing, and its next owner starts at the log end of that moment,
	// past what was produced meanwhile. Optional, default "oldest".
	InitialOffset string `yaml:"initial_offset"`
	// ConnectTimeout bounds the wait for the brokers to answer when a
	// client starts (the bridge, the worker's producer, the DLQ tool); a
	// broker that accepts connections and never answers fails the start
	// with an error that names the brokers. With dlq.transactional it also
	// bounds a partition's transactional producer start and its final
	// commit when the partition is released (or less: what the 20 s
	// rebalance timeout leaves after the drain, less a second, at least
	// 500 ms). Optional, default 15s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// IsolationLevel is how transactional records are read:
	// "read_committed" (records of aborted transactions are never seen,
	// and open ones are waited for) or "read_uncommitted". Optional,
	// default "read_committed", so an aborted transaction upstream (an
	// eos.Processor's, say) never reaches a saga.
	IsolationLevel string `yaml:"isolation_level"`
	// InstanceID makes this member of the group static (KIP-345,
	// group.instance.id): a member that restarts with the same ID within
	// the session timeout (10 s) gets its partitions back without a
	// rebalance, so a rolling deploy does not move every partition. Each
	// replica needs its own ID (a StatefulSet's pod name, through
	// SAGABRIDGE_KAFKA_INSTANCE_ID), of letters, digits, '.', '_' and '-'.
	// A static member that stops does not leave the group: its partitions
	// wait for it until the session timeout. Optional, default empty
	// (dynamic membership).
	InstanceID string `yaml:"instance_id"`
	// TLS and SASL secure the connections to the brokers. Optional,
	// default plaintext without authentication.
	TLS  TLS  `yaml:"tls"`
	SASL SASL `yaml:"sasl"`
}

// Temporal says which Temporal frontend and namespace to use, and
// how to connect to it.
type Temporal struct {
	// Address is the frontend's host:port. Optional, default "127.0.0.1:7233".
	Address string `yaml:"address"`
	// Namespace is the Temporal namespace. Optional, default "default".
	Namespace string `yaml:"namespace"`
	// TLS to the frontend; with cert_file and key_file, mutual TLS.
	// Optional, default plaintext.
	TLS TLS `yaml:"tls"`
	// APIKeyEnv or APIKeyFile hold an API key (Temporal Cloud), sent as a
	// bearer token; at most one. The file is read again every second, so a
	// key rotated in it is used without a restart. Optional. Needs TLS.
	APIKeyEnv  string `yaml:"api_key_env"`
	APIKeyFile string `yaml:"api_key_file"`
	// Codec encrypts payloads at rest in Temporal. Optional, default off.
	Codec Codec `yaml:"codec"`
	// GRPCCompression is how requests to the frontend are compressed:
	// "gzip" (the Temporal SDK's default; the server then answers in gzip
	// too, workflow tasks included), "none", or "auto": none over a
	// plaintext connection, which only a trusted local network carries and
	// where gzip costs both ends CPU for bandwidth that is cheap, and gzip
	// over TLS (Temporal Cloud, or a server across networks). Optional,
	// default "auto".
	GRPCCompression string `yaml:"grpc_compression"`
}

// The compressions of temporal.grpc_compression.
const (
	GRPCCompressionAuto = "auto"
	GRPCCompressionGzip = "gzip"
	GRPCCompressionNone = "none"
)

// Gzip reports whether a Temporal client of this configuration gzips its
// requests: temporal.grpc_compression, where auto (and unset) means gzip
// over TLS and none over plaintext. Any other value is an error.
func (t Temporal) Gzip() (bool, error) {
	switch t.GRPCCompression {
	case "", GRPCCompressionAuto:
		return t.TLS.Enabled, nil
	case GRPCCompressionGzip:
		return true, nil
	case GRPCCompressionNone:
		return false, nil
	}
	return false, fmt.Errorf("must be %q, %q or %q, not %q", GRPCCompressionAuto, GRPCCompressionGzip, GRPCCompressionNone, t.GRPCCompression)
}

// Codec is AES-256-GCM payload encryption (package codec). The
// bridge, the workers and the codec server need the same key.
type Codec struct {
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

// The isolation levels of kafka.isolation_level.
const (
	ReadCommitted   = "read_committed"
	ReadUncommitted = "read_uncommitted"
)

// TLS is TLS to the Kafka brokers (kafka.tls) or to the Temporal
// frontend (temporal.tls).
type TLS struct {
	// Enabled turns TLS on. Optional, default false; setting any file
	// below requires it.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the servers'
	// certificates. Optional, default the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key, for
	// servers that require mutual TLS (Temporal Cloud's mTLS, for one).
	// They are read again when either changes (looked at once a second at
	// most), so a certificate rotated in them is presented by the next
	// connection without a restart. Optional; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name to verify the servers' certificates against.
	// Optional, default the host of each address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. Never in
	// production; the bridge logs a warning at start. Optional, default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL is SASL authentication to the brokers.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty turns SASL
	// off. Use PLAIN only over TLS.
	Mechanism string `yaml:"mechanism"`
	// Username is the SASL user. Required with a mechanism.
	Username string `yaml:"username"`
	// The password comes from exactly one of: PasswordEnv (the name of an
	// environment variable that holds it), PasswordFile (a file that
	// holds it) or Password (inline; keep such a file secret). A trailing
	// newline is dropped from the variable's or the file's content (a
	// secret made from a file ends in one). Never logged or printed.
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	Password     string `yaml:"password"`
}
