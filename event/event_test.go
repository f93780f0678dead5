package event

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWatermarksAdmitOncePerPartition(t *testing.T) {
	w := NewWatermarks()
	a := Position{Topic: "orders", Partition: 0, Offset: 5}
	assert.True(t, w.Admit(a))
	assert.False(t, w.Admit(a), "same record twice")
	assert.False(t, w.Admit(Position{Topic: "orders", Partition: 0, Offset: 4}), "older record of the same partition")
	assert.True(t, w.Admit(Position{Topic: "orders", Partition: 1, Offset: 4}), "other partition is independent")
	assert.True(t, w.Admit(Position{Topic: "payments", Partition: 0, Offset: 0}), "other topic is independent")
	assert.True(t, w.Covers(Position{Topic: "orders", Partition: 0, Offset: 0}))
	assert.False(t, w.Covers(Position{Topic: "orders", Partition: 0, Offset: 6}))
}

func TestEnvelopeHeaderReturnsLast(t *testing.T) {
	e := Envelope{Headers: []Header{{Key: "k", Value: []byte("1")}, {Key: "k", Value: []byte("2")}}}
	v, ok := e.Header("k")
	assert.True(t, ok)
	assert.Equal(t, "2", string(v))
	_, ok = e.Header("missing")
	assert.False(t, ok)
}

// A topic deleted and created again has a new ID and starts its offsets
// again: its records are new, not duplicates of the old topic's.
func TestWatermarksTellARecreatedTopicApart(t *testing.T) {
	w := NewWatermarks()
	old := Position{Topic: "orders", Partition: 0, TopicID: "A"}
	for off := range int64(10) {
		old.Offset = off
		require.True(t, w.Admit(old))
	}
	again := Position{Topic: "orders", Partition: 0, Offset: 3, TopicID: "B"}
	assert.True(t, w.Covers(Position{Topic: "orders", Partition: 0, Offset: 3, TopicID: "A"}))
	assert.False(t, w.Covers(again), "offset 3 of the new topic is a new record")
	assert.True(t, w.Admit(again))
	assert.False(t, w.Admit(again), "and applied once")
}

// Watermarks recorded before topic IDs were known stand for the first ID
// seen, so an upgrade does not apply redeliveries twice; a later ID (the
// topic recreated) does not inherit them.
func TestWatermarksWithoutTopicIDAreTakenOverByTheFirstID(t *testing.T) {
	w := Watermarks{"orders/0": 9}
	first := Position{Topic: "orders", Partition: 0, Offset: 9, TopicID: "A"}
	assert.True(t, w.Covers(first), "a redelivery after the upgrade is a duplicate")
	first.Offset = 10
	require.True(t, w.Admit(first))
	assert.Equal(t, Watermarks{"orders/0@A": 10}, w)
	assert.False(t, w.Covers(Position{Topic: "orders", Partition: 0, Offset: 5, TopicID: "B"}))
}

func TestRewindForgetsAPositionAndWhatFollows(t *testing.T) {
	w := Watermarks{"orders/0@A": 10, "orders/1": 4}
	w.Rewind(Position{Topic: "orders", Partition: 0, Offset: 7, TopicID: "A"})
	w.Rewind(Position{Topic: "orders", Partition: 1, Offset: 0})
	w.Rewind(Position{Topic: "orders", Partition: 2, Offset: 3}) // never applied: nothing to do
	assert.Equal(t, Watermarks{"orders/0@A": 6}, w)
}

// JSONSize never underestimates what encoding/json writes, so calls split
// by it stay under Temporal's payload limit.
func TestJSONSizeCoversTheEncoding(t *testing.T) {
	for _, e := range []Envelope{
		{Topic: "orders", Partition: 3, Offset: 1 << 40, Key: "k<&>\"\x01", Type: "Placed", Timestamp: time.Now()},
		{Topic: "orders", TopicID: "AAAAAAAAAAAAAAAAAAAAAA", Key: "k", Raw: []byte{0, 1, 2, 3, 4},
			Headers: []Header{{Key: "h", Value: []byte("v\x00")}}, Value: json.RawMessage(`{"a":1}`)},
		{Topic: "t", Partition: -1 << 31, Offset: -1 << 63, TopicID: "x", Key: "k", Type: "T",
			Headers: []Header{{Key: "\xff\xfe", Value: nil}}, Value: json.RawMessage(`{"html":"<a>&</a>","ls":"\u2028"}`),
			Timestamp: time.Date(2026, 12, 3, 1, 2, 3, 999999999, time.FixedZone("x", -12*3600))},
		{Topic: "t", Key: "\xc3", Type: "\u2028"},
		// Headers without a value are written as null, two bytes more
		// than the empty string they were counted as.
		{Topic: "t", Headers: slices.Repeat([]Header{{Key: "k", Value: nil}}, 100)},
		// Each byte of invalid UTF-8 is written as \ufffd, six bytes
		// (counted as three: a binary key of 1,000 bytes was 3,207
		// estimated against 6,092 written).
		{Topic: "t", Key: strings.Repeat("\xff", 1000), Headers: []Header{{Key: strings.Repeat("\xfe", 1000)}}},
	} {
		b, err := json.Marshal(e)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, e.JSONSize(), len(b), "%s", b)
	}
}

// A record read without its topic ID (the lookup failed, or an older bridge
// took the partition) is held against the partition's watermark under the
// ID it has, so a redelivery is not applied twice.
func TestARecordWithoutTopicIDIsHeldAgainstTheIDsWatermark(t *testing.T) {
	w := Watermarks{"orders/0@A": 10}
	assert.True(t, w.Covers(Position{Topic: "orders", Partition: 0, Offset: 10}))
	assert.False(t, w.Admit(Position{Topic: "orders", Partition: 0, Offset: 9}))
	require.True(t, w.Admit(Position{Topic: "orders", Partition: 0, Offset: 11}))
	assert.Equal(t, Watermarks{"orders/0@A": 11}, w, "kept under the ID")
	w.Rewind(Position{Topic: "orders", Partition: 0, Offset: 11})
	assert.Equal(t, Watermarks{"orders/0@A": 10}, w)
	assert.True(t, NewWatermarks().Admit(Position{Topic: "orders", Partition: 0, Offset: 0}))
}

// The watermark kept without a topic ID (recorded before the broker served
// IDs) is taken over by the first record with an ID, a redelivery too:
// left untagged after a redelivery of ID A, it was taken over later by the
// ID of the topic deleted and created again, B, whose new records 0 to 9
// were skipped.
func TestARedeliveryTakesOverTheUntaggedWatermark(t *testing.T) {
	w := Watermarks{"orders/0": 9}
	a := Position{Topic: "orders", Partition: 0, Offset: 9, TopicID: "A"}
	assert.True(t, w.Untagged(a))
	assert.True(t, w.TakeOver(a))
	assert.False(t, w.Admit(a), "a redelivery")
	assert.Equal(t, Watermarks{"orders/0@A": 9}, w)
	assert.False(t, w.Untagged(a))
	assert.True(t, w.Admit(Position{Topic: "orders", Partition: 0, Offset: 0, TopicID: "B"}), "B@0 is new")
	assert.False(t, w.TakeOver(Position{Topic: "orders", Partition: 1, Offset: 0, TopicID: "A"}), "nothing untagged to take over")
}
