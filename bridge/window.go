package bridge

import (
	"container/list"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/sagabridge/sagabridge/event"
)

// End-to-end flow control. The one-call-in-flight rule frees a workflow's
// slot when its signal is in history, not when the workflow has applied
// it; a workflow with slow handlers on a hot key would otherwise receive
// signals faster than it applies them, and could never continue as new
// (its next input would carry them all) or would run into Temporal's
// history and signal limits. So the bridge remembers, per workflow, what it
// sent and does not yet know applied; past dispatch.workflow_window_records
// or _bytes it asks the workflow (event.AppliedQuery) and waits until the
// workflow has caught up.
//
// The answer to that question waits behind the workflow's queued workflow
// tasks, seconds under load. So the bridge asks early too: once a window is
// half full it asks in the background and goes on sending; a workflow that
// keeps up has answered before its window fills and is never held back, and
// one that does not is held at the full window as before.
//
// A workflow is asked one question at a time, early or not: a call held
// while a question is in flight waits for its answer rather than asking
// again. Temporal buffers one query per workflow while a workflow task is
// pending (history.MaxBufferedQueryCount, default 1) and refuses a second
// with ResourceExhausted, which the SDK retries with a backoff that
// doubles from 200 ms; a held call that asked beside an early question was
// released that much after the answer that would have released it.

// maxWindows is how many workflows' windows are remembered; the least
// recently sent to are forgotten first (they have long applied what they
// got, or at worst are allowed one more window).
const maxWindows = 10000

// maxCallsPerWindow bounds the entries a workflow's window keeps: past it
// two entries of one partition are merged into the later one (its records
// and bytes the sum, its offset the higher of the two; see merge), so a
// merged entry is confirmed once the workflow applied both: late, never
// early. One entry per call, kept until the workflow was asked
// (at half its window, 5,000 one-record calls by default), made 64 bytes a
// call outside the memory budget: 320 MiB for 1,000 such workflows. With
// more partitions than this in one window, it keeps one entry for each.
const maxCallsPerWindow = 16

// maxEarlyQuestions bounds the early questions in flight across all
// workflows; past it a workflow is asked when its window is full.
const maxEarlyQuestions = 16

// windows remembers what each workflow was sent and not seen applied. Safe
// for concurrent use.
type windows struct {
	maxRecords, maxBytes int

	mu   sync.Mutex
	byID map[string]*list.Element // of *window
	lru  list.List                // most recently sent first
	// exempt holds, for each workflow type that did not answer the query,
	// until when it is sent without flow control (exemptFor).
	exempt map[string]time.Time
	now    func() time.Time
	// asking are the workflows with a question in flight; kept apart from
	// their windows, which may be forgotten meanwhile. early counts the
	// early questions among them.
	asking map[string]*inflightQuestion
	early  int
}

// inflightQuestion is one question in flight to a workflow; done is closed when
// it ends, whatever its outcome.
type inflightQuestion struct {
	done  chan struct{}
	early bool
}

// window is one workflow's unconfirmed calls.
type window struct {
	id             string
	calls          []sentCall // oldest first
	records, bytes int
}

// sentCall is one accepted call: its records' partition, the highest
// offset among them, and their count and size.
type sentCall struct {
	partition      event.Position // Offset: the call's highest offset
	records, bytes int
}

// exemptFor is how long a workflow type that did not answer the applied
// query goes without flow control before it is asked again: long enough
// not to ask an old worker's every workflow, short enough that the
// exemption ends with a rolling deploy.
const exemptFor = 5 * time.Minute

func newWindows(maxRecords, maxBytes int, now func() time.Time) *windows {
	return &windows{maxRecords: maxRecords, maxBytes: maxBytes, byID: map[string]*list.Element{}, exempt: map[string]time.Time{},
		asking: map[string]*inflightQuestion{}, now: now}
}

// exemptLocked reports whether workflowType goes without flow control now,
// and ends an exemption that has run out. The caller holds ws.mu.
func (ws *windows) exemptLocked(workflowType string) bool {
	until, ok := ws.exempt[workflowType]
	if ok && !ws.now().Before(until) {
		delete(ws.exempt, workflowType)
		return false
	}
	return ok
}

// fits reports whether records and bytes more may be sent to id now; a
// workflow with nothing unconfirmed may always be sent one call.
func (ws *windows) fits(id, workflowType string, records, bytes int) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.fitsLocked(id, workflowType, records, bytes)
}

func (ws *windows) fitsLocked(id, workflowType string, records, bytes int) bool {
	if ws.exemptLocked(workflowType) {
		return true
	}
	el, ok := ws.byID[id]
	if !ok {
		return true
	}
	w := el.Value.(*window)
	return w.records == 0 || (w.records+records <= ws.maxRecords && w.bytes+bytes <= ws.maxBytes)
}

// next tells a call that needs records and bytes more of id's window what
// to do: go (fits), wait until the question in flight to id's workflow
// ends (inFlight is closed then), or ask it (neither: the caller now owns
// id's question and must call answered(id) once it ends).
func (ws *windows) next(id, workflowType string, records, bytes int) (fits bool, inFlight <-chan struct{}) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.fitsLocked(id, workflowType, records, bytes) {
		return true, nil
	}
	if q := ws.asking[id]; q != nil {
		return false, q.done
	}
	ws.asking[id] = &inflightQuestion{done: make(chan struct{})}
	return false, nil
}

