package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

func router(t *testing.T, routes ...config.Route) *Router {
	t.Helper()
	r, err := NewRouter(routes, dlq.DefaultSuffix)
	require.NoError(t, err)
	return r
}

func rec(topic, key, value string, headers ...string) *sarama.ConsumerMessage {
	m := &sarama.ConsumerMessage{Topic: topic, Partition: 2, Offset: 7, Key: []byte(key), Value: []byte(value)}
	for i := 0; i+1 < len(headers); i += 2 {
		m.Headers = append(m.Headers, &sarama.RecordHeader{Key: []byte(headers[i]), Value: []byte(headers[i+1])})
	}
	return m
}

func poisonClass(t *testing.T, err error) dlq.Class {
	t.Helper()
	var p *PoisonError
	require.True(t, errors.As(err, &p), "want a PoisonError, got %v", err)
	return p.Class
}

func TestRouteByHeaderTypes(t *testing.T) {
	r := router(t,
		config.Route{Topic: "orders", TypeHeader: "event-type", Types: []string{"OrderPlaced"}, WorkflowType: "Order", WorkflowID: "order-{key}", TaskQueue: "q1"},
		config.Route{Topic: "orders", TypeHeader: "event-type", Types: []string{"Audit"}, WorkflowType: "Audit", WorkflowID: "{type}-{topic}-{key}", TaskQueue: "q2", Signal: "audit"},
	)
	target, env, err := r.Route(rec("orders", "42", `{"a":1}`, "event-type", "OrderPlaced"))
	require.NoError(t, err)
	assert.Equal(t, Target{WorkflowType: "Order", WorkflowID: "order-42", TaskQueue: "q1", Signal: "events"}, target)
	assert.Equal(t, "OrderPlaced", env.Type)
	assert.JSONEq(t, `{"a":1}`, string(env.Value))
	assert.Equal(t, int64(7), env.Offset)

	target, _, err = r.Route(rec("orders", "42", `{}`, "event-type", "Audit"))
	require.NoError(t, err)
	assert.Equal(t, "Audit-orders-42", target.WorkflowID)
	assert.Equal(t, "audit", target.Signal)

	_, _, err = r.Route(rec("orders", "42", `{}`, "event-type", "Unknown"))
	assert.Equal(t, dlq.ClassRoute, poisonClass(t, err))
	assert.ErrorContains(t, err, `no route for event type "Unknown"`)
}

func TestRouteByJSONField(t *testing.T) {
	r := router(t, config.Route{Topic: "pay", TypeField: "kind", WorkflowType: "P", WorkflowID: "p-{key}", TaskQueue: "q"})
	_, env, err := r.Route(rec("pay", "k", `{"kind":"Charged","amount":3}`))
	require.NoError(t, err)
	assert.Equal(t, "Charged", env.Type)

	_, _, err = r.Route(rec("pay", "k", `[1,2]`))
	assert.Equal(t, dlq.ClassDecode, poisonClass(t, err))
	_, _, err = r.Route(rec("pay", "k", `{"kind":5}`))
	assert.Equal(t, dlq.ClassRoute, poisonClass(t, err))
}

