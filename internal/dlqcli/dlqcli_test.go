package dlqcli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/dlq"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut, now)
	return code, out.String(), errOut.String()
}

// No broker answers on this address; every case must fail before dialing.
const noBroker = "127.0.0.1:1"

func TestUsageErrorsExitTwoAndNameTheFlag(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "a command is required"},
		{"unknown command", []string{"purge"}, `unknown command "purge"`},
		{"no brokers", []string{"list", "-topic", "t.dlq"}, "-brokers is required"},
		{"no topic", []string{"list", "-brokers", noBroker}, "-topic"},
		{"topic and source", []string{"list", "-brokers", noBroker, "-topic", "a", "-source", "b"}, "not both"},
		{"suffix without source", []string{"list", "-brokers", noBroker, "-topic", "a", "-suffix", ".x"}, "-suffix"},
		{"empty suffix", []string{"list", "-brokers", noBroker, "-source", "a", "-suffix", ""}, "-suffix is empty"},
		{"bad version", []string{"list", "-brokers", noBroker, "-topic", "a", "-kafka-version", "banana"}, "-kafka-version"},
		{"bad class", []string{"list", "-brokers", noBroker, "-topic", "a", "-class", "nope"}, "-class"},
		{"bad since", []string{"list", "-brokers", noBroker, "-topic", "a", "-since", "yesterday"}, "-since"},
		{"negative since", []string{"list", "-brokers", noBroker, "-topic", "a", "-since", "-1h"}, "-since"},
		{"empty window", []string{"list", "-brokers", noBroker, "-topic", "a", "-since", "1h", "-until", "2h"}, "-since"},
		{"unknown flag", []string{"list", "-brokers", noBroker, "-topic", "a", "-nope"}, "-nope"},
		{"stray argument", []string{"list", "-brokers", noBroker, "-topic", "a", "extra"}, `unexpected argument "extra"`},
		{"show without position", []string{"show", "-brokers", noBroker, "-topic", "a"}, "-partition and -offset are required"},
		{"show partition only", []string{"show", "-brokers", noBroker, "-topic", "a", "-partition", "0"}, "go together"},
		{"show negative offset", []string{"show", "-brokers", noBroker, "-topic", "a", "-partition", "0", "-offset", "-3"}, "-offset -3"},
		{"redrive no selection", []string{"redrive", "-brokers", noBroker, "-topic", "a"}, "-all"},
		{"redrive dry run no selection", []string{"redrive", "-brokers", noBroker, "-topic", "a", "-dry-run"}, "no entries selected"},
		{"redrive offset only", []string{"redrive", "-brokers", noBroker, "-topic", "a", "-offset", "3"}, "go together"},
		{"redrive position and filter", []string{"redrive", "-brokers", noBroker, "-topic", "a", "-partition", "0", "-offset", "1", "-class", "decode"}, "cannot be combined"},
		{"redrive all and filter", []string{"redrive", "-brokers", noBroker, "-topic", "a", "-all", "-class", "decode"}, "-all"},
		{"redrive max zero", []string{"redrive", "-brokers", noBroker, "-topic", "a", "-all", "-max-redrives", "0"}, "-max-redrives 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(c.args...)
			assert.Equal(t, exitUsage, code, "stderr: %s", stderr)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, c.want)
			assert.Contains(t, stderr, "usage: bridge dlq")
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	code, stdout, _ := runCLI("help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, "redrive")
	code, _, stderr := runCLI("list", "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stderr, "-workflow-id")
}

func TestUnreachableBrokerExitsOne(t *testing.T) {
	code, _, stderr := runCLI("list", "-brokers", noBroker, "-source", "orders")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, stderr, "connect to Kafka ["+noBroker+"]")
}

func TestParseWhen(t *testing.T) {
	got, err := parseWhen("2026-11-25T10:00:00Z", now)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), got)
	got, err = parseWhen("90m", now)
	require.NoError(t, err)
	assert.Equal(t, now.Add(-90*time.Minute), got)
	for _, bad := range []string{"", "0s", "-1h", "2026-11-25", "tomorrow"} {
		_, err := parseWhen(bad, now)
		assert.Error(t, err, bad)
	}
}

func TestTruncateAndOneLine(t *testing.T) {
	assert.Equal(t, "short", truncate("short", 80))
	long := strings.Repeat("é", 100)
	got := truncate(long, 80)
	assert.Equal(t, 80, len([]rune(got)))
	assert.True(t, strings.HasSuffix(got, "…"))
	assert.Equal(t, "a b c", oneLine("a\nb\tc"))
	// A terminal's escape sequences, from an error that quotes payload
	// bytes, were printed raw to the operator's terminal.
	assert.Equal(t, `bad \x1b]0;pwned\a \u009b2J`, oneLine("bad \x1b]0;pwned\a \u009b2J"))
}

func TestPayload(t *testing.T) {
	kind, body := payload([]byte(`{"a":1,"b":[true]}`))
	assert.Equal(t, "json", kind)
	assert.Equal(t, "{\n  \"a\": 1,\n  \"b\": [\n    true\n  ]\n}", body)
	kind, body = payload([]byte("{not json"))
	assert.Equal(t, "text", kind)
	assert.Equal(t, "{not json", body)
	kind, body = payload([]byte{0x00, 0xff, 'A'})
	assert.Equal(t, "binary, hex", kind)
	assert.Contains(t, body, "00 ff 41")
	kind, _ = payload(nil)
	assert.Equal(t, "null", kind)
}

func TestInline(t *testing.T) {
	assert.Equal(t, "(null)", inline(nil))
	assert.Equal(t, `""`, inline([]byte{}))
	assert.Equal(t, "order-1", inline([]byte("order-1")))
	assert.Equal(t, `"a\nb"`, inline([]byte("a\nb")))
	assert.Equal(t, "(base64) AP8=", inline([]byte{0x00, 0xff}))
}

