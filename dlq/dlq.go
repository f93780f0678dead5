// Package dlq is the dead-letter contract shared by the bridge and eos: where
// a failed record goes, what it carries, and how to read it back.
//
// A DLQ record keeps the original key, value and headers unchanged (but a
// "json" value dead-lettered by a workflow's DeadLetter activity is the
// same document, not the same bytes: see contract.DeadLetterInput) and adds
// headers (all prefixed "sagabridge.dlq.") that say where the record came
// from and why it failed. Its topic is the original topic plus a suffix,
// ".dlq" by default.
//
// This package is the contract only (records, headers, reading back,
// redriving): it must not import the bridge, eos, workflows or Temporal.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// DefaultSuffix is appended to a topic's name to name its DLQ topic.
const DefaultSuffix = ".dlq"

// Header names added to every DLQ record.
const (
	HeaderPrefix     = "sagabridge.dlq."
	HeaderTopic      = HeaderPrefix + "topic"       // original topic
	HeaderPartition  = HeaderPrefix + "partition"   // original partition, decimal
	HeaderOffset     = HeaderPrefix + "offset"      // original offset, decimal
	HeaderErrorClass = HeaderPrefix + "error.class" // one of the Class values
	HeaderError      = HeaderPrefix + "error"       // the error message
	HeaderFailedAt   = HeaderPrefix + "failed.at"   // RFC 3339 with nanoseconds, UTC
	HeaderAttempts   = HeaderPrefix + "attempts"    // delivery attempts made, decimal; absent when unknown
	// HeaderTimestamp is the original record's timestamp (RFC 3339 with
	// nanoseconds, UTC; past year 9999, which RFC 3339 cannot write, Unix
	// milliseconds in decimal), when it had one: the dead letter's own timestamp
	// is when it was written (the DLQ's retention counts from then), and
	// a redrive gives the record its own back.
	HeaderTimestamp  = HeaderPrefix + "timestamp"
	HeaderWorkflowID = HeaderPrefix + "workflow.id" // target workflow, when known
	HeaderRunID      = HeaderPrefix + "run.id"      // workflow run, when known
	HeaderActivity   = HeaderPrefix + "activity"    // activity type, for a failed activity
	// HeaderEventID is the ID of a dead letter written by an activity
	// (activities.DeadLetterer): the same on every attempt of the
	// activity, so a repeat is recognisable.
	HeaderEventID = HeaderPrefix + "event.id"
	// HeaderTraceParent and HeaderTraceState are the W3C trace context of
	// the writer of the dead letter (an activity's span), kept apart from
	// the record's own traceparent and tracestate.
	HeaderTraceParent = HeaderPrefix + "traceparent"
	HeaderTraceState  = HeaderPrefix + "tracestate"
	// OriginalPrefix renames an original header that uses sagabridge's
	// names, so it cannot pass for one of the DLQ's (Failure.Message).
	OriginalPrefix = "original."
	// HeaderRedriveCount is set by Redrive on the re-produced record (not a
	// DLQ header: it travels with the record back to its original topic).
	HeaderRedriveCount = "sagabridge.redrive.count"
)

// Class says why a record was dead-lettered.
type Class string

// The failure classes.
const (
	// ClassDecode: the value could not be decoded (for example invalid JSON).
	ClassDecode Class = "decode"
	// ClassRoute: no route matches the record, or the route cannot build a
	// workflow ID from it (for example an empty key).
	ClassRoute Class = "route"
	// ClassRejected: Temporal rejected the call with a non-retryable error.
	ClassRejected Class = "temporal_rejected"
	// ClassWorkflowClosed: a new record arrived for a workflow that has
	// already closed.
	ClassWorkflowClosed Class = "workflow_closed"
	// ClassProcess: an eos.Processor's function kept failing on the record
	// (or called it permanent).
	ClassProcess Class = "process"
	// ClassActivity: a saga activity exhausted its retry policy; the record
	// is the event that started the failed step.
	ClassActivity Class = "activity"
)

// TopicFor names the DLQ topic of topic.
func TopicFor(topic, suffix string) string { return topic + suffix }

