package dlq

import (
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func hdr(k, v string) sarama.RecordHeader {
	return sarama.RecordHeader{Key: []byte(k), Value: []byte(v)}
}

func encoded(t *testing.T, e sarama.Encoder) []byte {
	t.Helper()
	if e == nil {
		return nil
	}
	b, err := e.Encode()
	require.NoError(t, err)
	return b
}

func TestRedriveMessageKeepsRecordAndCountsRedrives(t *testing.T) {
	value := []byte{0x00, 0xff, 0xfe, '{'}
	e := Entry{Partition: 0, Offset: 7, Redrives: 1, Failure: Failure{
		Topic: "orders", Partition: 3, Offset: 42, Key: []byte("k1"), Value: value,
		Headers: []sarama.RecordHeader{hdr("event-type", "OrderPlaced"), hdr(HeaderRedriveCount, "1"), hdr("trace", "abc")},
		Class:   ClassDecode, Err: "bad json", FailedAt: time.Now(), Attempts: 1,
	}}
	msg, err := RedriveMessage(e, 3)
	require.NoError(t, err)
	assert.Equal(t, "orders", msg.Topic)
	assert.Equal(t, []byte("k1"), encoded(t, msg.Key))
	assert.Equal(t, value, encoded(t, msg.Value))
	assert.Equal(t, []sarama.RecordHeader{hdr("event-type", "OrderPlaced"), hdr(HeaderRedriveCount, "2"), hdr("trace", "abc")}, msg.Headers,
		"the count is replaced in place, the other headers kept in order")
	assert.Equal(t, "1", string(e.Failure.Headers[1].Value), "the entry is not modified")
}

func TestRedriveMessageAddsCountAndDropsDLQHeaders(t *testing.T) {
	e := Entry{Failure: Failure{
		Topic: "orders", Value: []byte("v"),
		Headers: []sarama.RecordHeader{hdr("a", "1"), hdr(HeaderErrorClass, "decode"), hdr(HeaderRedriveCount, "0"), hdr(HeaderRedriveCount, "0")},
	}}
	msg, err := RedriveMessage(e, 1)
	require.NoError(t, err)
	assert.Equal(t, []sarama.RecordHeader{hdr("a", "1"), hdr(HeaderRedriveCount, "1")}, msg.Headers)
	assert.Nil(t, msg.Key, "a null key stays null")

	e.Failure.Headers = nil
	msg, err = RedriveMessage(e, 1)
	require.NoError(t, err)
	assert.Equal(t, []sarama.RecordHeader{hdr(HeaderRedriveCount, "1")}, msg.Headers)
}

func TestRedriveMessageEmptyKeyStaysEmpty(t *testing.T) {
	msg, err := RedriveMessage(Entry{Failure: Failure{Topic: "orders", Key: []byte{}}}, 3)
	require.NoError(t, err)
	require.NotNil(t, msg.Key)
	assert.Equal(t, []byte{}, encoded(t, msg.Key))
	assert.Nil(t, msg.Value)
}

func TestRedriveMessageRefusesAtTheLimit(t *testing.T) {
	e := Entry{Partition: 2, Offset: 99, Redrives: 3, Failure: Failure{Topic: "orders"}}
	_, err := RedriveMessage(e, 3)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrRedriveLimit))
	var limit *LimitError
	require.ErrorAs(t, err, &limit)
	assert.Equal(t, LimitError{Partition: 2, Offset: 99, Redrives: 3, Max: 3}, *limit)
	assert.Contains(t, err.Error(), "2@99")
	assert.Contains(t, err.Error(), "redriven 3 times")
	assert.Contains(t, err.Error(), "maximum is 3")

	e.Redrives = 5
	_, err = RedriveMessage(e, 3)
	assert.ErrorIs(t, err, ErrRedriveLimit)

	e.Redrives = 2
	msg, err := RedriveMessage(e, 3)
	require.NoError(t, err)
	assert.Equal(t, "3", string(msg.Headers[len(msg.Headers)-1].Value))
}

func TestRedriveMessageNeedsATopic(t *testing.T) {
	_, err := RedriveMessage(Entry{Partition: 1, Offset: 4}, 3)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrRedriveLimit)
	assert.Contains(t, err.Error(), "1@4")
}

