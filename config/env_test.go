package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// environ renders env as os.Environ does.
func environ(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func TestEnvironmentOverridesTheFileAndFlagsOverrideTheEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`kafka: {brokers: [file:9092], group: g}
temporal: {address: file:7233}
dispatch: {drain_timeout: 3s}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`), 0o600))
	fromEnv, err := FromEnv(environ(map[string]string{
		"SAGABRIDGE_KAFKA_BROKERS":               "env-a:9092, env-b:9092",
		"SAGABRIDGE_TEMPORAL_ADDRESS":            "env:7233",
		"SAGABRIDGE_DISPATCH_DRAIN_TIMEOUT":      "4s",
		"SAGABRIDGE_BACKPRESSURE_RESUME_AT":      "0.25",
		"SAGABRIDGE_DLQ_TRANSACTIONAL":           "true",
		"SAGABRIDGE_DLQ_TRANSACTIONAL_ID_PREFIX": "p",
		"SAGABRIDGE_BATCH_MAX_RECORDS":           "1000",
	}))
	require.NoError(t, err)
	flag := func(c *Config) { c.Temporal.Address = "flag:7233" }
	cfg, err := Load(path, fromEnv, flag)
	require.NoError(t, err)
	assert.Equal(t, []string{"env-a:9092", "env-b:9092"}, cfg.Kafka.Brokers, "the environment wins over the file")
	assert.Equal(t, "flag:7233", cfg.Temporal.Address, "a flag wins over the environment")
	assert.Equal(t, 4*time.Second, cfg.Dispatch.DrainTimeout)
	assert.InDelta(t, 0.25, cfg.Backpressure.ResumeAt, 1e-9)
	assert.True(t, cfg.DLQ.Transactional)
	assert.Equal(t, 1000, cfg.Batch.MaxRecords)
	assert.Equal(t, "g", cfg.Kafka.Group, "untouched fields keep the file's value")
}

func TestEnvironmentErrorsNameTheVariableAndTheField(t *testing.T) {
	_, err := FromEnv(environ(map[string]string{
		"SAGABRIDGE_DISPATCH_DRAIN_TIMEOUT": "soon",
		"SAGABRIDGE_DLQ_TRANSACTIONAL":      "maybe",
		// An empty item of a list was dropped: "," replaced the file's
		// decrypt keys with none, and payloads of a retired key could no
		// longer be read. In the file the same list is refused.
		"SAGABRIDGE_KAFKA_BROKERS":               "a:1,,b:2",
		"SAGABRIDGE_TEMPORAL_CODEC_DECRYPT_KEYS": ",",
	}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "SAGABRIDGE_DISPATCH_DRAIN_TIMEOUT (dispatch.drain_timeout): ")
	assert.Contains(t, err.Error(), "SAGABRIDGE_DLQ_TRANSACTIONAL (dlq.transactional): ")
	assert.Contains(t, err.Error(), "SAGABRIDGE_KAFKA_BROKERS (kafka.brokers): item 2 of the list is empty")
	assert.Contains(t, err.Error(), "SAGABRIDGE_TEMPORAL_CODEC_DECRYPT_KEYS (temporal.codec.decrypt_keys): item 1 of the list is empty")

	// A trailing comma is taken, as YAML's flow lists take it.
	c, err := FromEnv(environ(map[string]string{"SAGABRIDGE_KAFKA_BROKERS": "a:1,b:2,"}))
	require.NoError(t, err)
	cfg := Config{}
	c(&cfg)
	assert.Equal(t, []string{"a:1", "b:2"}, cfg.Kafka.Brokers)
}

func TestEveryFieldHasAnEnvironmentVariable(t *testing.T) {
	fields := configFields()
	seen := map[string]bool{}
	for _, f := range fields {
		assert.False(t, seen[f.env], "two fields share %s", f.env)
		seen[f.env] = true
		if _, err := parseValue(f.typ, ""); err != nil {
			assert.NotContains(t, err.Error(), "cannot be set from the environment", f.path)
		}
	}
	for _, want := range []string{"SAGABRIDGE_KAFKA_SASL_PASSWORD_ENV", "SAGABRIDGE_TEMPORAL_CODEC_KEY_FILE", "SAGABRIDGE_BACKPRESSURE_BACKLOG_HIGH_AGE", "SAGABRIDGE_MEMORY_SOFT_LIMIT", "SAGABRIDGE_METRICS_LISTEN"} {
		assert.True(t, seen[want], "no %s", want)
	}
}

func TestRedactedHidesTheInlinePassword(t *testing.T) {
	c := Config{Kafka: Kafka{SASL: SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "hunter2-secret"}}}
	out, err := yaml.Marshal(c.Redacted())
	require.NoError(t, err)
	assert.NotContains(t, string(out), "hunter2-secret")
	assert.Contains(t, string(out), "REDACTED")
	assert.Equal(t, "hunter2-secret", c.Kafka.SASL.Password, "the original is untouched")
}