// Failure is one record that could not be delivered, with its context.
type Failure struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []sarama.RecordHeader
	Class     Class
	Err       string
	FailedAt  time.Time
	Attempts  int
	// Timestamp is the original record's timestamp; zero when it had none.
	Timestamp time.Time
	// WorkflowID, RunID and ActivityType say where in Temporal the record
	// failed, when it did; empty otherwise.
	WorkflowID   string
	RunID        string
	ActivityType string
	// EventID identifies a dead letter an activity wrote, the same on
	// every attempt; empty for the bridge's.
	EventID string
	// TraceParent and TraceState are the writer's trace context, when it
	// traced; the record's own are among Headers.
	TraceParent, TraceState string

	// reduced says what Reduced dropped; valueSize is the dropped value's size.
	reduced   string
	valueSize int
}

// FromMessage describes msg failing with class and err.
func FromMessage(msg *sarama.ConsumerMessage, class Class, err error, attempts int, now time.Time) Failure {
	f := Failure{
		Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset,
		Key: msg.Key, Value: msg.Value,
		Class: class, Err: err.Error(), FailedAt: now.UTC(), Attempts: attempts,
	}
	if msg.Timestamp.UnixMilli() > 0 { // sarama's for "none" (-1, or a v0 record) is not after 1970
		f.Timestamp = msg.Timestamp.UTC()
	}
	for _, h := range msg.Headers {
		if h != nil {
			f.Headers = append(f.Headers, *h)
		}
	}
	return f
}

// Message builds the DLQ record for f on the topic named by suffix. The
// original headers come first, then the DLQ headers. An original header in
// sagabridge's namespace ("sagabridge.", other than HeaderRedriveCount), or
// one that looks renamed already, is renamed OriginalPrefix+name: a
// producer cannot forge the DLQ's context (a workflow ID the DLQ tool would
// list and filter by). RedriveMessage restores the names.
func (f Failure) Message(suffix string) *sarama.ProducerMessage {
	hs := make([]sarama.RecordHeader, 0, len(f.Headers)+10)
	for _, h := range f.Headers {
		if k := string(h.Key); renamed(k) || (k == HeaderRedriveCount && !validCount(h.Value)) {
			// A count that is no count is the producer's, not the
			// redrive tool's: kept aside, it cannot make the dead letter
			// unreadable, and a redrive sets the count afresh.
			h.Key = []byte(OriginalPrefix + k)
		}
		hs = append(hs, h)
	}
	add := func(k, v string) { hs = append(hs, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)}) }
	add(HeaderTopic, f.Topic)
	add(HeaderPartition, strconv.FormatInt(int64(f.Partition), 10))
	add(HeaderOffset, strconv.FormatInt(f.Offset, 10))
	add(HeaderErrorClass, string(f.Class))
	add(HeaderError, f.Err)
	add(HeaderFailedAt, f.FailedAt.UTC().Format(time.RFC3339Nano))
	if f.Attempts > 0 { // 0: unknown (a saga step under an unlimited retry policy)
		add(HeaderAttempts, strconv.Itoa(f.Attempts))
	}
	if !f.Timestamp.IsZero() {
		add(HeaderTimestamp, FormatTimestamp(f.Timestamp))
	}
	if f.WorkflowID != "" {
		add(HeaderWorkflowID, f.WorkflowID)
	}
	if f.RunID != "" {
		add(HeaderRunID, f.RunID)
	}
	if f.ActivityType != "" {
		add(HeaderActivity, f.ActivityType)
	}
	for _, h := range [...][2]string{{HeaderEventID, f.EventID}, {HeaderTraceParent, f.TraceParent}, {HeaderTraceState, f.TraceState}} {
		if h[1] != "" {
			add(h[0], h[1])
		}
	}
	hs = append(hs, f.reducedHeaders()...)
	msg := &sarama.ProducerMessage{Topic: TopicFor(f.Topic, suffix), Headers: hs}
	if f.Key != nil {
		msg.Key = sarama.ByteEncoder(f.Key)
	}
	if f.Value != nil {
		msg.Value = sarama.ByteEncoder(f.Value)
	}
	return msg
}

