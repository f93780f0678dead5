package event

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// randomEnvelopes makes n records over a few topics, partitions and keys,
// in runs, with every optional field sometimes set, from a logged seed.
func randomEnvelopes(t *testing.T, n int) []Envelope {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]Envelope, n)
	base := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	for i := range out {
		e := Envelope{
			Topic:     []string{"orders", "payments"}[rng.IntN(2)],
			Partition: int32(rng.IntN(3)),
			Offset:    int64(i * 3),
		}
		// Some keys are not UTF-8; some are null.
		e.SetKey(fmt.Sprintf([]string{"k-%d", "k-\xff%d"}[rng.IntN(2)], rng.IntN(3)))
		if rng.IntN(5) == 0 {
			e.Key, e.KeyBytes, e.KeyNull = "", nil, true
		}
		if i > 0 && rng.IntN(4) > 0 { // runs of records that share their group
			p := out[i-1]
			e.Topic, e.Partition, e.Key, e.KeyBytes, e.KeyNull, e.TopicID = p.Topic, p.Partition, p.Key, p.KeyBytes, p.KeyNull, p.TopicID
		} else if rng.IntN(2) == 0 {
			e.TopicID = "AAAAAAAAAAAAAAAAAAAAAQ"
		}
		if rng.IntN(2) == 0 {
			e.Type = "OrderPlaced"
		}
		if rng.IntN(3) == 0 {
			e.Headers = []Header{{Key: "trace", Value: []byte{0, 1, 0xff}}}
		}
		switch rng.IntN(4) {
		case 0:
			e.Value = json.RawMessage(fmt.Sprintf(`{"seq":%d}`, i))
		case 1:
			e.Raw = []byte{byte(i), 0}
		case 2:
			e.ValueEmpty = true // a bytes route's empty value, not a null one
		}
		switch rng.IntN(4) {
		case 0: // zero: no timestamp
		case 1:
			e.Timestamp = base.Add(time.Duration(rng.Int64N(1e15))) // not a whole millisecond
		case 2:
			e.Timestamp = time.UnixMilli(0).UTC() // the epoch is a timestamp, not a missing one
		default:
			e.Timestamp = time.UnixMilli(base.UnixMilli() + rng.Int64N(1e9)).UTC()
		}
		out[i] = e
	}
	return out
}

func TestCompactBatchRoundTripsEveryField(t *testing.T) {
	events := randomEnvelopes(t, 500)
	for _, compact := range []bool{false, true} {
		data, err := json.Marshal(Batch{Events: events, OnClosed: "new_run", Compact: compact})
		require.NoError(t, err)
		var got Batch
		require.NoError(t, json.Unmarshal(data, &got))
		assert.Equal(t, compact, got.Compact)
		assert.Equal(t, "new_run", got.OnClosed)
		require.Len(t, got.Events, len(events))
		for i, want := range events {
			g := got.Events[i]
			assert.True(t, want.Timestamp.Equal(g.Timestamp), "record %d timestamp %v, got %v", i, want.Timestamp, g.Timestamp)
			want.Timestamp, g.Timestamp = time.Time{}, time.Time{}
			assert.Equal(t, want.RecordKey(), g.RecordKey(), "record %d key", i)
			if want.KeyBytes != nil { // JSON wrote Key's invalid bytes as U+FFFD
				want.Key, g.Key = "", ""
			}
			assert.Equal(t, want, g, "record %d (compact %v)", i, compact)
		}
	}
}

// A batch encoded before format 2 (a plain slice of envelopes) still reads.
func TestBatchReadsTheFullFormOfOlderBridges(t *testing.T) {
	old := `{"events":[{"topic":"orders","partition":1,"offset":7,"topic_id":"X","key":"k","value":{"a":1},"timestamp":"2026-12-05T06:00:00.5+01:00"}],"on_closed":"dlq"}`
	var b Batch
	require.NoError(t, json.Unmarshal([]byte(old), &b))
	require.Len(t, b.Events, 1)
	assert.False(t, b.Compact)
	assert.Equal(t, Position{Topic: "orders", Partition: 1, Offset: 7, TopicID: "X"}, b.Events[0].Position())
	assert.Equal(t, "dlq", b.OnClosed)
	for _, empty := range []string{`{}`, `{"events":null}`, `{"events":[]}`} {
		var b Batch
		require.NoError(t, json.Unmarshal([]byte(empty), &b), empty)
		assert.Empty(t, b.Events, empty)
	}
}

// A decoder of the full form alone (every worker before format 2) fails on
// the compact form rather than reading records without their partition:
// that is why the bridge sends it only when configured to.
func TestAnOlderDecoderFailsOnTheCompactForm(t *testing.T) {
	data, err := json.Marshal(Batch{Events: []Envelope{{Topic: "orders", Partition: 2, Offset: 9, Key: "k"}}, Compact: true})
	require.NoError(t, err)
	var old fullBatch
	assert.Error(t, json.Unmarshal(data, &old))
}

func TestAnUnknownBatchFormatIsNamed(t *testing.T) {
	var b Batch
	err := json.Unmarshal([]byte(`{"events":{"format":3,"groups":[]}}`), &b)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "format 3")
	err = json.Unmarshal([]byte(`{"events":"x"}`), &b)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "batch events")
}

// The benchmark's records (a 25-byte value, one key, one partition) take
// under 40 % of the bytes in the compact form.
func TestCompactFormIsSmallForOneKeysRecords(t *testing.T) {
	events := make([]Envelope, 50)
	for i := range events {
		events[i] = Envelope{Topic: "latency-warm-1000-1764900000", Partition: 3, Offset: int64(100000 + 7*i),
			TopicID: "AAAAAAAAAAAAAAAAAAAAAQ", Key: "lat1764900000-123", Value: json.RawMessage(`{"seq":1234,"total":21495}`),
			Timestamp: time.UnixMilli(1764900000123 + int64(i)).UTC()}
	}
	full, err := json.Marshal(Batch{Events: events})
	require.NoError(t, err)
	compact, err := json.Marshal(Batch{Events: events, Compact: true})
	require.NoError(t, err)
	t.Logf("50 records: full %d bytes, compact %d", len(full), len(compact))
	assert.Less(t, 10*len(compact), 4*len(full))
}
