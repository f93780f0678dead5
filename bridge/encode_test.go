package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// encodingTemporal encodes each batch to JSON, as the SDK's data
// converter does before it calls Temporal, and fails the call as the SDK
// does when that fails: with the encoder's error, not a gRPC status.
type encodingTemporal struct{ fakeTemporal }

func (e *encodingTemporal) SignalWithStart(ctx context.Context, t Target, b event.Batch) error {
	if _, err := json.Marshal(b); err != nil {
		e.mu.Lock()
		e.calls++
		e.mu.Unlock()
		return fmt.Errorf("unable to encode signal input: %w", err)
	}
	return e.fakeTemporal.SignalWithStart(ctx, t, b)
}

// A record whose Kafka timestamp JSON cannot carry (after the year 9999: a
// producer's clock or its code gone wrong) is poison: it is dead-lettered,
// naming its timestamp, and the partition goes on. (The SDK failed to
// encode its batch on every try, an error that is no gRPC status and so
// was retried for ever: the workflow got no other record and the
// partition's offset never moved past it.)
func TestARecordWhoseTimestampJSONCannotCarryIsDeadLettered(t *testing.T) {
	tc := &encodingTemporal{}
	dl := &fakeDLQ{}
	b := newTestBridge(t, &tc.fakeTemporal, dl)
	b.deps.Temporal = tc
	bad := msg(0, "a", `{}`)
	bad.Timestamp = time.UnixMilli(253402300800000) // 10000-01-01
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := consume(t, b, ctx, bad, msg(1, "a", `{}`))
	assert.Equal(t, int64(2), s.committed(), "the partition went on past the record")
	dl.mu.Lock()
	defer dl.mu.Unlock()
	require.Len(t, dl.failures, 1)
	assert.Equal(t, int64(0), dl.failures[0].Offset)
	assert.Equal(t, dlq.ClassDecode, dl.failures[0].Class)
	assert.Contains(t, dl.failures[0].Err, "253402300800000")
}