// Parse reads a DLQ record back into a Failure. It fails, naming the header,
// when a required DLQ header is missing or malformed.
func Parse(msg *sarama.ConsumerMessage) (Failure, error) {
	f := Failure{Key: msg.Key, Value: msg.Value}
	seen := map[string]string{}
	for _, h := range msg.Headers {
		if h == nil {
			continue
		}
		k := string(h.Key)
		if strings.HasPrefix(k, HeaderPrefix) {
			seen[k] = string(h.Value)
			continue
		}
		f.Headers = append(f.Headers, *h)
	}
	var errs []error
	need := func(k string) string {
		v, ok := seen[k]
		if !ok {
			errs = append(errs, fmt.Errorf("header %s missing", k))
		}
		return v
	}
	f.Topic = need(HeaderTopic)
	if p, err := strconv.ParseInt(need(HeaderPartition), 10, 32); err == nil {
		f.Partition = int32(p)
	} else if _, ok := seen[HeaderPartition]; ok {
		errs = append(errs, fmt.Errorf("header %s: %w", HeaderPartition, err))
	}
	if o, err := strconv.ParseInt(need(HeaderOffset), 10, 64); err == nil {
		f.Offset = o
	} else if _, ok := seen[HeaderOffset]; ok {
		errs = append(errs, fmt.Errorf("header %s: %w", HeaderOffset, err))
	}
	f.Class = Class(need(HeaderErrorClass))
	f.Err = seen[HeaderError]
	f.WorkflowID = seen[HeaderWorkflowID]
	f.RunID = seen[HeaderRunID]
	f.ActivityType = seen[HeaderActivity]
	f.EventID = seen[HeaderEventID]
	f.TraceParent, f.TraceState = seen[HeaderTraceParent], seen[HeaderTraceState]
	f.reduced = seen[HeaderReduced]
	f.valueSize, _ = strconv.Atoi(seen[HeaderValueSize])
	if v, ok := seen[HeaderFailedAt]; ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("header %s: %w", HeaderFailedAt, err))
		}
		f.FailedAt = t
	}
	if v, ok := seen[HeaderTimestamp]; ok {
		t, err := ParseTimestamp(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("header %s: %w", HeaderTimestamp, err))
		}
		f.Timestamp = t
	}
	if v, ok := seen[HeaderAttempts]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("header %s: %w", HeaderAttempts, err))
		}
		f.Attempts = n
	}
	if len(errs) > 0 {
		return f, fmt.Errorf("dlq record %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, errors.Join(errs...))
	}
	return f, nil
}

// Writer writes failures to their DLQ topic. Write returns only once the
// broker has acknowledged the record, so the caller may then commit the
// original offset. Implementations are safe for concurrent use.
type Writer interface {
	Write(ctx context.Context, f Failure) error
}

// ProducerWriter is a Writer over a sarama SyncProducer. It does not own the
// producer; the caller closes it.
type ProducerWriter struct {
	Producer sarama.SyncProducer
	// Alone sends one record per request (a producer of AloneConfig): a
	// dead letter the broker refused in a batch as too large is written
	// again through it, so that only a record too large alone is. Optional.
	Alone  sarama.SyncProducer
	Suffix string
}

// AloneConfig is c for a producer that sends each record in a request of
// its own (Producer.Flush.MaxMessages 1), so a broker judges each record's
// size alone. A broker refuses a whole batch whose records exceed the
// topic's max.message.bytes together, and sarama fails every record in it.
func AloneConfig(c *sarama.Config) *sarama.Config {
	alone := *c
	alone.Producer.Flush.MaxMessages = 1
	alone.Producer.Flush.Messages = min(alone.Producer.Flush.Messages, 1) // sarama refuses Messages above MaxMessages
	return &alone
}

// Write sends f and waits for the broker's acknowledgement, or until ctx
// ends (see Send). A write given up on may still land (the caller does not
// commit past f, so f may then be written twice).
func (w ProducerWriter) Write(ctx context.Context, f Failure) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	topic := TopicFor(f.Topic, w.Suffix)
	if err := SendOrAlone(ctx, w.Producer, w.Alone, func() *sarama.ProducerMessage { return f.Message(w.Suffix) }); err != nil {
		return fmt.Errorf("write %s/%d@%d to %s: %w", f.Topic, f.Partition, f.Offset, topic, err)
	}
	return nil
}

// Bounded returns p with at most n sends under way through Send at once.
// A send given up on (its context ended) goes on in sarama until its
// retries end, its goroutine and record held: against a broker that takes
// connections and never answers, every attempt of every activity added
// one (500 attempts of 100 KB outcomes: 523 goroutines and 108 MiB). Send
// waits for room, and a send whose context ends meanwhile is not sent.
func Bounded(p sarama.SyncProducer, n int) sarama.SyncProducer {
	return &bounded{SyncProducer: p, slots: make(chan struct{}, max(n, 1))}
}