// question is the done channel of the question in flight to id's
// workflow, which the caller owns (next); nil if none is.
func (ws *windows) question(id string) <-chan struct{} {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if q := ws.asking[id]; q != nil {
		return q.done
	}
	return nil
}

// room is how many records and bytes id's window has left: all of it when
// nothing is unconfirmed, no bound when workflowType is not
// flow-controlled.
func (ws *windows) room(id, workflowType string) (records, bytes int) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.exemptLocked(workflowType) {
		return math.MaxInt, math.MaxInt
	}
	el, ok := ws.byID[id]
	if !ok {
		return ws.maxRecords, ws.maxBytes
	}
	w := el.Value.(*window)
	if w.records == 0 {
		return ws.maxRecords, ws.maxBytes
	}
	return max(0, ws.maxRecords-w.records), max(0, ws.maxBytes-w.bytes)
}

// sent records an accepted call of records records (bytes bytes) whose
// highest position is last; nothing for a workflowType that is not
// flow-controlled, whose calls are never confirmed.
func (ws *windows) sent(id, workflowType string, last event.Position, records, bytes int) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.exemptLocked(workflowType) {
		return
	}
	el, ok := ws.byID[id]
	if !ok {
		el = ws.lru.PushFront(&window{id: id})
		ws.byID[id] = el
		if ws.lru.Len() > maxWindows {
			oldest := ws.lru.Back()
			ws.lru.Remove(oldest)
			delete(ws.byID, oldest.Value.(*window).id)
		}
	} else {
		ws.lru.MoveToFront(el)
	}
	w := el.Value.(*window)
	w.calls = append(w.calls, sentCall{partition: last, records: records, bytes: bytes})
	w.records += records
	w.bytes += bytes
	if len(w.calls) > maxCallsPerWindow {
		w.merge()
	}
}

// merge merges two entries of one partition, next to each other among
// that partition's entries, into the later one (maxCallsPerWindow): the
// pair with the fewest records together, so that the entries stay about
// even and an answer confirms all but about one entry's share of what the
// workflow applied. Nothing when every entry is of another partition.
func (w *window) merge() {
	type key struct {
		topic, topicID string
		partition      int32
	}
	prev := map[key]int{} // each partition's latest entry so far
	from, into, least := -1, -1, 0
	for i, c := range w.calls {
		k := key{c.partition.Topic, c.partition.TopicID, c.partition.Partition}
		if j, ok := prev[k]; ok {
			if n := w.calls[j].records + c.records; from < 0 || n < least {
				from, into, least = j, i, n
			}
		}
		prev[k] = i
	}
	if from < 0 {
		return
	}
	w.calls[into].records += w.calls[from].records
	w.calls[into].bytes += w.calls[from].bytes
	// The higher offset of the two: a partition read again (revoked and
	// claimed back) sends lower offsets after higher ones.
	w.calls[into].partition.Offset = max(w.calls[into].partition.Offset, w.calls[from].partition.Offset)
	w.calls = slices.Delete(w.calls, from, from+1)
}

// askEarly reports whether id's workflow should be asked now, in the
// background, what it applied: its window is at least half full, no
// question to it is in flight, its type answers, and fewer than
// maxEarlyQuestions early ones are in flight. When it reports true the
// caller must call answered(id) once the question ends, whatever its
// outcome.
func (ws *windows) askEarly(id, workflowType string) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	el, ok := ws.byID[id]
	if !ok || ws.exemptLocked(workflowType) || ws.asking[id] != nil || ws.early >= maxEarlyQuestions {
		return false
	}
	if w := el.Value.(*window); 2*w.records < ws.maxRecords && 2*w.bytes < ws.maxBytes {
		return false
	}
	ws.asking[id] = &inflightQuestion{done: make(chan struct{}), early: true}
	ws.early++
	return true
}

// answered ends the question to id's workflow and wakes the calls that
// wait for it. The caller confirms or forgets what the answer says first,
// so they find the window as the answer left it.
func (ws *windows) answered(id string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	q := ws.asking[id]
	if q == nil {
		return
	}
	delete(ws.asking, id)
	if q.early {
		ws.early--
	}
	close(q.done)
}

// confirm drops the calls the workflow's watermarks say it applied.
func (ws *windows) confirm(id string, applied event.Watermarks) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	el, ok := ws.byID[id]
	if !ok {
		return
	}
	w := el.Value.(*window)
	kept := w.calls[:0]
	w.records, w.bytes = 0, 0
	for _, c := range w.calls {
		if applied.Covers(c.partition) {
			continue
		}
		kept = append(kept, c)
		w.records += c.records
		w.bytes += c.bytes
	}
	w.calls = kept
}

// forget drops id's window (the workflow closed or does not exist).
func (ws *windows) forget(id string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if el, ok := ws.byID[id]; ok {
		ws.lru.Remove(el)
		delete(ws.byID, id)
	}
}

// exemptType stops flow control for exemptFor for a workflow type that
// does not answer the query, and drops the window of id, the workflow of
// that type that was asked. It reports whether the type was not exempt
// before.
func (ws *windows) exemptType(id, workflowType string) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if el, ok := ws.byID[id]; ok {
		ws.lru.Remove(el)
		delete(ws.byID, id)
	}
	was := ws.exemptLocked(workflowType)
	ws.exempt[workflowType] = ws.now().Add(exemptFor)
	return !was
}
