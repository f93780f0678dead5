package dlq

import (
	"fmt"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAReducedDeadLetterAlwaysFitsAndSaysWhatWasDropped(t *testing.T) {
	f := Failure{Topic: "orders", Partition: 3, Offset: 42, Key: []byte(strings.Repeat("k", 5000)),
		Value: make([]byte, 3<<20), Class: ClassRejected, Err: strings.Repeat("e", 10000), WorkflowID: "order-1"}
	for i := range 80_000 {
		f.Headers = append(f.Headers, sarama.RecordHeader{Key: []byte(fmt.Sprint("h", i)), Value: []byte("v")})
	}
	r := f.Reduced()
	msg := r.Message(DefaultSuffix)
	size := msg.ByteSize(2)
	assert.Less(t, size, 64<<10, "a reduced dead letter fits any DLQ topic")
	back, err := Parse(&sarama.ConsumerMessage{Topic: "orders.dlq", Key: r.Key, Value: nil, Headers: headerPtrs(msg.Headers)})
	require.NoError(t, err)
	assert.Equal(t, "orders", back.Topic)
	assert.Equal(t, int64(42), back.Offset)
	assert.Equal(t, "order-1", back.WorkflowID)
	assert.True(t, back.IsReduced())
	assert.Contains(t, back.reduced, "value (3145728 bytes)")
	assert.Contains(t, back.reduced, "key truncated from 5000 bytes")
	assert.Contains(t, back.reduced, "of 80000 headers")
	assert.Equal(t, 3<<20, back.valueSize)
	assert.Equal(t, []byte("h0"), back.Headers[0].Key, "the first original headers are kept, in order")
	assert.False(t, f.IsReduced(), "the original is untouched")
}

func TestTooLargeKnowsTheProducersAndTheBrokersRefusals(t *testing.T) {
	assert.True(t, TooLarge(sarama.ErrMessageSizeTooLarge))
	assert.True(t, TooLarge(fmt.Errorf("write: %w", sarama.ErrMessageSetSizeTooLarge)))
	assert.True(t, TooLarge(sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes: 3 > 1")))
	assert.False(t, TooLarge(sarama.ErrOutOfBrokers))
}

func headerPtrs(hs []sarama.RecordHeader) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, len(hs))
	for i := range hs {
		out[i] = &hs[i]
	}
	return out
}

func TestTooLargeRecordsNamesOnlyTheRecordsRefusedForTheirSize(t *testing.T) {
	big, other := &sarama.ProducerMessage{}, &sarama.ProducerMessage{}
	err := sarama.ProducerErrors{
		{Msg: big, Err: sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes: 3 > 1")},
		{Msg: other, Err: sarama.ErrNotLeaderForPartition},
	}
	assert.Equal(t, map[*sarama.ProducerMessage]bool{big: true}, TooLargeRecords(fmt.Errorf("send: %w", err)))
	assert.Nil(t, TooLargeRecords(sarama.ErrMessageSizeTooLarge), "no per-record errors")
}

func TestWithinReducesOnlyADeadLetterOverTheProducersLimit(t *testing.T) {
	f := Failure{Topic: "orders", Offset: 7, Value: make([]byte, 1500), Class: ClassRejected, Err: "rejected"}
	size := f.Message(DefaultSuffix).ByteSize(2)
	assert.Greater(t, size, 1500, "the DLQ's headers count")
	assert.False(t, f.Within(DefaultSuffix, size).IsReduced(), "at the limit it fits")
	assert.False(t, f.Within(DefaultSuffix, 0).IsReduced(), "0: no limit")
	r := f.Within(DefaultSuffix, size-1)
	require.True(t, r.IsReduced(), "one byte over the limit")
	assert.LessOrEqual(t, r.Message(DefaultSuffix).ByteSize(2), size-1)
	assert.Equal(t, int64(7), r.Offset)
}