func TestJSONEncodesBytesAsTextOrBase64(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 5, time.UTC)
	e := dlq.Entry{Partition: 0, Offset: 4, Redrives: 2, Failure: dlq.Failure{
		Topic: "orders", Partition: 1, Offset: 9, Key: []byte("k"), Value: []byte{0xff, 0x00},
		Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte("v")}, {Key: []byte("n")}},
		Class:   dlq.ClassActivity, Err: "boom", FailedAt: at, Attempts: 3,
		WorkflowID: "order-1", RunID: "run-1", ActivityType: "Charge",
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "vendor=x",
	}}
	data, err := json.Marshal(toJSON("orders.dlq", e, nil))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	assert.Equal(t, map[string]any{
		"dlq_topic": "orders.dlq", "dlq_partition": 0.0, "dlq_offset": 4.0,
		"topic": "orders", "partition": 1.0, "offset": 9.0,
		"class": "activity", "error": "boom", "failed_at": "2026-11-25T10:00:00.000000005Z",
		"attempts": 3.0, "redrives": 2.0, "workflow_id": "order-1", "run_id": "run-1", "activity": "Charge",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "vendor=x",
		"key": "k", "key_encoding": "utf8", "value": "/wA=", "value_encoding": "base64",
		"headers": []any{
			map[string]any{"key": "h", "value": "v", "value_encoding": "utf8"},
			map[string]any{"key": "n", "value": nil, "value_encoding": "null"},
		},
	}, m)
}

// The tool says so when -config's kafka section accepts any certificate,
// as the bridge does at start (it was silent).
func TestTheToolWarnsOfACertificateItDoesNotCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`kafka: {brokers: ["127.0.0.1:1"], connect_timeout: 1s, tls: {enabled: true, insecure_skip_verify: true}}
`), 0o600))
	_, _, stderr := runCLI("list", "-config", path, "-topic", "orders.dlq")
	assert.Contains(t, stderr, "kafka.tls.insecure_skip_verify is on")
}

// `list -json` of a dead letter written in reduced form says so, and what
// the value's size was: its null value is not the record's. (It read
// exactly as the dead letter of a tombstone.) A timestamp past year 9999
// is listed too. (time.Time's JSON refused it: list -json failed.)
func TestListJSONMarksAReducedDeadLetterAndTakesAnyTimestamp(t *testing.T) {
	big := dlq.Failure{Topic: "orders", Offset: 9, Key: []byte("k"), Value: make([]byte, 2<<20), Class: dlq.ClassRejected, Err: "too large",
		FailedAt: time.Now(), Timestamp: time.UnixMilli(1_700_000_000_000_000)}
	e, err := dlq.EntryOf(consumed(big.Reduced().Message(dlq.DefaultSuffix)))
	require.NoError(t, err)
	data, err := json.Marshal(toJSON("orders.dlq", e, nil))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	assert.Equal(t, "dropped: value (2097152 bytes)", m["reduced"])
	assert.Equal(t, float64(2<<20), m["value_size"])
	assert.Equal(t, "1700000000000000", m["timestamp"])
	var table strings.Builder
	writeTable(&table, []dlq.Entry{e}, []*dlq.Redrive{nil})
	assert.Contains(t, table.String(), "[reduced, dropped: value (2097152 bytes)] too large")

	tomb := dlq.Failure{Topic: "orders", Offset: 10, Key: []byte("k"), Class: dlq.ClassDecode, Err: "x", FailedAt: time.Now()}
	e, err = dlq.EntryOf(consumed(tomb.Message(dlq.DefaultSuffix)))
	require.NoError(t, err)
	data, err = json.Marshal(toJSON("orders.dlq", e, nil))
	require.NoError(t, err)
	assert.NotContains(t, string(data), "reduced")
}

// consumed is m as a consumer reads it back.
func consumed(m *sarama.ProducerMessage) *sarama.ConsumerMessage {
	c := &sarama.ConsumerMessage{Topic: m.Topic}
	if m.Key != nil {
		c.Key, _ = m.Key.Encode()
	}
	if m.Value != nil {
		c.Value, _ = m.Value.Encode()
	}
	for i := range m.Headers {
		c.Headers = append(c.Headers, &m.Headers[i])
	}
	return c
}

// -source with -config finds the DLQ where that configuration's bridge
// writes it (dlq.suffix); -suffix overrides it. (The tool looked for
// <source>.dlq whatever the file said: "topic does not exist", or an old
// DLQ of that name.) The file's Temporal secrets need not be mounted where
// the tool runs, which talks to Kafka only (the file was refused).
func TestSourceWithConfigUsesItsDLQSuffix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte("kafka:\n  brokers: [\"127.0.0.1:1\"]\n  group: g\ndlq:\n  suffix: .deadletter\n"+
		"temporal:\n  tls: {enabled: true}\n  api_key_file: /var/run/secrets/temporal/api-key\n"), 0o600))
	resolve := func(args ...string) string {
		c := &command{name: "list", stdout: io.Discard, stderr: io.Discard}
		tg := c.flags("")
		require.NoError(t, c.Flags.Parse(args))
		set := map[string]bool{}
		c.Flags.Visit(func(f *flag.Flag) { set[f.Name] = true })
		require.NoError(t, tg.resolve(set))
		return tg.dlqTopic
	}
	assert.Equal(t, "orders.deadletter", resolve("-config", path, "-source", "orders"))
	assert.Equal(t, "orders.x", resolve("-config", path, "-source", "orders", "-suffix", ".x"))
	assert.Equal(t, "orders.dlq", resolve("-brokers", noBroker, "-source", "orders"))
}