// bounded is a SyncProducer of Bounded.
type bounded struct {
	sarama.SyncProducer
	slots chan struct{}
}

// Send sends msg with p and waits for the broker's acknowledgement, or
// for ctx to end: sarama's send does not watch a context, and its retries
// and read timeouts can hold a send for minutes. A send given up on may
// still land. Through a producer of Bounded it first waits for room.
func Send(ctx context.Context, p sarama.SyncProducer, msg *sarama.ProducerMessage) error {
	if err := ctx.Err(); err != nil { // the caller may be closing the producer: send nothing new
		return fmt.Errorf("not sent: %w", context.Cause(ctx))
	}
	release := func() {}
	if b, ok := p.(*bounded); ok {
		select {
		case b.slots <- struct{}{}:
			release = func() { <-b.slots }
		case <-ctx.Done():
			return fmt.Errorf("not sent: the producer's %d sends under way have not ended (is the broker answering?): %w", cap(b.slots), context.Cause(ctx))
		}
	}
	done := make(chan error, 1)
	go func() {
		defer release()
		defer func() {
			// Here no caller's recovery reaches (the SDK's, for an
			// activity): a panic would end the process.
			if r := recover(); r != nil {
				done <- fmt.Errorf("the producer panicked (closed, or nil?): %v", r)
			}
		}()
		_, _, err := p.SendMessage(msg)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("given up before the broker acknowledged it, the record may still land: %w", context.Cause(ctx))
	}
}

// SendOrAlone sends message() through p (Send); when the broker refuses it
// as too large, or refuses its batch (INVALID_RECORD: a compacted topic
// refuses a whole batch for one keyless record in it, which may be another
// sender's), and alone (a producer of AloneConfig) is set, it sends a
// fresh message() through alone, where the broker judges the record by
// itself. sarama's own refusal of a record over Producer.MaxMessageBytes
// is final: the record alone is over it.
func SendOrAlone(ctx context.Context, p, alone sarama.SyncProducer, message func() *sarama.ProducerMessage) error {
	err := Send(ctx, p, message())
	if err != nil && alone != nil && (errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrMessageSetSizeTooLarge) ||
		errors.Is(err, sarama.ErrInvalidRecord)) {
		err = Send(ctx, alone, message())
	}
	return err
}

// validCount reports whether v is a HeaderRedriveCount value: a
// non-negative decimal integer.
func validCount(v []byte) bool {
	n, err := strconv.Atoi(string(v))
	return err == nil && n >= 0
}

// reserved reports whether a header's name is in sagabridge's namespace.
// HeaderRedriveCount is not: the redrive tool set it, and a record that
// fails again carries its count into the DLQ.
func reserved(key string) bool {
	return strings.HasPrefix(key, "sagabridge.") && key != HeaderRedriveCount
}

// renamed reports whether an original header must be renamed in a dead
// letter (OriginalPrefix+key): it is reserved, or it already looks like a
// renamed one ("original.sagabridge.x"), so that RedriveMessage, which
// strips one OriginalPrefix from every name for which this holds of the
// rest, gives every header back as it was.
func renamed(key string) bool {
	if reserved(key) {
		return true
	}
	for {
		rest, ok := strings.CutPrefix(key, OriginalPrefix)
		if !ok {
			return false
		}
		// HeaderRedriveCount renamed is a producer's count that was no
		// count (Message), which a redrive replaces.
		if reserved(rest) || rest == HeaderRedriveCount {
			return true
		}
		key = rest
	}
}

// FormatTimestamp writes a record's timestamp as HeaderTimestamp holds it: RFC 3339
// with nanoseconds in UTC, or, past year 9999 (a producer that wrote
// microseconds for milliseconds, which the bridge dead-letters), Unix
// milliseconds in decimal, which ParseTimestamp reads back.
func FormatTimestamp(t time.Time) string {
	if t.UTC().Year() > 9999 {
		return strconv.FormatInt(t.UnixMilli(), 10)
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// ParseTimestamp reads what FormatTimestamp wrote.
func ParseTimestamp(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err == nil {
		return t, nil
	}
	if ms, perr := strconv.ParseInt(v, 10, 64); perr == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	return t, err
}
