package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// valuesBase is a configuration that loads; each case below adds to it.
const valuesBase = `kafka: {brokers: [b:9092], group: g}
routes: [{topic: orders, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]
`

// Values that YAML reads into something other than what was written, or
// that pass every check and then break the bridge, are refused, and the
// error names the field. Each of these loaded silently.
func TestValuesThatWouldBeMisreadAreRefusedNamingTheField(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		// An empty value (a Helm template's missing value) became a zero
		// marked as set: no coalescing, no linger, a 0 s drain.
		"empty duration": {"batch: {linger: }\n", "batch.linger: has no value"},
		"null duration":  {"dispatch: {coalesce: {max_window: ~}}\n", "dispatch.coalesce.max_window: has no value"},
		"empty int":      {"backpressure: {backlog: {low_tasks: }}\n", "backpressure.backlog.low_tasks: has no value"},
		"empty string":   {"dlq: {suffix: }\n", "dlq.suffix: has no value"},
		// A quoted empty string (a Helm template rendering "") took the
		// default: another namespace, or the payload encryption off.
		"quoted empty string": {"temporal: {namespace: \"\"}\n", "temporal.namespace: is empty"},
		"quoted empty suffix": {"dlq: {suffix: ''}\n", "dlq.suffix: is empty"},
		"quoted empty signal": {"routes: [{topic: orders, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q, signal: \"\"}]\n", "routes[0].signal: is empty"},
		// Values of the wrong kind named the Go type, not the field.
		// Reported only when the server started, after the Temporal
		// client and both producers.
		"listen without a port": {"metrics: {listen: nonsense}\n", "metrics.listen: want host:port"},
		"listen port too large": {"metrics: {listen: \":99999\"}\n", `metrics.listen: the port "99999" is not a number from 0 to 65535 nor a service name`},
		"quoted bool":           {"metrics: {pprof: \"true\"}\n", `metrics.pprof: "true" is quoted text, not true or false: write it without quotes`},
		"word for a bool":       {"metrics: {pprof: 1}\n", "metrics.pprof: 1 is not true or false"},
		"word for a number":     {"backpressure: {resume_at: half}\n", `backpressure.resume_at: "half" is not a number`},
		"map for a string":      {"temporal: {namespace: {a: b}}\n", "temporal.namespace: want a single value, not a mapping"},
		"list for a map":        {"routes: [{topic: orders, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q, memo: [a]}]\n", "routes[0].memo: want a mapping, such as {name: value}, not a list"},
		// YAML 1.1 reads a leading zero as octal (0100 is 64); the
		// environment reads it as decimal (100).
		"leading zero": {"batch: {max_records: 0100}\n", "batch.max_records: 0100 has a leading zero"},
		// A fraction was truncated (1.5 records became 1).
		"fraction": {"batch: {max_records: 1.5}\n", "batch.max_records: 1.5 is not a whole number"},
		// yaml's own errors named the Go type and the line, not the field.
		"duration without a unit": {"batch: {linger: 5}\n", "batch.linger: 5 is not a duration: write it with a unit, such as 5ms or 5s"},
		"bytes with a unit":       {"memory: {soft_limit: 64MiB}\n", "memory.soft_limit: \"64MiB\" is not a whole number"},
		"list as a string":        {"routes: [{topic: orders, types: A, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q, type_header: t}]\n", "routes[0].types: want a list"},
		// Every record, even one with no payload (an envelope of ~200
		// bytes), was over the cap and dead-lettered.
		"tiny max_call_bytes": {"dispatch: {max_call_bytes: 150}\n", "dispatch.max_call_bytes: must be at least 1024"},
		// A soft limit meant as MiB made the garbage collector run without
		// pause; a budget meant as MiB paused every partition.
		"soft limit under the budget": {"memory: {soft_limit: 512}\n", "memory.soft_limit: must be at least backpressure.max_bytes"},
		"budget in MiB":               {"backpressure: {max_bytes: 6}\n", "backpressure.max_bytes: must be at least 65536"},
		// Kafka's rules for topic names: these failed only at start, as
		// "the DLQ topics ... do not exist: create them".
		"topic with a space":  {"routes: [{topic: \"orders v2\", workflow_type: W, workflow_id: \"w-{key}\", task_queue: q}]\n", `routes[0].topic: "orders v2" is not a Kafka topic name`},
		"topic dot dot":       {"routes: [{topic: \"..\", workflow_type: W, workflow_id: \"w-{key}\", task_queue: q}]\n", `routes[0].topic: ".." is not a Kafka topic name`},
		"DLQ topic too long":  {"routes: [{topic: " + strings.Repeat("a", 247) + ", workflow_type: W, workflow_id: \"w-{key}\", task_queue: q}]\n", "routes[0].topic: its DLQ topic " + strings.Repeat("a", 247) + ".dlq is longer than Kafka's 249 characters"},
		"suffix with a slash": {"dlq: {suffix: /dead}\n", `dlq.suffix: "/dead" makes DLQ topic names Kafka refuses`},
		// The bridge trips each circuit at start with as many failures
		// when Temporal cannot be reached: 20 million took 54 s a circuit
		// before it joined its group; 2^32 wrapped to 0, any failure
		// opening it.
		"huge circuit failures": {"backpressure: {circuit: {failures: 4294967296}}\n", "backpressure.circuit.failures: must be at most 10000"},
	} {
		t.Run(name, func(t *testing.T) {
			yaml := valuesBase + tc.yaml
			if strings.HasPrefix(tc.yaml, "routes:") {
				yaml = "kafka: {brokers: [b:9092], group: g}\n" + tc.yaml
			}
			_, err := Parse([]byte(yaml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// YAML merge keys share settings between routes; "<<" was taken for an
// unknown field.
func TestRoutesMaySharesSettingsThroughMergeKeys(t *testing.T) {
	cfg, err := Parse([]byte(`kafka: {brokers: [b:9092], group: g}
routes:
  - &orders {topic: orders, workflow_type: W, workflow_id: "w-{key}", task_queue: q, type_header: event-type, types: [A]}
  - <<: *orders
    types: [B]
    workflow_type: V
`))
	require.NoError(t, err)
	require.Len(t, cfg.Routes, 2)
	assert.Equal(t, "orders", cfg.Routes[1].Topic)
	assert.Equal(t, "V", cfg.Routes[1].WorkflowType)
	assert.Equal(t, []string{"B"}, cfg.Routes[1].Types)
}

// Values written plainly still load: zero where zero is meant, durations
// with units, plain and underscored whole numbers, YAML 1.1's yes and off
// for true and false (yaml reads them so into a bool; the check of words
// for true or false first refused them).
func TestPlainValuesStillLoad(t *testing.T) {
	cfg, err := Parse([]byte(valuesBase + `batch: {linger: 0s, max_records: 500}
dispatch: {coalesce: {max_window: 0s}, max_call_bytes: 1000000}
backpressure: {backlog: {low_tasks: 0}, max_bytes: 6e6}
metrics: {pprof: yes, listen: "127.0.0.1:"}
dlq: {transactional: Off}
`))
	require.NoError(t, err)
	assert.True(t, cfg.Metrics.Pprof)
	assert.False(t, cfg.DLQ.Transactional)
	assert.Equal(t, 6_000_000, cfg.Backpressure.MaxBytes, "a whole number in exponent form")
	assert.Zero(t, cfg.Batch.Linger)
	assert.Equal(t, 500, cfg.Batch.MaxRecords)
	assert.Zero(t, cfg.Dispatch.Coalesce.MaxWindow)
	assert.Zero(t, cfg.Backpressure.Backlog.LowTasks)
	assert.Equal(t, time.Duration(0), cfg.Batch.Linger)
}

// Names a route gives Temporal or matches records against, padded with
// spaces or blank, loaded: no worker polled a task queue " orders", an
// event type "A " matched no record, and Temporal keeps task queues under
// /_sys/ for itself.
func TestRouteNamesThatMatchNothingAreRefused(t *testing.T) {
	const base = `topic: orders, workflow_id: "w-{key}"`
	for name, tc := range map[string]struct{ route, want string }{
		"blank task queue":     {`task_queue: "  ", workflow_type: W`, `routes[0].task_queue: "  " is blank`},
		"padded task queue":    {`task_queue: " orders", workflow_type: W`, `routes[0].task_queue: " orders" has spaces at its ends`},
		"system task queue":    {`task_queue: "/_sys/orders", workflow_type: W`, `routes[0].task_queue: "/_sys/orders" is in Temporal's reserved /_sys/ prefix`},
		"padded workflow type": {`task_queue: q, workflow_type: "Order "`, `routes[0].workflow_type: "Order " has spaces at its ends`},
		"padded type":          {`task_queue: q, workflow_type: W, type_header: event-type, types: ["A "]`, `routes[0].types[0]: "A " has spaces at its ends`},
		"padded type header":   {`task_queue: q, workflow_type: W, type_header: "event-type "`, `routes[0].type_header: "event-type " has spaces at its ends`},
		// Over Temporal's limit.maxIDLength, every call is refused: each
		// record was dead-lettered for the route's fault.
		"long task queue":    {`task_queue: ` + strings.Repeat("q", 1001) + `, workflow_type: W`, `routes[0].task_queue: 1001 bytes, over the 1000 Temporal takes`},
		"long workflow type": {`task_queue: q, workflow_type: ` + strings.Repeat("W", 1001), `routes[0].workflow_type: 1001 bytes, over the 1000 Temporal takes`},
		"long signal":        {`task_queue: q, workflow_type: W, signal: ` + strings.Repeat("s", 1001), `routes[0].signal: 1001 bytes, over the 1000 Temporal takes`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("kafka: {brokers: [b:9092], group: g}\nroutes: [{" + base + ", " + tc.route + "}]\n"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A workflow ID template whose literal text alone is over Temporal's limit
// makes every record's workflow ID too long: each was dead-lettered for the
// route's fault.
func TestAWorkflowIDTemplateTooLongForAnyRecordIsRefused(t *testing.T) {
	_, err := Parse([]byte("kafka: {brokers: [b:9092], group: g}\nroutes: [{topic: orders, task_queue: q, workflow_type: W, workflow_id: \"" +
		strings.Repeat("w", 1000) + "-{key}\"}]\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "routes[0].workflow_id: its literal text alone is 1001 bytes, over the 1000 Temporal takes")
}

// A route's concurrency set to 0 in the file became dispatch.concurrency,
// every worker, instead of the error its range names (0 was taken for
// "not set", as for a field never written).
func TestARouteConcurrencyOfZeroIsRefused(t *testing.T) {
	_, err := Parse([]byte("kafka: {brokers: [b:9092], group: g}\ndispatch: {concurrency: 64}\nroutes:\n" +
		"- {topic: a, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q}\n" +
		"- {topic: b, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q, concurrency: 0}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "routes[1].concurrency: must be at least 1")
	assert.NotContains(t, err.Error(), "routes[0]")
}

// A leading zero in a memo or search attribute value was read as octal
// and set on every workflow: a ZIP code 02134 became 1116, priority 010
// became 8, where every other whole number with one is refused.
func TestOctalInMemoAndSearchAttributesIsRefused(t *testing.T) {
	_, err := Parse([]byte("kafka: {brokers: [b:9092], group: g}\nroutes:\n- topic: t\n  workflow_type: W\n  workflow_id: \"w-{key}\"\n" +
		"  task_queue: q\n  memo: {zip: 02134, nested: {list: [1, 007]}, fine: \"0123\", zero: 0}\n" +
		"  search_attributes: {Priority: {type: int, value: 010}}\n"))
	require.Error(t, err)
	for _, want := range []string{
		"routes[0].memo.zip: 02134 has a leading zero, which YAML reads as octal",
		"routes[0].memo.nested.list[1]: 007 has a leading zero",
		"routes[0].search_attributes.Priority.value: 010 has a leading zero",
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "fine")
	assert.NotContains(t, err.Error(), "zero:")
}

// A name matched exactly, padded: the bridge joined another consumer group
// (a ConfigMap value's trailing newline) and started at its initial
// offset, replaying or skipping the topic, and nothing failed.
func TestPaddedNamesAreRefused(t *testing.T) {
	const route = "routes: [{topic: t, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q}]\n"
	for _, tc := range []struct{ env, file, want string }{
		{env: "SAGABRIDGE_KAFKA_GROUP=orders\n", want: `kafka.group: "orders\n" has spaces at its ends`},
		{file: `kafka: {brokers: [b:9092], group: "orders "}`, want: `kafka.group: "orders " has spaces at its ends`},
		{env: "SAGABRIDGE_KAFKA_CLIENT_ID= bridge", want: `kafka.client_id: " bridge" has spaces at its ends`},
		{env: "SAGABRIDGE_TEMPORAL_NAMESPACE=prod\r\n", want: `temporal.namespace: "prod\r\n" has spaces at its ends`},
		{file: "kafka: {brokers: [b:9092], group: g}\ntemporal: {namespace: \" \"}", want: `temporal.namespace: " " is blank`},
		{file: "kafka: {brokers: [b:9092], group: g, isolation_level: read_committed, version: 3.6.0}\ndlq: {transactional: true, transactional_id_prefix: \"bridge \"}",
			want: `dlq.transactional_id_prefix: "bridge " has spaces at its ends`},
	} {
		file := tc.file
		if file == "" {
			file = "kafka: {brokers: [b:9092], group: g}"
		}
		var env []string
		if tc.env != "" {
			env = []string{tc.env}
		}
		e, err := FromEnv(env)
		require.NoError(t, err, tc.env)
		_, err = Parse([]byte(file+"\n"+route), e)
		if assert.Error(t, err, tc.want) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
}

// A template that can only make IDs Temporal refuses was accepted, and
// every record of the route was dead-lettered: literal text of exactly
// 1000 bytes (each placeholder adds at least a byte), the topic's name
// making it longer than that, a control character (a YAML block scalar
// ends the text in a newline; a tab). ("{topic}" alone stays allowed: one
// workflow for a topic of records without keys.)
func TestAWorkflowIDTemplateThatCanOnlyMakeRefusedIDsIsRefused(t *testing.T) {
	for name, tc := range map[string]struct{ route, want string }{
		"1000 bytes of literal text": {`{topic: orders, task_queue: q, workflow_type: W, workflow_id: "` + strings.Repeat("w", 1000) + `{key}"}`,
			"routes[0].workflow_id: its literal text alone is 1000 bytes; with its placeholders every ID is over the 1000 Temporal takes"},
		"the topic's name": {`{topic: orders, task_queue: q, workflow_type: W, workflow_id: "` + strings.Repeat("w", 993) + `{topic}-{key}"}`,
			"routes[0].workflow_id: its literal text alone is 994 bytes; with its placeholders every ID is over the 1000 Temporal takes"},
		"a block scalar's newline": {"\n  topic: orders\n  task_queue: q\n  workflow_type: W\n  workflow_id: >\n    order-{key}\n",
			`routes[0].workflow_id: "order-{key}\n" holds a control character (U+000A) in its text, which Temporal refuses in a workflow ID`},
		"a tab": {"{topic: orders, task_queue: q, workflow_type: W, workflow_id: \"order\t{key}\"}",
			`routes[0].workflow_id: "order\t{key}" holds a control character (U+0009) in its text`},
	} {
		_, err := Parse([]byte("kafka: {brokers: [b:9092], group: g}\nroutes:\n- " + tc.route + "\n"))
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), tc.want, name)
		}
	}
	for _, ok := range []string{"{type}", "{topic}", "{topic}-{key}", strings.Repeat("w", 999) + "{key}"} {
		_, err := Parse([]byte("kafka: {brokers: [b:9092], group: g}\nroutes: [{topic: orders, type_header: t, task_queue: q, workflow_type: W, workflow_id: \"" + ok + "\"}]\n"))
		assert.NoError(t, err, ok)
	}
}