func TestYAMLRoundTripsThroughTheLoader(t *testing.T) {
	cfg, err := Parse([]byte(`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-512, username: u, password: pw}}
dispatch: {drain_timeout: 7s}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`))
	require.NoError(t, err)
	out, err := cfg.YAML()
	require.NoError(t, err)
	assert.Contains(t, string(out), "drain_timeout: 7s")
	back, err := Parse(out)
	require.NoError(t, err, "the printed configuration loads:\n%s", out)
	again, err := back.YAML()
	require.NoError(t, err)
	assert.Equal(t, string(out), string(again), "printing what was loaded from the print gives the same text")
}

// A misspelled variable is refused, naming it and the closest one, as a
// misspelled YAML field is; a variable a *_env field names (a secret) and
// the tools' own variables are not configuration and pass.
func TestAnUnknownVariableIsRefusedWithTheClosestName(t *testing.T) {
	yaml := []byte(`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: PLAIN, username: u, password_env: SAGABRIDGE_SECRET}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`)
	fromEnv, err := FromEnv(environ(map[string]string{
		"SAGABRIDGE_KAFKA_BROKERZ": "x:9092",
		"SAGABRIDGE_SECRET":        "s3cret",
		"SAGABRIDGE_SEED":          "1",
		"OTHER_KAFKA_BROKERZ":      "ignored: not ours",
	}))
	require.NoError(t, err)
	_, err = Parse(yaml, fromEnv)
	require.Error(t, err)
	assert.Equal(t, "SAGABRIDGE_KAFKA_BROKERZ: not a configuration variable; did you mean SAGABRIDGE_KAFKA_BROKERS (kafka.brokers)?", err.Error())

	fromEnv, err = FromEnv(environ(map[string]string{"SAGABRIDGE_SECRET": "s3cret", "SAGABRIDGE_NOTHING_LIKE_IT_AT_ALL": "1"}))
	require.NoError(t, err)
	_, err = Parse(yaml, fromEnv)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "SAGABRIDGE_NOTHING_LIKE_IT_AT_ALL: not a configuration variable (see docs/CONFIG.md")
}