// A redriven record goes back to its original partition while the topic has
// it (another producer may have hashed its key elsewhere than sarama does),
// and is hashed by key when the partition is gone.
func TestRedriveKeepsTheOriginalPartition(t *testing.T) {
	e := Entry{Failure: Failure{Topic: "orders", Partition: 2, Key: []byte("order-1")}}
	msg, err := RedriveMessage(e, 3)
	require.NoError(t, err)
	p := RedrivePartitioner("orders")
	got, err := p.Partition(msg, 8)
	require.NoError(t, err)
	assert.Equal(t, int32(2), got)
	byKey, err := sarama.NewHashPartitioner("orders").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("order-1")}, 8)
	require.NoError(t, err)
	assert.NotEqual(t, int32(2), byKey, "hashing again (the old redrive) would have moved it")

	hashed, err := sarama.NewHashPartitioner("orders").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("order-1")}, 2)
	require.NoError(t, err)
	got, err = p.Partition(msg, 2) // partition 2 is gone
	require.NoError(t, err)
	assert.Equal(t, hashed, got)
	assert.True(t, p.RequiresConsistency())
}

// A producer cannot forge the DLQ's context: headers in sagabridge's
// namespace on the original record are renamed in the dead letter, so
// Parse (and the DLQ tool's listing and -workflow-id filter) sees only the
// bridge's; a redrive gives the record its headers back as they were.
func TestForgedDLQHeadersAreRenamedAndRestoredOnRedrive(t *testing.T) {
	forged := []sarama.RecordHeader{
		{Key: []byte(HeaderWorkflowID), Value: []byte("someone-else")},
		{Key: []byte(HeaderErrorClass), Value: []byte("activity")},
		{Key: []byte("sagabridge.event.id"), Value: []byte("e-1")},
		{Key: []byte("trace-id"), Value: []byte("t")},
	}
	f := Failure{Topic: "orders", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("v"),
		Class: ClassDecode, Err: "bad", Attempts: 1, Headers: forged}
	msg := f.Message(DefaultSuffix)
	got, err := Parse(asConsumed(t, msg))
	require.NoError(t, err)
	assert.Empty(t, got.WorkflowID, "the forged workflow ID is not the DLQ's")
	assert.Equal(t, ClassDecode, got.Class)
	assert.False(t, Filter{WorkflowID: "someone-else"}.Match(got), "-workflow-id does not filter by it")
	var names []string
	for _, h := range got.Headers {
		names = append(names, string(h.Key))
	}
	assert.Equal(t, []string{"original." + HeaderWorkflowID, "original." + HeaderErrorClass, "original.sagabridge.event.id", "trace-id"}, names)

	re, err := RedriveMessage(Entry{Failure: got}, 3)
	require.NoError(t, err)
	assert.Equal(t, append(forged, sarama.RecordHeader{Key: []byte(HeaderRedriveCount), Value: []byte("1")}), re.Headers,
		"the redriven record has its own headers back, byte for byte")
}

// Headers the DLQ writer adds beside its own context (the DeadLetter
// activity's event ID) stay in the DLQ: a redrive does not send them to the
// original topic, where they would pass for the producer's.
func TestRedriveDropsWhatTheDLQWriterAdded(t *testing.T) {
	e := Entry{Failure: Failure{Topic: "orders", Key: []byte("k"), Headers: []sarama.RecordHeader{
		{Key: []byte("trace-id"), Value: []byte("t")},
		{Key: []byte("sagabridge.event.id"), Value: []byte("wf/run/7")},
	}}}
	msg, err := RedriveMessage(e, 3)
	require.NoError(t, err)
	assert.Equal(t, []sarama.RecordHeader{
		{Key: []byte("trace-id"), Value: []byte("t")},
		{Key: []byte(HeaderRedriveCount), Value: []byte("1")},
	}, msg.Headers)
}

// A dead letter written in reduced form (its value dropped, its key maybe
// cut, its headers trimmed, because the whole did not fit the DLQ topic)
// is not the original record, and redriving it would write a null value
// (a tombstone, on a compacted topic the key's deletion) under a key that
// may be wrong. RedriveMessage refuses it, naming the DLQ record, what was
// dropped and where the original is. (It redrove it.)
func TestRedriveMessageRefusesAReducedDeadLetter(t *testing.T) {
	f := Failure{Topic: "orders", Partition: 3, Offset: 42, Key: []byte("k1"), Value: make([]byte, 2<<20),
		Class: ClassRejected, Err: "too large", FailedAt: time.Now(), Attempts: 1}
	r := f.Reduced()
	msg := r.Message(DefaultSuffix)
	back, err := Parse(&sarama.ConsumerMessage{Topic: "orders.dlq", Key: r.Key, Headers: headerPtrs(msg.Headers)})
	require.NoError(t, err)
	_, err = RedriveMessage(Entry{Partition: 1, Offset: 9, Failure: back}, 3)
	require.ErrorIs(t, err, ErrReduced)
	var reduced *ReducedError
	require.ErrorAs(t, err, &reduced)
	assert.Equal(t, "DLQ record 1@9 was written in reduced form (dropped: value (2097152 bytes)) and is not the original record; "+
		"redrive the original from orders/3@42 while the topic retains it", err.Error())
}

