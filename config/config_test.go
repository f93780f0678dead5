package config

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../examples/saga/bridge.yaml")
	require.NoError(t, err)
	assert.Equal(t, "sagabridge-orders", cfg.Kafka.Group)
	assert.Equal(t, "3.6.0", cfg.Kafka.Version, "default applied")
	assert.Equal(t, 100*time.Millisecond, cfg.Dispatch.RetryInitial, "default applied")
	assert.Equal(t, "order-{key}", cfg.Routes[0].WorkflowID)
	assert.Equal(t, int64(3*cfg.Backpressure.MaxBytes+14<<20), cfg.Memory.SoftLimit, "the soft limit follows the budget")
	// The default budget: 30,000 small records (6 MiB) within a 32 MiB
	// soft limit kept catch-up RSS under 64 MB (docs/BENCHMARKS.md).
	assert.Equal(t, 30000, cfg.Backpressure.MaxRecords)
	assert.Equal(t, 6<<20, cfg.Backpressure.MaxBytes)
	assert.Equal(t, int64(32<<20), cfg.Memory.SoftLimit)
	assert.Equal(t, cfg.Backpressure.Backlog.HighTasks/5, cfg.Backpressure.Backlog.LowTasks)
}

func TestLoadConfigErrorsNameTheFileAndField(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"missing brokers": {`kafka: {group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.brokers: at least one broker"},
		"unknown field": {`kafka: {brokers: [b:9092], group: g, grup: x}`, "kafka.grup: unknown field (line 1); did you mean group?"},
		"unknown nested field": {`kafka: {brokers: [b:9092], group: g}
backpressure:
  backlog: {high_taks: 5}`, "backpressure.backlog.high_taks: unknown field (line 3); did you mean high_tasks?"},
		"unknown route field": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}, {topik: u}]`, "routes[1].topik: unknown field (line 2); did you mean topic?"},
		"unknown section": {`kafak: {brokers: [b:9092]}`, "kafak: unknown field (line 1); did you mean kafka?"},
		"address without port": {`kafka: {brokers: [b:9092], group: g}
temporal: {address: temporal.example.com}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, `temporal.address: "temporal.example.com": want host:port`},
		// A broker without a port was accepted and failed only when
		// sarama dialled it ("missing port in address"), unnamed.
		"broker without port": {`kafka: {brokers: ["kafka-1:9092", kafka-2], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, `kafka.brokers[1]: "kafka-2": want host:port`},
		"address with a bad port": {`kafka: {brokers: [b:9092], group: g}
temporal: {address: "temporal:72330"}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, `temporal.address: "temporal:72330": want host:port: the port "72330" is not a number from 1 to 65535`},
		"two documents": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]
---
dlq: {transactional: true}`, "a second YAML document (after \"---\", its content from line 4) would be ignored"},
		"resume_at not a number": {`kafka: {brokers: [b:9092], group: g}
backpressure: {resume_at: .nan}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "backpressure.resume_at: must be between 0 and 1"},
		"json placeholder on bytes": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, payload: bytes, workflow_type: W, workflow_id: "o-{json:id}", task_queue: q}]`, `routes[0].workflow_id: "o-{json:id}" reads the JSON value ({json:...}), which needs payload "json", not "bytes"`},
		// A route that reads no event type renders {type} empty for every
		// record, each then dead-lettered. (It was accepted.)
		"type placeholder without a type source": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "{type}-{key}", task_queue: q}]`, `routes[0].workflow_id: "{type}-{key}" uses {type}, which needs type_header or type_field to read the event type from`},
		"bad instance id": {`kafka: {brokers: [b:9092], group: g, instance_id: "pod 1"}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, `kafka.instance_id: "pod 1": use up to 249 letters, digits`},
		"bad placeholder": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{id}", task_queue: q}]`, "routes[0].workflow_id: unknown placeholder {id}"},
		"no placeholder": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "fixed", task_queue: q}]`, "routes[0].workflow_id: \"fixed\" has no placeholder"},
		"missing task queue": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}"}]`, "routes[0].task_queue: is required"},
		"types without source": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, types: [A], workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "routes[0].types: needs type_header or type_field"},
		"type twice": {`kafka: {brokers: [b:9092], group: g}
routes:
  - {topic: t, type_header: h, types: [A], workflow_type: W, workflow_id: "w-{key}", task_queue: q}
  - {topic: t, type_header: h, types: [A, B], workflow_type: V, workflow_id: "v-{key}", task_queue: q}`, "routes[1].types[0]: event type \"A\" of topic \"t\" is routed twice"},
		"dlq topic": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t.dlq, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "routes[0].topic: \"t.dlq\" is a DLQ topic"},
		"bad compression": {`kafka: {brokers: [b:9092], group: g}
temporal: {grpc_compression: zstd}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, `temporal.grpc_compression: must be "auto", "gzip" or "none", not "zstd"`},
		"bad offset": {`kafka: {brokers: [b:9092], group: g, initial_offset: latest}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.initial_offset: must be \"oldest\" or \"newest\""},
		"bad batch format": {`kafka: {brokers: [b:9092], group: g}
dispatch: {batch_format: tiny}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, `dispatch.batch_format: must be "full" or "compact", not "tiny"`},
		"drain too long": {`kafka: {brokers: [b:9092], group: g}
dispatch: {drain_timeout: 5m}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "dispatch.drain_timeout: must be below the rebalance timeout"},
		"type field on bytes": {`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, payload: bytes, type_field: kind, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "routes[0].type_field: needs payload \"json\""},
		"resume above one": {`kafka: {brokers: [b:9092], group: g}
backpressure: {resume_at: 1.5}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "backpressure.resume_at: must be between 0 and 1"},
		"backlog marks inverted": {`kafka: {brokers: [b:9092], group: g}
backpressure: {backlog: {high_tasks: 10, low_tasks: 20}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "backpressure.backlog.low_tasks: must be at least 0 and below high_tasks (10)"},
		"budget below a batch": {`kafka: {brokers: [b:9092], group: g}
batch: {max_records: 500}
backpressure: {max_records: 100}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "backpressure.max_records: must be at least batch.max_records (500)"},
		"floor above ceiling": {`kafka: {brokers: [b:9092], group: g}
dispatch: {concurrency: 8}
backpressure: {adaptive: {min_concurrency: 16}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "backpressure.adaptive.min_concurrency: must not exceed dispatch.concurrency (8)"},
		"transactional without prefix": {`kafka: {brokers: [b:9092], group: g}
dlq: {transactional: true}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "dlq.transactional_id_prefix: is required with dlq.transactional"},
		"transactional on old kafka": {`kafka: {brokers: [b:9092], group: g, version: 2.4.0}
dlq: {transactional: true, transactional_id_prefix: p}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.version: 2.4.0 is older than 2.5.0"},
		// The bridge and the worker start sarama with cooperative-sticky
		// rebalancing, which sarama refuses below 2.4.0: the version
		// passed, and the start failed with "invalid configuration",
		// naming no field, as if Kafka could not be reached.
		// A mapping where a list belongs, or a list or a value where a
		// section does: yaml.v3 named the Go type ("cannot unmarshal !!map
		// into []config.Route"), not the field.
		"routes without dashes": {`kafka: {brokers: [b:9092], group: g}
routes: {topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}`, "routes: want a list"},
		"brokers as a mapping": {`kafka: {brokers: {b: 9092}, group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.brokers: want a list"},
		"section as a list": {`kafka: [b:9092]
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka: want a section"},
		"section as a value": {`kafka: {brokers: [b:9092], group: g}
dispatch: fast
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "dispatch: want a section"},
		"kafka too old": {`kafka: {brokers: [b:9092], group: g, version: 2.3.0}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.version: 2.3.0 is older than 2.4.0"},
		// One goroutine per worker: 50,000,000 were accepted.
		"concurrency past reason": {`kafka: {brokers: [b:9092], group: g}
dispatch: {concurrency: 50000000}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "dispatch.concurrency: must be at most 10000"},
		// Each sample may take four intervals: at 1ns none could answer
		// and the window followed the backlog alone, sampled without pause.
		"sample interval too short": {`kafka: {brokers: [b:9092], group: g}
dispatch: {coalesce: {sample_interval: 1ms}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "dispatch.coalesce.sample_interval: must be at least 10ms"},
		"prefix without transactional": {`kafka: {brokers: [b:9092], group: g}
dlq: {transactional_id_prefix: p}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "dlq.transactional_id_prefix: is set but dlq.transactional is false"},
		"tls field without tls": {`kafka: {brokers: [b:9092], group: g, tls: {server_name: k}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.tls.enabled: must be true when other kafka.tls fields are set"},
		"cert without key": {`kafka: {brokers: [b:9092], group: g, tls: {enabled: true, cert_file: @FILE@}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.tls.cert_file: cert_file and key_file go together"},
		"missing ca file": {`kafka: {brokers: [b:9092], group: g, tls: {enabled: true, ca_file: /nonexistent/ca.pem}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.tls.ca_file: stat /nonexistent/ca.pem"},
		"unknown mechanism": {`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: GSSAPI, username: u, password: p}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, `kafka.sasl.mechanism: "GSSAPI" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`},
		"sasl without user": {`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-512, password: p}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.sasl.username: is required"},
		"two password sources": {`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-512, username: u, password: p, password_file: @FILE@}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.sasl.password: give exactly one of password_env, password_file and password (got 2)"},
		"unset password env": {`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-256, username: u, password_env: SAGABRIDGE_TEST_UNSET_PASSWORD}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.sasl.password_env: the environment variable SAGABRIDGE_TEST_UNSET_PASSWORD is not set"},
		// The password itself where its variable's name goes is not
		// echoed (it was: "the environment variable S3cr3t-Pa55! is not set").
		"password in place of its variable": {`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-256, username: u, password_env: "S3cr3t-Pa55!"}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.sasl.password_env: names no environment variable that is set (not shown"},
		// Nor one of letters and digits only, as API keys and many
		// passwords are (it was: "the environment variable Summer2026 is
		// not set"): only an UPPER_SNAKE name is shown.
		"alphanumeric password in place of its variable": {`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-256, username: u, password_env: Summer2026}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.sasl.password_env: names no environment variable that is set (not shown"},
		"API key in place of its variable": {`kafka: {brokers: [b:9092], group: g}
temporal: {api_key_env: sk_live_51HxT2eZvKYlo2C9aB}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "temporal.api_key_env: names no environment variable that is set (not shown"},
		// Nor where its file's path goes (it was: "stat S3cr3t-Pa55!: no
		// such file or directory"); the field is named, the path never.
		"password in place of its file": {`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-256, username: u, password_file: "S3cr3t-Pa55!"}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.sasl.password_file: stat (path not shown): no such file or directory"},
		"API key in place of its file": {`temporal: {tls: {enabled: true}, api_key_file: "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"}
kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "temporal.api_key_file: stat (path not shown): no such file or directory"},
		"plain without tls": {`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: PLAIN, username: u, password: p}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.sasl.mechanism: PLAIN sends the password in clear text"},
		"sasl fields without mechanism": {`kafka: {brokers: [b:9092], group: g, sasl: {username: u}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "kafka.sasl.mechanism: is required when other kafka.sasl fields are set"},
		"api key without tls": {`kafka: {brokers: [b:9092], group: g}
temporal: {api_key_file: @FILE@}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "temporal.tls.enabled: an API key is sent only over TLS"},
		"two api key sources": {`kafka: {brokers: [b:9092], group: g}
temporal: {tls: {enabled: true}, api_key_file: @FILE@, api_key_env: HOME}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "temporal.api_key_env: give at most one of api_key_env and api_key_file"},
		"temporal cert without key": {`kafka: {brokers: [b:9092], group: g}
temporal: {tls: {enabled: true, cert_file: @FILE@}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "temporal.tls.cert_file: cert_file and key_file go together"},
		"codec key not base64": {`kafka: {brokers: [b:9092], group: g}
temporal: {codec: {key_file: @FILE@}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "temporal.codec.key_file: codec: the key"},
		"codec key id without key": {`kafka: {brokers: [b:9092], group: g}
temporal: {codec: {key_id: k2}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "temporal.codec.key_id: is set but neither key_env nor key_file is"},
		"negative open_for": {`kafka: {brokers: [b:9092], group: g}
backpressure: {circuit: {open_for: -1s}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`, "backpressure.circuit.open_for: must be positive"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "some-file") // exists; holds no key, certificate or password
			require.NoError(t, os.WriteFile(file, []byte("not a key\n"), 0o600))
			path := filepath.Join(dir, "bridge.yaml")
			require.NoError(t, os.WriteFile(path, []byte(strings.ReplaceAll(c.yaml, "@FILE@", file)), 0o600))
			_, err := Load(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "config "+path+": ")
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestOverridesApplyBeforeValidation(t *testing.T) {
	cfg, err := Parse([]byte(`kafka: {group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`),
		func(c *Config) { c.Kafka.Brokers = []string{"127.0.0.1:1"} })
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1:1"}, cfg.Kafka.Brokers)
}

func TestAZeroSetOnPurposeKeepsItsValue(t *testing.T) {
	cfg, err := Parse([]byte(`kafka: {brokers: [b:9092], group: g}
batch: {linger: 0s}
backpressure: {backlog: {high_tasks: 100, low_tasks: 0}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`))
	require.NoError(t, err)
	assert.Zero(t, cfg.Backpressure.Backlog.LowTasks, "low_tasks: 0 is kept")
	assert.Zero(t, cfg.Batch.Linger, "linger: 0s is kept")
	assert.Equal(t, 30*time.Second, cfg.Backpressure.Backlog.HighAge, "an unset field takes its default")

	fromEnv, err := FromEnv(environ(map[string]string{"SAGABRIDGE_BACKPRESSURE_BACKLOG_LOW_TASKS": "0"}))
	require.NoError(t, err)
	cfg, err = Parse([]byte(`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`), fromEnv)
	require.NoError(t, err)
	assert.Zero(t, cfg.Backpressure.Backlog.LowTasks, "a zero from the environment is kept too")
	assert.Equal(t, cfg, cfg.WithDefaults(), "filling again changes nothing")
}

func TestDerivedDefaultsFollowTheFieldsTheyDeriveFrom(t *testing.T) {
	cfg, err := Parse([]byte(`kafka: {brokers: [b:9092], group: g}
batch: {max_records: 300}
dispatch: {concurrency: 2}
backpressure: {max_bytes: 1048576, backlog: {high_tasks: 100, high_age: 12s}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`))
	require.NoError(t, err)
	assert.Equal(t, 3000, cfg.Batch.MaxInFlight)
	assert.Equal(t, int64(20), cfg.Backpressure.Backlog.LowTasks)
	assert.Equal(t, 2*time.Second, cfg.Backpressure.Backlog.LowAge)
	assert.Equal(t, 2, cfg.Backpressure.Adaptive.MinConcurrency)
	assert.Equal(t, int64(3<<20+14<<20), cfg.Memory.SoftLimit)
}

func TestAGoConfigTakesTheSameDefaultsAsAFile(t *testing.T) {
	fromFile, err := Parse([]byte(`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`))
	require.NoError(t, err)
	inGo := Config{Kafka: Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Routes: []Route{{Topic: "t", WorkflowType: "W", WorkflowID: "w-{key}", TaskQueue: "q"}}}.WithDefaults()
	fromFile.set = nil
	assert.Equal(t, fromFile, inGo)
	require.NoError(t, inGo.Validate())
}

func TestLoadConnectionsNeedsOnlyKafkaAndTemporal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte("kafka: {brokers: [b:9092]}\ntemporal: {namespace: ns}\n"), 0o600))
	c, err := LoadConnections(path)
	require.NoError(t, err, "no group and no routes are needed")
	assert.Equal(t, []string{"b:9092"}, c.Kafka.Brokers)
	assert.Equal(t, "ns", c.Temporal.Namespace)
	assert.Equal(t, "3.6.0", c.Kafka.Version, "defaults applied")

	require.NoError(t, os.WriteFile(path, []byte("kafka: {brokers: ['']}\ntemporal: {api_key_file: /x}\n"), 0o600))
	_, err = LoadConnections(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "config "+path+": ")
	assert.Contains(t, err.Error(), "kafka.brokers[0]: must not be empty")
	assert.Contains(t, err.Error(), "temporal.tls.enabled: an API key is sent only over TLS")

	// The worker writes its dead letters where the bridge does, no larger
	// than the bridge's. (The dlq section was parsed and dropped: a worker
	// given the bridge's file wrote to <topic>.dlq whatever its suffix.)
	require.NoError(t, os.WriteFile(path, []byte("kafka: {brokers: [b:9092]}\ndlq: {suffix: -dead, max_message_bytes: 200000}\n"), 0o600))
	c, err = LoadConnections(path)
	require.NoError(t, err)
	assert.Equal(t, "-dead", c.DLQ.Suffix)
	assert.Equal(t, 200000, c.DLQ.MaxMessageBytes)
	require.NoError(t, os.WriteFile(path, []byte("kafka: {brokers: [b:9092]}\ndlq: {max_message_bytes: 1000}\n"), 0o600))
	_, err = LoadConnections(path)
	require.ErrorContains(t, err, "dlq.max_message_bytes: must be at least 65536")

	c, err = LoadConnections("", func(c *Config) { c.Kafka.Brokers = []string{"flag:9092"} })
	require.NoError(t, err, "flags alone")
	assert.Equal(t, ".dlq", c.DLQ.Suffix, "defaults applied")
	assert.Equal(t, []string{"flag:9092"}, c.Kafka.Brokers)
	_, err = LoadConnections("")
	require.ErrorContains(t, err, "config flags: kafka.brokers: at least one broker is required")
}

func TestCodecDecryptKeyErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	writeKey := func(name string) string {
		key := make([]byte, 32)
		_, err := rand.Read(key)
		require.NoError(t, err)
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)), 0o600))
		return path
	}
	oldFile, newFile := writeKey("old.key"), writeKey("new.key")
	rotated := Temporal{Codec: Codec{KeyFile: newFile, KeyID: "new"}}
	for spec, want := range map[string]string{
		"old":                        "want ID=file:PATH or ID=env:VARIABLE",
		"old=disk:" + oldFile:        "want ID=file:PATH or ID=env:VARIABLE",
		"old=file:" + dir + "/none":  "no such file",
		"old=env:SAGABRIDGE_NO_SUCH": "SAGABRIDGE_NO_SUCH is not set",
		"new=file:" + oldFile:        `key ID "new" is given twice`,
	} {
		var problems []string
		rotated.Codec.DecryptKeys = []string{spec}
		rotated.validate(func(field, format string, args ...any) {
			problems = append(problems, field+": "+fmt.Sprintf(format, args...))
		})
		require.Len(t, problems, 1, spec)
		assert.Contains(t, problems[0], "temporal.codec.decrypt_keys[0]: ", spec)
		assert.Contains(t, problems[0], want, spec)
	}
}

// A file that ends in "---" (templated or concatenated output) holds one
// document and an empty one: it loads.
func TestATrailingDocumentMarkerIsFine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte("---\nkafka: {brokers: [b:9092]}\n---\n"), 0o600))
	c, err := LoadConnections(path)
	require.NoError(t, err)
	assert.Equal(t, []string{"b:9092"}, c.Kafka.Brokers)
}

// A gRPC target with a scheme is the SDK's to resolve, and passes as it is.
func TestATemporalAddressWithASchemeIsKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte("kafka: {brokers: [b:9092]}\ntemporal: {address: 'dns:///temporal.internal:7233'}\n"), 0o600))
	c, err := LoadConnections(path)
	require.NoError(t, err)
	assert.Equal(t, "dns:///temporal.internal:7233", c.Temporal.Address)
}

// A variable that is set is used whatever its name (Kubernetes allows '-'
// and '.'): only an unset one that is no variable name is kept from the
// error. (A set "kafka-sasl.password" was refused as no variable name.)
func TestASetVariableIsUsedWhateverItsName(t *testing.T) {
	t.Setenv("kafka-sasl.password", "x")
	_, err := Parse([]byte(`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-256, username: u, password_env: kafka-sasl.password}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`))
	require.NoError(t, err)
}
