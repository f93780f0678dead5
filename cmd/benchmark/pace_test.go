package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/internal/ledger"
)

// A send slower than pace's tick made the stream last as long as the sends
// took (half the rate offered), and each record's latency was counted from
// its late send, hiding the wait (coordinated omission). The stream keeps
// its rate, and each record carries the time it was due.
func TestPaceKeepsTheRateAndStampsTheDueTimeWhenSendsAreSlow(t *testing.T) {
	const rate = 1000.0
	recs := make([]ledger.Record, 500) // half a second
	for i := range recs {
		recs[i] = ledger.Record{Key: "k"}
	}
	var got []ledger.Record
	start := time.Now()
	at, late, err := pace(context.Background(), recs, rate, func(rs []ledger.Record) error {
		got = append(got, rs...)
		time.Sleep(20 * time.Millisecond) // two ticks
		return nil
	})
	require.NoError(t, err)
	took := time.Since(start)
	assert.Less(t, took, 700*time.Millisecond, "a 0.5 s stream at 20 ms a send")
	require.Len(t, got, len(recs))
	for j, r := range got {
		due := time.Duration(float64(j+1) / rate * float64(time.Second))
		require.Equal(t, due, at[j], "record %d's time in the stream", j)
		require.WithinDuration(t, start.Add(due), r.Time, 5*time.Millisecond, "record %d's stamp", j)
	}
	assert.True(t, recs[0].Time.IsZero(), "the caller's records are left as they were")
	assert.GreaterOrEqual(t, late, 10*time.Millisecond, "a send of 20 ms delays the next tick's records")
}