// A producer's header that already looks renamed ("original.sagabridge.x")
// comes back from a redrive with its own name: the renaming is reversible.
// (A redrive stripped "original." from it: the source topic got
// "sagabridge.x", a name the producer never wrote.)
func TestAHeaderThatLooksRenamedComesBackAsItWas(t *testing.T) {
	own := []sarama.RecordHeader{
		{Key: []byte("original.sagabridge.x"), Value: []byte("1")},
		{Key: []byte("original.original.sagabridge.y"), Value: []byte("2")},
		{Key: []byte("sagabridge.z"), Value: []byte("3")},
		{Key: []byte("original.trace"), Value: []byte("4")},
		{Key: []byte("original." + HeaderRedriveCount), Value: []byte("5")},
	}
	f := Failure{Topic: "orders", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("v"),
		Class: ClassDecode, Err: "bad", Attempts: 1, Headers: own}
	got, err := Parse(asConsumed(t, f.Message(DefaultSuffix)))
	require.NoError(t, err)
	re, err := RedriveMessage(Entry{Failure: got}, 3)
	require.NoError(t, err)
	assert.Equal(t, append(own, sarama.RecordHeader{Key: []byte(HeaderRedriveCount), Value: []byte("1")}), re.Headers,
		"the redriven record has its own headers back, byte for byte")
}

// A producer's own sagabridge.redrive.count that is not a count ("abc")
// does not make its dead letter unreadable: the dead letter keeps it
// renamed, and a redrive sets the count afresh. (The DLQ tool refused the
// entry for ever, even with -force: "header sagabridge.redrive.count:
// "abc" is not a non-negative integer".)
func TestAMalformedRedriveCountFromTheProducerDoesNotBlockItsDeadLetter(t *testing.T) {
	f := Failure{Topic: "orders", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("v"), Class: ClassDecode, Err: "bad", Attempts: 1,
		Headers: []sarama.RecordHeader{{Key: []byte(HeaderRedriveCount), Value: []byte("abc")}, {Key: []byte("trace"), Value: []byte("t")}}}
	msg := asConsumed(t, f.Message(DefaultSuffix))
	e, err := EntryOf(msg)
	require.NoError(t, err)
	assert.Zero(t, e.Redrives)
	re, err := RedriveMessage(e, 3)
	require.NoError(t, err)
	assert.Equal(t, []sarama.RecordHeader{
		{Key: []byte(HeaderRedriveCount), Value: []byte("1")},
		{Key: []byte("trace"), Value: []byte("t")},
	}, re.Headers)
}

// A redrive record is keyed "partition@offset" whatever else it holds, as
// every version of the tool has looked it up: a tool of an earlier version
// (a rollback, an older image in a job) that looked up another key would
// redrive the entry again. (Keyed "topicID/partition@offset", it was not
// found by them.)
func TestARedriveRecordKeepsTheKeyEveryVersionLooksUp(t *testing.T) {
	msg, err := Redrive{TopicID: "AAAAAAAAAAAAAAAAAAAAAQ", Partition: 2, Offset: 7, Record: "orders/0@1#x"}.Message("orders.dlq")
	require.NoError(t, err)
	key, err := msg.Key.Encode()
	require.NoError(t, err)
	assert.Equal(t, "2@7", string(key))
}

// A tombstone for one entry's redrive leaves the record redriven when
// another entry's redrive of the same record still stands, as compaction
// leaves that one. (It forgot the record: a later run redrove it again.)
func TestATombstoneKeepsAnotherRedriveOfTheSameRecord(t *testing.T) {
	var rs Redrives
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	rs.add(RedriveKey(0, 1), Redrive{Partition: 0, Offset: 1, At: at, Record: "R"})
	rs.add(RedriveKey(0, 2), Redrive{Partition: 0, Offset: 2, At: at.Add(time.Minute), Record: "R"})
	rs.remove(RedriveKey(0, 2))
	got, ok := rs.OfRecord("R")
	require.True(t, ok, "the record's other redrive still stands")
	assert.Equal(t, int64(1), got.Offset)
	rs.remove(RedriveKey(0, 1))
	_, ok = rs.OfRecord("R")
	assert.False(t, ok)
}
