package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// AppliedEvent is one record a workflow applied, as shown by its state query.
type AppliedEvent struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Type      string `json:"type,omitempty"`
}

// Inbox hands a workflow the records the bridge signals, each once, in the
// order the bridge sent them (offset order per partition). It is owned by
// one workflow goroutine.
type Inbox struct {
	ch workflow.ReceiveChannel
	// received counts the batches pushed: a ready update or timeout is
	// handled once the batches that came before it are (runner.readyInTurn).
	received int
	pending  []event.Envelope
	ctx      workflow.Context // the workflow's, for GetVersion
	// admittedAhead is how many of pending's first records a previous run
	// admitted already (Snapshot.InboxAdmitted).
	admittedAhead int
	// pendingBytes is the JSON size of pending (event.Envelope.JSONSize);
	// pendingBytesV1 and pendingBytesV2 as JSONSizeV1 and JSONSizeV2 count
	// it, for runs replayed from histories recorded with them
	// (carrySizeChange, carryKeyBytesChange, carryMarksChange).
	pendingBytes, pendingBytesV1, pendingBytesV2 int
	// Watermarks are the highest applied offset per topic partition; carry
	// them across ContinueAsNew.
	Watermarks event.Watermarks
	// Deduped counts records dropped because they were already applied.
	Deduped int
	// DedupedByKey counts records dropped because their idempotency key
	// was seen recently (see WithIdempotencyKeys).
	DedupedByKey int

	// OnClosed is the bridge's dispatch.on_closed_workflow policy, as the
	// last batch received said (event.Batch.OnClosed); empty until then.
	OnClosed string

	keyHeader string
	keys      *recentKeys
}

// WithIdempotencyKeys also drops records whose header named header holds a
// key seen among the last window keys: duplicates a producer wrote twice,
// which offsets cannot catch. recent are keys carried from a previous run.
// A key that is not UTF-8 or is over 64 bytes is remembered by its digest
// ("sha256:" and base64), so it survives the carry as JSON and 1,000 of
// them fit in it.
func (in *Inbox) WithIdempotencyKeys(header string, window int, recent []string) *Inbox {
	in.keyHeader = header
	digest := workflow.GetVersion(in.ctx, keyDigestChange, workflow.DefaultVersion, 1) >= 1
	in.keys = newRecentKeys(window, digest, recent)
	return in
}

// RecentKeys returns the remembered idempotency keys, oldest first, to
// carry across ContinueAsNew.
func (in *Inbox) RecentKeys() []string {
	if in.keys == nil {
		return nil
	}
	return in.keys.list()
}

// forgetKey forgets the idempotency key of e, a record admitted and then
// not applied, so that it is not taken for a duplicate when it comes again.
func (in *Inbox) forgetKey(e event.Envelope) {
	if in.keys == nil {
		return
	}
	if k, ok := e.Header(in.keyHeader); ok && len(k) > 0 {
		in.keys.forget(string(k))
	}
}

// push adds the records received in a signal to the pending ones.
func (in *Inbox) push(b event.Batch) {
	in.received++
	if b.OnClosed != "" {
		in.OnClosed = b.OnClosed
	}
	in.pending = append(in.pending, b.Events...)
	for _, e := range b.Events {
		in.pendingBytes += e.JSONSize()
		in.pendingBytesV1 += e.JSONSizeV1()
		in.pendingBytesV2 += e.JSONSizeV2()
	}
}

// NewInbox listens on signal, and answers event.AppliedQuery with its
// watermarks (the bridge's end-to-end flow control). carried are watermarks from a previous run
// (ContinueAsNew); nil starts empty.
func NewInbox(ctx workflow.Context, signal string, carried event.Watermarks) *Inbox {
	w := event.NewWatermarks()
	for k, v := range carried {
		w[k] = v
	}
	in := &Inbox{ctx: ctx, ch: workflow.GetSignalChannel(ctx, signal), Watermarks: w}
	// The handler reads the watermarks as they are when it runs; it cannot
	// fail, so a registration error only means the query name is taken.
	_ = workflow.SetQueryHandler(ctx, event.AppliedQuery, func() (event.Watermarks, error) { return in.Watermarks, nil })
	return in
}

// Next blocks until a record not yet applied arrives, admits it and returns it.
func (in *Inbox) Next(ctx workflow.Context) event.Envelope {
	for {
		if e, ok := in.admitPending(); ok {
			return e
		}
		var b event.Batch
		in.ch.Receive(ctx, &b)
		in.push(b)
	}
}

// TryNext returns the next record not yet applied without blocking; ok is
// false when none is pending. Use it to drain signals before closing.
func (in *Inbox) TryNext() (e event.Envelope, ok bool) {
	for {
		if e, ok := in.admitPending(); ok {
			return e, true
		}
		var b event.Batch
		if !in.ch.ReceiveAsync(&b) {
			return event.Envelope{}, false
		}
		in.push(b)
	}
}

// admitPending pops pending records until one is new.
func (in *Inbox) admitPending() (event.Envelope, bool) {
	for len(in.pending) > 0 {
		e := in.pending[0]
		in.pending[0] = event.Envelope{}
		in.pending = in.pending[1:]
		in.pendingBytes -= e.JSONSize()
		in.pendingBytesV1 -= e.JSONSizeV1()
		in.pendingBytesV2 -= e.JSONSizeV2()
		if in.admittedAhead > 0 { // admitted by the run that carried it
			in.admittedAhead--
			if in.keys != nil {
				if k, ok := e.Header(in.keyHeader); ok && len(k) > 0 {
					in.keys.add(string(k))
				}
			}
			return e, true
		}
		if pos := e.Position(); in.Watermarks.Untagged(pos) &&
			workflow.GetVersion(in.ctx, takeOverOnRedeliveryChange, workflow.DefaultVersion, 1) >= 1 {
			// The first record with its topic's ID takes over the
			// watermark kept without one, a redelivery too.
			in.Watermarks.TakeOver(pos)
		}
		if !in.Watermarks.Admit(e.Position()) {
			in.Deduped++
			continue
		}
		if in.keys != nil {
			if k, ok := e.Header(in.keyHeader); ok && len(k) > 0 && !in.keys.add(string(k)) {
				in.DedupedByKey++
				continue
			}
		}
		return e, true
	}
	return event.Envelope{}, false
}

// Close records the watermarks in the workflow memo, so that the bridge can
// tell a redelivered record for this closed workflow from a new one. Call it
// right before the workflow function returns, after draining with TryNext.
func (in *Inbox) Close(ctx workflow.Context) error {
	return workflow.UpsertMemo(ctx, map[string]any{event.MemoKey: in.Watermarks})
}

// takeOverOnRedeliveryChange is the workflow.GetVersion change ID that
// guards a redelivered record taking over the watermark kept without a
// topic ID (admitPending).
const takeOverOnRedeliveryChange = "sagabridge.take-over-on-redelivery"
