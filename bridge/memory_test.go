package bridge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// gateTemporal holds every call until open is closed.
type gateTemporal struct {
	*fakeTemporal
	open chan struct{}
}

func (g gateTemporal) SignalWithStart(ctx context.Context, t Target, b event.Batch) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.fakeTemporal.SignalWithStart(ctx, t, b)
}

// sarama decodes a record's key, value and headers as slices of the fetch
// response they came in (up to 256 KiB per partition here), so a record
// the bridge holds would keep its whole response in memory. While catching
// up, the records held longest are the rare keys' ones, each from another
// response: the in-flight budget would count a few bytes for each and the
// process would hold hundreds of KiB. The bridge copies what it keeps.
func TestAHeldRecordDoesNotPinItsFetchResponse(t *testing.T) {
	const records, response = 64, 256 << 10
	g := gateTemporal{fakeTemporal: &fakeTemporal{}, open: make(chan struct{})}
	b := newTestBridge(t, g.fakeTemporal, &fakeDLQ{})
	b.deps.Temporal = g
	b.dispatcher.start(4)
	defer b.dispatcher.stop()

	before := heapInUse()
	ch := make(chan *sarama.ConsumerMessage, records)
	for i := range records { // each record from its own response
		resp := make([]byte, response)
		n := copy(resp, fmt.Sprintf(`{"n":%d}`, i))
		m := msg(int64(i), fmt.Sprintf("k%d", i), "")
		m.Value = resp[:n:n]
		k := copy(resp[n:], m.Key)
		m.Key = resp[n : n+k : n+k]
		ch <- m
	}
	grown := holdBehindGate(t, b, g, ch, records) - before

	assert.Less(t, grown, int64(records*response/4),
		"holding %d records of a few bytes grew the heap by %d bytes: they pin their fetch responses", records, grown)
	assert.Len(t, g.accepted, records)
}

// While a backlog drains, the bridge holds up to backpressure.max_records
// records, most of them small (catch-up: 40-byte values), so what each costs
// beyond its bytes decides how many fit in a process's memory, and so how
// many records a call can group. Held as whole envelopes beside their
// workflow and route, 20,000 such records took 362 heap bytes each here; a
// record keeps only what its partition and unit do not (record): 234.
func TestAHeldRecordCostsLittleHeapBeyondItsBytes(t *testing.T) {
	const records, keys, perRecord = 20000, 1000, 320
	g := gateTemporal{fakeTemporal: &fakeTemporal{}, open: make(chan struct{})}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Routes:   []config.Route{{Topic: "orders", WorkflowType: "O", WorkflowID: "ledger-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: g, DeadLetters: &fakeDLQ{}, Logger: quiet()})
	require.NoError(t, err)
	b.dispatcher.start(64)
	defer b.dispatcher.stop()

	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, keys-1)
	ch := make(chan *sarama.ConsumerMessage)
	before := heapInUse()
	go func() { // made as they are read, so that only what the bridge holds stays
		for i := range records {
			v := fmt.Sprintf(`{"seq":%d,"pad":"`, i)
			v += strings.Repeat("x", 38-len(v)) + `"}` // 40 bytes
			ch <- &sarama.ConsumerMessage{Topic: "orders", Offset: int64(i), Key: fmt.Appendf(nil, "key-%d", zipf.Uint64()),
				Value: []byte(v), Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i))}
		}
	}()
	grown := holdBehindGate(t, b, g, ch, records) - before

	t.Logf("holding %d records grew the heap by %d bytes, %d per record", records, grown, grown/records)
	assert.Less(t, grown/records, int64(perRecord), "heap bytes per held 40-byte record")
}

// holdBehindGate consumes ch until the bridge holds records records (g
// keeps every call waiting), reads the live heap, then opens g and waits
// until all are committed. It returns the heap read while they were held.
func holdBehindGate(t *testing.T, b *Bridge, g gateTemporal, ch chan *sarama.ConsumerMessage, records int64) int64 {
	t.Helper()
	s := &fakeSession{ctx: context.Background()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch}))
	}()
	require.Eventually(t, func() bool { r, _ := b.pressure.held(); return r == records }, 20*time.Second, time.Millisecond)
	heap := heapInUse()
	close(g.open)
	require.Eventually(t, func() bool { return s.committed() == records }, 20*time.Second, time.Millisecond)
	close(ch)
	<-done
	return heap
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