// Kubernetes gives every pod variables for each Service of its namespace
// (service links), named after the Service: the manifests' Service
// sagabridge-bridge-metrics gave SAGABRIDGE_BRIDGE_METRICS_SERVICE_HOST and
// seven more, and the bridge and the worker refused them, so neither
// started on the shipped manifests. They are let be; a misspelling of a
// field is still refused.
func TestKubernetesServiceLinkVariablesAreNotConfiguration(t *testing.T) {
	yaml := []byte(`kafka: {brokers: [b:9092], group: g}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`)
	links := map[string]string{
		"SAGABRIDGE_BRIDGE_METRICS_SERVICE_HOST":         "10.0.0.7",
		"SAGABRIDGE_BRIDGE_METRICS_SERVICE_PORT":         "9464",
		"SAGABRIDGE_BRIDGE_METRICS_SERVICE_PORT_METRICS": "9464",
		"SAGABRIDGE_BRIDGE_METRICS_PORT":                 "tcp://10.0.0.7:9464",
		"SAGABRIDGE_BRIDGE_METRICS_PORT_9464_TCP":        "tcp://10.0.0.7:9464",
		"SAGABRIDGE_BRIDGE_METRICS_PORT_9464_TCP_PROTO":  "tcp",
		"SAGABRIDGE_BRIDGE_METRICS_PORT_9464_TCP_PORT":   "9464",
		"SAGABRIDGE_BRIDGE_METRICS_PORT_9464_TCP_ADDR":   "10.0.0.7",
		"SAGABRIDGE_CODEC_PORT_8081_UDP_ADDR":            "10.0.0.8",
	}
	fromEnv, err := FromEnv(environ(links))
	require.NoError(t, err)
	_, err = Parse(yaml, fromEnv)
	require.NoError(t, err)

	links["SAGABRIDGE_KAFKA_GROUPP"] = "g2"
	fromEnv, err = FromEnv(environ(links))
	require.NoError(t, err)
	_, err = Parse(yaml, fromEnv)
	require.Error(t, err)
	assert.Equal(t, "SAGABRIDGE_KAFKA_GROUPP: not a configuration variable; did you mean SAGABRIDGE_KAFKA_GROUP (kafka.group)?", err.Error())
}

// A *_env field that names the variable of a configuration field (the
// password's own, SAGABRIDGE_KAFKA_SASL_PASSWORD) is refused, naming both:
// the variable set the inline password too, and the check that there is
// one source said "got 2" of a configuration that gave one.
func TestASecretVariableNamedAfterAFieldIsRefusedClearly(t *testing.T) {
	yaml := []byte(`kafka: {brokers: [b:9092], group: g, sasl: {mechanism: SCRAM-SHA-512, username: u, password_env: SAGABRIDGE_KAFKA_SASL_PASSWORD}}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`)
	t.Setenv("SAGABRIDGE_KAFKA_SASL_PASSWORD", "s3cret")
	fromEnv, err := FromEnv(environ(map[string]string{"SAGABRIDGE_KAFKA_SASL_PASSWORD": "s3cret"}))
	require.NoError(t, err)
	_, err = Parse(yaml, fromEnv)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kafka.sasl.password_env: SAGABRIDGE_KAFKA_SASL_PASSWORD is the variable of kafka.sasl.password")
	assert.NotContains(t, err.Error(), "got 2")
	assert.NotContains(t, err.Error(), "s3cret")
}

// A variable set to nothing (a Helm value: "", an export X= in a script)
// is refused, naming it and its field: it said nothing, and must not
// replace the file's setting with the default. (It did, silently: an empty
// SAGABRIDGE_TEMPORAL_CODEC_KEY_ENV turned the file's payload encryption
// off, and an empty address pointed the bridge at 127.0.0.1:7233.)
func TestAnEmptyVariableIsRefused(t *testing.T) {
	_, err := FromEnv(environ(map[string]string{
		"SAGABRIDGE_TEMPORAL_ADDRESS":       "",
		"SAGABRIDGE_TEMPORAL_CODEC_KEY_ENV": " ",
		"SAGABRIDGE_KAFKA_BROKERS":          "",
	}))
	require.Error(t, err)
	for _, want := range []string{
		"SAGABRIDGE_TEMPORAL_ADDRESS (temporal.address): set but empty",
		"SAGABRIDGE_TEMPORAL_CODEC_KEY_ENV (temporal.codec.key_env): set but empty",
		"SAGABRIDGE_KAFKA_BROKERS (kafka.brokers): set but empty",
	} {
		assert.Contains(t, err.Error(), want)
	}
}
