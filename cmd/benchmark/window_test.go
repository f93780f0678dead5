package main

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// fakeClock is an afterFunc whose timers fire only when the test says.
type fakeClock struct {
	mu     sync.Mutex
	timers []func()
}

func (f *fakeClock) after(_ time.Duration, fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.timers = append(f.timers, fn)
}

// fire runs the timers armed so far, in the order they were armed.
func (f *fakeClock) fire() {
	f.mu.Lock()
	ts := f.timers
	f.timers = nil
	f.mu.Unlock()
	for _, fn := range ts {
		fn()
	}
}

func (f *fakeClock) armed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// fakeCall is one call the fake SignalWithStart received.
type fakeCall struct {
	key     string
	offsets []int64
	release chan struct{}
}

// fakeTemporal is a SignalWithStart whose calls return when released.
type fakeTemporal struct {
	calls    chan fakeCall
	mu       sync.Mutex
	inFlight int
	maxIn    int
}

func newFakeTemporal() *fakeTemporal { return &fakeTemporal{calls: make(chan fakeCall, 100)} }

func (f *fakeTemporal) send(ctx context.Context, key string, evs []event.Envelope) error {
	f.mu.Lock()
	f.inFlight++
	f.maxIn = max(f.maxIn, f.inFlight)
	f.mu.Unlock()
	c := fakeCall{key: key, release: make(chan struct{})}
	for _, e := range evs {
		c.offsets = append(c.offsets, e.Offset)
	}
	f.calls <- c
	select {
	case <-c.release:
	case <-ctx.Done():
	}
	f.mu.Lock()
	f.inFlight--
	f.mu.Unlock()
	return nil
}

// next returns the next call, failing the test if none comes.
func (f *fakeTemporal) next(t *testing.T) fakeCall {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no call")
		return fakeCall{}
	}
}

// none fails the test if a call comes soon.
func (f *fakeTemporal) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-f.calls:
		t.Fatalf("unexpected call for %s %v", c.key, c.offsets)
	case <-time.After(50 * time.Millisecond):
	}
}

func ev(key string, off int64) event.Envelope { return event.Envelope{Key: key, Offset: off} }

func TestWindowClientSendsAKeysWindowInOneCall(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk, tmp := &fakeClock{}, newFakeTemporal()
	c := newWindowClient(ctx, time.Second, 64, tmp.send, clk.after)
	c.Add(ev("a", 1))
	c.Add(ev("b", 2))
	c.Add(ev("a", 3))
	if n := clk.armed(); n != 2 {
		t.Fatalf("%d windows opened, want one per key (2)", n)
	}
	tmp.none(t) // nothing before the window ends
	clk.fire()
	got := map[string][]int64{}
	for range 2 {
		call := tmp.next(t)
		got[call.key] = call.offsets
		close(call.release)
	}
	if !slices.Equal(got["a"], []int64{1, 3}) || !slices.Equal(got["b"], []int64{2}) {
		t.Fatalf("calls %v, want a:[1 3] b:[2]", got)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Calls() != 2 {
		t.Fatalf("%d calls, want 2", c.Calls())
	}
}

func TestWindowClientKeepsOneCallInFlightPerKey(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk, tmp := &fakeClock{}, newFakeTemporal()
	c := newWindowClient(ctx, time.Second, 64, tmp.send, clk.after)
	c.Add(ev("a", 1))
	clk.fire()
	first := tmp.next(t)
	// Events that come while the call is in flight open a new window...
	c.Add(ev("a", 2))
	c.Add(ev("a", 3))
	if clk.armed() != 1 {
		t.Fatalf("%d windows opened, want 1", clk.armed())
	}
	// ...whose end waits for the call in flight.
	clk.fire()
	tmp.none(t)
	c.Add(ev("a", 4)) // pending when the call returns: goes with the due window
	close(first.release)
	second := tmp.next(t)
	if !slices.Equal(second.offsets, []int64{2, 3, 4}) {
		t.Fatalf("second call %v, want [2 3 4]", second.offsets)
	}
	if clk.armed() != 0 {
		t.Fatalf("a window opened by an event that joined a due call")
	}
	close(second.release)
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// A window that ends after the call returned is sent at its end: on
	// the window's clock, not before it fires.
	c.Add(ev("a", 5))
	if clk.armed() != 1 {
		t.Fatalf("%d windows armed on the window clock, want 1", clk.armed())
	}
	tmp.none(t)
	clk.fire()
	third := tmp.next(t)
	if !slices.Equal(third.offsets, []int64{5}) {
		t.Fatalf("third call %v, want [5]", third.offsets)
	}
	close(third.release)
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestWindowClientBoundsCallsInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk, tmp := &fakeClock{}, newFakeTemporal()
	c := newWindowClient(ctx, time.Second, 2, tmp.send, clk.after)
	for i, k := range []string{"a", "b", "c", "d"} {
		c.Add(ev(k, int64(i)))
	}
	clk.fire()
	one, two := tmp.next(t), tmp.next(t)
	tmp.none(t) // two in flight: the others wait
	close(one.release)
	three := tmp.next(t)
	tmp.none(t)
	close(two.release)
	close(three.release)
	close(tmp.next(t).release)
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	tmp.mu.Lock()
	defer tmp.mu.Unlock()
	if tmp.maxIn != 2 {
		t.Fatalf("%d calls in flight at most, want 2", tmp.maxIn)
	}
}

func TestWindowClientWaitEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clk, tmp := &fakeClock{}, newFakeTemporal()
	c := newWindowClient(ctx, time.Second, 1, tmp.send, clk.after)
	c.Add(ev("a", 1))
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer wcancel()
	if err := c.Wait(wctx); err == nil {
		t.Fatal("Wait returned nil with an event pending")
	}
	cancel()
}

// With -window-kafka-fields the window client's records carry what the
// engine's carry beyond it: a topic ID and a partition, the same for
// every record of a key.
func TestTheWindowPathCanSendTheEnginesKafkaFields(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]event.Envelope{}
	send := func(_ context.Context, key string, evs []event.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		got[key] = append(got[key], evs...)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &harness{o: options{windowKafkaFields: true, partitions: 8}}
	p := h.openWindowWith(ctx, "t", 0, send)
	recs := []ledger.Record{{Key: "a", Value: []byte(`{}`)}, {Key: "b", Value: []byte(`{}`)}, {Key: "a", Value: []byte(`{}`)}}
	if err := p.send(recs); err != nil {
		t.Fatal(err)
	}
	if err := p.flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	a, b := got["a"], got["b"]
	if len(a) != 2 || len(b) != 1 {
		t.Fatalf("sent %v", got)
	}
	if len(a[0].TopicID) != 22 || a[0].TopicID != b[0].TopicID {
		t.Fatalf("topic IDs %q, %q: want one 22-character ID", a[0].TopicID, b[0].TopicID)
	}
	if a[0].Partition != a[1].Partition || a[0].Partition < 0 || a[0].Partition >= 8 {
		t.Fatalf("key a on partitions %d and %d, want one of 0-7", a[0].Partition, a[1].Partition)
	}
}