func TestRoutePoison(t *testing.T) {
	r := router(t, config.Route{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"})
	_, _, err := r.Route(rec("orders", "1", `{"broken`, "event-type", "X"))
	assert.Equal(t, dlq.ClassDecode, poisonClass(t, err))
	assert.ErrorContains(t, err, "orders/2@7 is not valid JSON")

	_, _, err = r.Route(rec("orders", "1", `{}`))
	assert.Equal(t, dlq.ClassRoute, poisonClass(t, err))
	assert.ErrorContains(t, err, `no "event-type" header`)

	_, _, err = r.Route(rec("orders", "", `{}`, "event-type", "X"))
	assert.Equal(t, dlq.ClassRoute, poisonClass(t, err))
	assert.ErrorContains(t, err, "empty {key}")

	_, _, err = r.Route(rec("other", "1", `{}`))
	assert.Equal(t, dlq.ClassRoute, poisonClass(t, err))
}

func TestRouteBytesPayloadPassesThrough(t *testing.T) {
	r := router(t, config.Route{Topic: "bin", Payload: config.PayloadBytes, WorkflowType: "B", WorkflowID: "b-{key}", TaskQueue: "q"})
	_, env, err := r.Route(rec("bin", "k", "\x00\xff not json"))
	require.NoError(t, err)
	assert.Equal(t, []byte("\x00\xff not json"), env.Raw)
	assert.Nil(t, env.Value)
}

// Keys and type headers that Temporal would refuse (its gRPC layer answers
// Internal for a non-UTF-8 ID, which is retried forever) go to the DLQ when
// routed, with the reason.
func TestRouteRefusesWorkflowIDsTemporalWouldRefuse(t *testing.T) {
	r := router(t, config.Route{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"})
	for name, c := range map[string]struct {
		key, typ, want string
	}{
		"binary key":       {"\x0a\xff\xfe\x01", "E", "not valid UTF-8"},
		"2,000-byte key":   {strings.Repeat("k", 2000), "E", "over Temporal's limit of 1000"},
		"control in key":   {"a\x00b", "E", "control characters"},
		"binary type":      {"ok", "\xc3\x28", `"event-type" header (the event type) is not valid UTF-8`},
		"key at the limit": {strings.Repeat("k", MaxWorkflowIDBytes-len("order-")), "E", ""},
	} {
		_, _, err := r.Route(rec("orders", c.key, `{}`, "event-type", c.typ))
		if c.want == "" {
			assert.NoError(t, err, name)
			continue
		}
		assert.Equal(t, dlq.ClassRoute, poisonClass(t, err), name)
		assert.ErrorContains(t, err, c.want, name)
	}
}

// An event type read from a JSON field with an invalid byte was taken
// with the byte replaced by U+FFFD: two types "Order\xff" and "Order\xfe"
// routed to one workflow as one type. A type header like it is refused;
// so is the field now, while a replacement character the producer wrote
// is text like any other.
func TestATypeFieldThatIsNotValidTextIsRefused(t *testing.T) {
	r := router(t, config.Route{Topic: "ev", TypeField: "type", WorkflowType: "W", TaskQueue: "q", WorkflowID: "{type}-{key}"})
	for _, v := range []string{"{\"type\":\"Order\xff\"}", `{"type":"Order\ud800"}`} {
		_, _, err := r.Route(rec("ev", "k1", v))
		if assert.Error(t, err, v) {
			assert.Equal(t, dlq.ClassRoute, poisonClass(t, err), v)
			assert.ErrorContains(t, err, `its field "type" (the event type) is not valid UTF-8 text`, v)
		}
	}
	target, env, err := r.Route(rec("ev", "k1", `{"type":"Order\ufffd"}`))
	require.NoError(t, err)
	assert.Equal(t, "Order\ufffd", env.Type)
	assert.Equal(t, "Order\ufffd-k1", target.WorkflowID)
}

// The size a call is split by is what is really sent: JSON, with header
// values and bytes payloads in base64 and escapes counted (once 560,221
// bytes were estimated for a 2,560,265-byte payload).
func TestWireSizeIsWhatIsSent(t *testing.T) {
	many := make([]event.Header, 80_000)
	for i := range many {
		many[i] = event.Header{Key: fmt.Sprint("h", i), Value: []byte("v")}
	}
	binary := make([]byte, 1<<20)
	for i := range binary {
		binary[i] = byte(i)
	}
	for name, env := range map[string]event.Envelope{
		"small json":     {Topic: "orders", Key: "42", Type: "OrderPlaced", Value: json.RawMessage(`{"a":1}`)},
		"80,000 headers": {Topic: "orders", Key: "42", Headers: many, Value: json.RawMessage(`{}`)},
		"binary bytes":   {Topic: "orders", Key: "42", Raw: binary, Headers: []event.Header{{Key: "trace", Value: binary[:5000]}}},
		"escapes":        {Topic: "orders", Key: `a"<b>&\` + "\x01", Type: "<T>", Value: json.RawMessage(`{"s":"<&>"}`)},
		"binary key":     {Topic: "orders", Key: "\xff\xfe\x00k", KeyBytes: []byte("\xff\xfe\x00k"), Value: json.RawMessage(`{}`)},
	} {
		sent, err := json.Marshal(env)
		require.NoError(t, err)
		got := wireSize(env)
		assert.GreaterOrEqual(t, got, len(sent), "%s: never low", name)
		assert.LessOrEqual(t, got, len(sent)+len(sent)/50+200, "%s: close", name)
	}
}

// A held record keeps only what its partition does not say (record): the
// envelope it sends and the Kafka record it gives the DLQ are rebuilt from
// it and its flow, and must be what the record was.
func TestARecordRebuildsItsEnvelopeAndKafkaRecord(t *testing.T) {
	b, err := New(config.Config{
		Kafka: config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Routes: []config.Route{
			{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"},
			{Topic: "blobs", Payload: config.PayloadBytes, WorkflowType: "B", WorkflowID: "blob-{topic}", TaskQueue: "q"},
		},
	}, Deps{Temporal: &fakeTemporal{}, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	at := time.Date(2026, 12, 3, 18, 19, 14, 123456789, time.FixedZone("CET", 3600))
	for _, m := range []*sarama.ConsumerMessage{
		{Topic: "orders", Partition: 3, Offset: 41, Key: []byte("o-1"), Value: []byte(`{"amount": 5}`), Timestamp: at,
			Headers: []*sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte("Placed")}, {Key: []byte("bin"), Value: []byte{0, 255}}}},
		{Topic: "blobs", Partition: 7, Offset: 9, Value: []byte{1, 2, 3}},             // null key, zero timestamp
		{Topic: "blobs", Partition: 7, Offset: 10, Key: []byte{}, Value: nil},         // empty key, tombstone
		{Topic: "blobs", Partition: 7, Offset: 11, Key: []byte("b"), Value: []byte{}}, // empty value
	} {
		f := &flow{topic: m.Topic, partition: m.Partition, topicID: "AAAAAAAAAAAAAAAAAAAAAA"}
		detach(m)
		r, err := b.route(f, m)
		require.NoError(t, err, "%s/%d@%d", m.Topic, m.Partition, m.Offset)
		_, want, _, err := b.router.resolve(m)
		require.NoError(t, err)
		want.TopicID = f.topicID

		assert.Equal(t, want, r.envelope(f), "envelope of %s/%d@%d", m.Topic, m.Partition, m.Offset)
		assert.Equal(t, want.Position(), r.position(f))
		got := r.message(f)
		wantMsg := *m
		wantMsg.Timestamp = m.Timestamp.UTC()
		if len(m.Headers) == 0 {
			wantMsg.Headers = nil
		}
		assert.Equal(t, &wantMsg, got, "Kafka record of %s/%d@%d", m.Topic, m.Partition, m.Offset)
	}
}
