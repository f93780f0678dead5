package dlq

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFilterMatch(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f := Failure{Class: ClassActivity, WorkflowID: "order-42", FailedAt: at}
	cases := []struct {
		name   string
		filter Filter
		want   bool
	}{
		{"zero matches all", Filter{}, true},
		{"class", Filter{Class: ClassActivity}, true},
		{"other class", Filter{Class: ClassDecode}, false},
		{"workflow", Filter{WorkflowID: "order-42"}, true},
		{"other workflow", Filter{WorkflowID: "order-4"}, false},
		{"since inclusive", Filter{Since: at}, true},
		{"since after", Filter{Since: at.Add(time.Nanosecond)}, false},
		{"until exclusive", Filter{Until: at}, false},
		{"until after", Filter{Until: at.Add(time.Nanosecond)}, true},
		{"window", Filter{Since: at.Add(-time.Hour), Until: at.Add(time.Hour)}, true},
		{"all set", Filter{Class: ClassActivity, WorkflowID: "order-42", Since: at, Until: at.Add(time.Second)}, true},
		{"all set but one", Filter{Class: ClassActivity, WorkflowID: "order-43", Since: at, Until: at.Add(time.Second)}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, c.filter.Match(f))
		})
	}
	assert.True(t, Filter{}.IsZero())
	assert.False(t, Filter{Class: ClassRoute}.IsZero())
	assert.False(t, Filter{Until: at}.IsZero())
}

func dlqRecord(t *testing.T, partition int32, offset int64, f Failure) *sarama.ConsumerMessage {
	t.Helper()
	m := asConsumed(t, f.Message(DefaultSuffix))
	m.Partition, m.Offset = partition, offset
	return m
}

func TestEntryOf(t *testing.T) {
	f := Failure{Topic: "orders", Partition: 1, Offset: 9, Key: []byte("k"), Value: []byte("v"),
		Headers: []sarama.RecordHeader{hdr(HeaderRedriveCount, "2")}, Class: ClassRoute, Err: "no route",
		FailedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Attempts: 1}
	e, err := EntryOf(dlqRecord(t, 4, 17, f))
	require.NoError(t, err)
	assert.Equal(t, Entry{Partition: 4, Offset: 17, Failure: f, Redrives: 2}, e)

	f.Headers = nil
	e, err = EntryOf(dlqRecord(t, 4, 18, f))
	require.NoError(t, err)
	assert.Zero(t, e.Redrives)
}

func TestEntryOfRejectsBadRecords(t *testing.T) {
	_, err := EntryOf(&sarama.ConsumerMessage{Topic: "orders.dlq", Partition: 2, Offset: 5, Value: []byte("x")})
	var b *BadRecord
	require.ErrorAs(t, err, &b)
	assert.Equal(t, int32(2), b.Partition)
	assert.Equal(t, int64(5), b.Offset)
	assert.Contains(t, err.Error(), "2@5")

	// A count that is no count, in a DLQ record not written by Message
	// (which keeps a producer's aside).
	m := dlqRecord(t, 0, 3, Failure{Topic: "orders", Class: ClassDecode})
	h := hdr(HeaderRedriveCount, "many")
	m.Headers = append(m.Headers, &h)
	_, err = EntryOf(m)
	require.ErrorAs(t, err, &b)
	assert.Contains(t, err.Error(), HeaderRedriveCount)
	assert.Contains(t, err.Error(), "0@3")
}

func TestRedriveCount(t *testing.T) {
	n, found, err := RedriveCount(nil)
	assert.Equal(t, 0, n)
	assert.False(t, found)
	assert.NoError(t, err)

	n, found, err = RedriveCount([]sarama.RecordHeader{hdr(HeaderRedriveCount, "1"), hdr("x", "y"), hdr(HeaderRedriveCount, "4")})
	assert.Equal(t, 4, n, "the last one wins")
	assert.True(t, found)
	assert.NoError(t, err)

	_, _, err = RedriveCount([]sarama.RecordHeader{hdr(HeaderRedriveCount, "-1")})
	assert.Error(t, err)
}

func TestBadRecordsUnwrapsJoinedAndWrapped(t *testing.T) {
	a := &BadRecord{Partition: 0, Offset: 1, Err: errors.New("a")}
	b := &BadRecord{Partition: 1, Offset: 2, Err: errors.New("b")}
	err := fmt.Errorf("list: %w", errors.Join(a, errors.New("other"), b))
	assert.Equal(t, []*BadRecord{a, b}, BadRecords(err))
	assert.Nil(t, BadRecords(nil))
}

func TestConsumerConfigIsAccepted(t *testing.T) {
	c := ConsumerConfig(sarama.V3_6_0_0)
	require.NoError(t, c.Validate())
	assert.NoError(t, checkConfig(c))
	assert.False(t, c.Metadata.AllowAutoTopicCreation)

	c.Consumer.Return.Errors = false
	assert.ErrorContains(t, checkConfig(c), "Return.Errors")
	assert.ErrorContains(t, checkConfig(sarama.NewConfig()), "ReadCommitted")
}
