package dlq

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// asConsumed turns a produced message back into what a consumer would read.
func asConsumed(t *testing.T, m *sarama.ProducerMessage) *sarama.ConsumerMessage {
	t.Helper()
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

func TestFailureRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 123, time.UTC)
	orig := &sarama.ConsumerMessage{
		Topic: "orders", Partition: 3, Offset: 42, Key: []byte("k1"), Value: []byte("{not json"),
		Headers: []*sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte("OrderPlaced")}},
	}
	f := FromMessage(orig, ClassDecode, errors.New("bad json"), 1, at)
	f.WorkflowID, f.RunID, f.ActivityType = "order-k1", "run-1", "ChargePayment"
	msg := f.Message(DefaultSuffix)
	assert.Equal(t, "orders.dlq", msg.Topic)

	back, err := Parse(asConsumed(t, msg))
	require.NoError(t, err)
	assert.Equal(t, f, back)
}

func TestParseNamesMissingHeader(t *testing.T) {
	_, err := Parse(&sarama.ConsumerMessage{Topic: "x.dlq", Headers: []*sarama.RecordHeader{
		{Key: []byte(HeaderTopic), Value: []byte("x")},
		{Key: []byte(HeaderPartition), Value: []byte("nan")},
	}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), HeaderOffset+" missing")
	assert.Contains(t, err.Error(), HeaderPartition+": ")
}

// Attempts unknown (a saga step's dead letter under an unlimited retry
// policy) leave the header out rather than say 0 attempts were made.
// (It said "0" after many.)
func TestUnknownAttemptsAreLeftOut(t *testing.T) {
	f := Failure{Topic: "orders", Partition: 1, Offset: 2, Class: ClassActivity, Err: "timed out", FailedAt: time.Now()}
	for _, h := range f.Message(DefaultSuffix).Headers {
		assert.NotEqual(t, HeaderAttempts, string(h.Key))
	}
	f.Attempts = 3
	back, err := Parse(asConsumed(t, f.Message(DefaultSuffix)))
	require.NoError(t, err)
	assert.Equal(t, 3, back.Attempts)
}

// The bridge dead-letters a record whose timestamp is past year 9999 (a
// producer that wrote microseconds) as poison; its dead letter reads back
// with that timestamp, and a redrive gives it back. (RFC 3339 has four
// digits for the year: the dead letter could not be listed, shown or
// redriven.)
func TestADeadLetterOfARecordFromPastYear9999ReadsBack(t *testing.T) {
	ts := time.UnixMilli(1_700_000_000_000_000).UTC() // microseconds taken for milliseconds
	msg := &sarama.ConsumerMessage{Topic: "orders", Partition: 0, Offset: 5, Key: []byte("k"), Value: []byte(`{}`), Timestamp: ts}
	f := FromMessage(msg, ClassDecode, errors.New("timestamp past year 9999"), 1, time.Now())
	e, err := EntryOf(asConsumed(t, f.Message(DefaultSuffix)))
	require.NoError(t, err)
	assert.True(t, ts.Equal(e.Failure.Timestamp), "timestamp %s", e.Failure.Timestamp)

	ordinary := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	msg.Timestamp = ordinary
	m := FromMessage(msg, ClassDecode, errors.New("x"), 1, time.Now()).Message(DefaultSuffix)
	i := slices.IndexFunc(m.Headers, func(h sarama.RecordHeader) bool { return string(h.Key) == HeaderTimestamp })
	require.GreaterOrEqual(t, i, 0, "no %s header", HeaderTimestamp)
	assert.Equal(t, "2026-12-07T10:00:00.123456789Z", string(m.Headers[i].Value), "an ordinary timestamp is RFC 3339")
}

// AloneConfig of a configuration that flushes after several messages is
// still one sarama takes. (It kept Flush.Messages above the MaxMessages it
// set: "Producer.Flush.MaxMessages must be >= Producer.Flush.Messages".)
func TestAloneConfigOfABatchingConfigIsValid(t *testing.T) {
	c := sarama.NewConfig()
	c.Producer.Flush.Messages = 100
	a := AloneConfig(c)
	require.NoError(t, a.Validate())
	assert.Equal(t, 1, a.Producer.Flush.MaxMessages)
	assert.Equal(t, 100, c.Producer.Flush.Messages, "the original is unchanged")
}
