package dlq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/internal/committed"
)

// Entry is one DLQ record read back: where it sits in the DLQ topic and the
// failure it describes.
type Entry struct {
	// Partition and Offset are the DLQ record's own position.
	Partition int32
	Offset    int64
	Failure   Failure
	// Redrives is the HeaderRedriveCount value among the original headers:
	// how many times the record was redriven before it failed again; 0 when
	// the header is absent.
	Redrives int
}

// Filter selects entries. A zero field matches everything.
type Filter struct {
	// Class matches Failure.Class exactly.
	Class Class
	// WorkflowID matches Failure.WorkflowID exactly.
	WorkflowID string
	// Since and Until bound Failure.FailedAt: Since inclusive, Until
	// exclusive.
	Since, Until time.Time
}

// IsZero reports whether f matches every failure.
func (f Filter) IsZero() bool { return f == Filter{} }

// Match reports whether fl passes every set field of f.
func (f Filter) Match(fl Failure) bool {
	switch {
	case f.Class != "" && fl.Class != f.Class:
		return false
	case f.WorkflowID != "" && fl.WorkflowID != f.WorkflowID:
		return false
	case !f.Since.IsZero() && fl.FailedAt.Before(f.Since):
		return false
	case !f.Until.IsZero() && !fl.FailedAt.Before(f.Until):
		return false
	}
	return true
}

// BadRecord is a record of a DLQ topic that is not a valid DLQ record.
type BadRecord struct {
	Partition int32
	Offset    int64
	Err       error
}

// Error names the record and says what is wrong with it, on one line.
func (b *BadRecord) Error() string {
	return fmt.Sprintf("DLQ record %d@%d is not a valid DLQ record: %s", b.Partition, b.Offset,
		strings.ReplaceAll(b.Err.Error(), "\n", "; "))
}

// Unwrap returns the parse error.
func (b *BadRecord) Unwrap() error { return b.Err }

// BadRecords returns the BadRecords that err (as returned by Read) carries.
func BadRecords(err error) []*BadRecord {
	var out []*BadRecord
	var walk func(error)
	walk = func(err error) {
		if b, ok := err.(*BadRecord); ok {
			out = append(out, b)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// EntryOf parses a DLQ record into an Entry. It fails, naming the record's
// partition and offset, as Parse does or when HeaderRedriveCount is not a
// non-negative integer.
func EntryOf(msg *sarama.ConsumerMessage) (Entry, error) {
	e := Entry{Partition: msg.Partition, Offset: msg.Offset}
	f, err := Parse(msg)
	e.Failure = f
	if err != nil {
		return e, &BadRecord{Partition: msg.Partition, Offset: msg.Offset, Err: err}
	}
	n, found, err := RedriveCount(f.Headers)
	if err != nil {
		return e, &BadRecord{Partition: msg.Partition, Offset: msg.Offset, Err: err}
	}
	if found {
		e.Redrives = n
	}
	return e, nil
}

// RedriveCount reads HeaderRedriveCount from hs (the last one, if
// repeated). found is false when the header is absent.
func RedriveCount(hs []sarama.RecordHeader) (n int, found bool, err error) {
	for _, h := range hs {
		if string(h.Key) != HeaderRedriveCount {
			continue
		}
		v, err := strconv.Atoi(string(h.Value))
		if err != nil || v < 0 {
			return 0, true, fmt.Errorf("header %s: %q is not a non-negative integer", HeaderRedriveCount, h.Value)
		}
		n, found = v, true
	}
	return n, found, nil
}

// ConsumerConfig is a client configuration Read and ReadRecord accept:
// read_committed, fetch errors returned (both required), no topic
// auto-creation (a mistyped topic name must not create a topic).
func ConsumerConfig(version sarama.KafkaVersion) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = version
	c.ClientID = "sagabridge-dlq"
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	c.Consumer.Return.Errors = true
	c.Metadata.AllowAutoTopicCreation = false
	return c
}

// checkConfig rejects a client configuration Read cannot work with.
func checkConfig(c *sarama.Config) error {
	switch {
	case c.Consumer.IsolationLevel != sarama.ReadCommitted:
		return errors.New("the client must be configured with Consumer.IsolationLevel = sarama.ReadCommitted (see dlq.ConsumerConfig)")
	case !c.Consumer.Return.Errors:
		return errors.New("the client must be configured with Consumer.Return.Errors = true (see dlq.ConsumerConfig)")
	}
	return nil
}

// idleTimeout is how long a partition may deliver nothing before Read
// checks whether the records left below its end are deliverable
// (deliverable), and maxIdle how many such timeouts in a row, with records
// left or the check failing, fail the read.
const (
	idleTimeout = 2 * time.Second
	maxIdle     = 15
)

// Read lists the entries of a DLQ topic that match f, in partition and
// offset order. client must be configured with Consumer.IsolationLevel =
// sarama.ReadCommitted, so that records of aborted transactions are never
// listed, and Consumer.Return.Errors, so that fetch errors are seen (see
// ConsumerConfig).
//
// Read takes a snapshot: for every partition it captures, before reading
// anything, the last stable offset (LSO, the end a read_committed consumer
// can reach: the high-water mark unless a transaction is open), and reads
// from the oldest offset up to it. Records of transactions still open at
// the call, and records produced after it, are left for the next call.
//
// A read_committed consumer does not deliver control records (transaction
// markers) or records of aborted transactions, so the last offsets below the
// LSO may never arrive: a DLQ written in transactions always ends with a
// commit marker. A partition is therefore done when it delivers a record at
// LSO-1 or beyond (records at or beyond the LSO are dropped) or, failing
// that, when it has delivered nothing for 2 s and a fetch of its own, from
// the partition's leader, finds nothing but markers and aborted records
// left below the LSO. Silence alone does not end it: sarama backs off
// after a fetch error, reported or not (a leader moving is not), and waits
// out a quota's throttle. A partition that goes silent after a reported
// fetch error, or stays silent with records left, fails the whole Read
// instead of being cut short quietly.
//
// A record that is not a valid DLQ record does not stop the listing: Read
// returns every entry it could parse, and an error joining one *BadRecord
// (naming the record's partition and offset) per invalid record; BadRecords
// extracts them. Bad records are reported whatever f says, since f cannot be
// applied to them. Any other error (the topic does not exist, the broker is
// unreachable, ctx is done) returns no entries.
func Read(ctx context.Context, client sarama.Client, topic string, f Filter) ([]Entry, error) {
	if err := checkConfig(client.Config()); err != nil {
		return nil, fmt.Errorf("dlq.Read: %w", err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("list the partitions of %s: %w", topic, err)
	}
	type span struct {
		partition   int32
		oldest, end int64
	}
	spans := make([]span, 0, len(parts))
	for _, p := range parts {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("oldest offset of %s/%d: %w", topic, p, err)
		}
		end, err := lastStableOffset(client, topic, p)
		if err != nil {
			return nil, err
		}
		if oldest < end {
			spans = append(spans, span{p, oldest, end})
		}
	}
	if len(spans) == 0 {
		return nil, nil
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("start a consumer of %s: %w", topic, err)
	}
	defer func() { _ = consumer.Close() }()

	var (
		mu      sync.Mutex
		entries []Entry
		bad     []*BadRecord
		fatal   []error
		wg      sync.WaitGroup
	)
	for _, s := range spans {
		wg.Go(func() {
			err := readPartition(ctx, client, consumer, topic, s.partition, s.oldest, s.end, func(msg *sarama.ConsumerMessage) bool {
				e, err := EntryOf(msg)
				mu.Lock()
				defer mu.Unlock()
				var b *BadRecord
				switch {
				case errors.As(err, &b):
					bad = append(bad, b)
				case err != nil:
					bad = append(bad, &BadRecord{Partition: msg.Partition, Offset: msg.Offset, Err: err})
				case f.Match(e.Failure):
					entries = append(entries, e)
				}
				return true
			})
			if err != nil {
				mu.Lock()
				fatal = append(fatal, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(fatal) > 0 {
		return nil, errors.Join(fatal...)
	}
	slices.SortFunc(entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	slices.SortFunc(bad, func(a, b *BadRecord) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	errs := make([]error, len(bad))
	for i, b := range bad {
		errs[i] = b
	}
	return entries, errors.Join(errs...)
}

// readPartition hands every record of topic/partition in [oldest, end) to
// fn, as Read describes, until fn returns false. After a fetch error the
// partition may deliver nothing for the client's Consumer.Retry.Backoff
// while it retries, so the idle timeout is extended by it once per error
// since the last record. When the partition has been idle that long
// without an error, it is done only if no record it could still deliver
// is left below end (committed.Deliverable): the client also backs off without a
// word (a leader moving, a quota's throttle). A partition that stays
// silent with records left, or whose check keeps failing, fails the read
// after maxIdle timeouts.
func readPartition(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, partition int32, oldest, end int64, fn func(*sarama.ConsumerMessage) bool) error {
	retry := client.Config().Consumer.Retry.Backoff
	pc, err := consumer.ConsumePartition(topic, partition, oldest)
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		// Retention removed records since the offsets were captured.
		pc, err = consumer.ConsumePartition(topic, partition, sarama.OffsetOldest)
	}
	if err != nil {
		return fmt.Errorf("consume %s/%d: %w", topic, partition, err)
	}
	defer func() { _ = pc.Close() }()
	idle := time.NewTimer(idleTimeout)
	defer idle.Stop()
	var lastErr error
	extended := false
	next, idles := oldest, 0 // the offset after the last record delivered; idle timeouts since
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read %s/%d: %w", topic, partition, ctx.Err())
		case msg, ok := <-pc.Messages():
			if !ok { // the client stopped the partition (OFFSET_OUT_OF_RANGE: retention removed what was being read)
				return fmt.Errorf("read %s/%d: the read stopped before offset %d: %w", topic, partition, end, cmp.Or(drained(pc.Errors()), lastErr, errStopped))
			}
			if msg.Offset >= end {
				return nil
			}
			if !fn(msg) || msg.Offset >= end-1 {
				return nil
			}
			drained(pc.Errors()) // errors reported before this record: they passed
			lastErr, extended = nil, false
			next, idles = msg.Offset+1, 0
			idle.Reset(idleTimeout)
		case err := <-pc.Errors():
			if err != nil {
				lastErr = err
			}
			if !extended { // give the client's retry its time
				idle.Reset(idleTimeout + retry)
				extended = true
			}
		case <-idle.C:
			left, err := committed.Deliverable(client, topic, partition, next, end)
			if err == nil && !left {
				// What is left below end is markers and aborted records,
				// whatever error passed after the last record (a broker
				// restarting while the read waited for the end).
				return nil
			}
			if lastErr != nil {
				return fmt.Errorf("read %s/%d: nothing arrived for %s before offset %d: %w", topic, partition, idleTimeout, end, lastErr)
			}
			if idles++; idles >= maxIdle {
				why := cmp.Or(err, fmt.Errorf("records are left below it"))
				return fmt.Errorf("read %s/%d: nothing arrived for %s before offset %d: %w", topic, partition, time.Duration(idles)*idleTimeout, end, why)
			}
			idle.Reset(idleTimeout)
		}
	}
}

// errStopped is the cause of a read the client stopped without saying why.
var errStopped = errors.New("the partition consumer closed")

// drained returns the last error left in errs (nil if none), without
// blocking.
func drained(errs <-chan *sarama.ConsumerError) error {
	var last error
	for {
		select {
		case err, ok := <-errs:
			if !ok {
				return last
			}
			if err != nil {
				last = err
			}
		default:
			return last
		}
	}
}

// lastStableOffset asks the partition's leader for its last stable offset:
// the latest offset a read_committed consumer can reach.
func lastStableOffset(client sarama.Client, topic string, partition int32) (int64, error) {
	leader, err := client.Leader(topic, partition)
	if err != nil {
		return 0, fmt.Errorf("leader of %s/%d: %w", topic, partition, err)
	}
	req := sarama.NewOffsetRequest(client.Config().Version)
	req.IsolationLevel = sarama.ReadCommitted
	req.AddBlock(topic, partition, sarama.OffsetNewest, 1)
	resp, err := leader.GetAvailableOffsets(req)
	if err != nil {
		return 0, fmt.Errorf("last stable offset of %s/%d: %w", topic, partition, err)
	}
	block := resp.GetBlock(topic, partition)
	switch {
	case block == nil:
		return 0, fmt.Errorf("last stable offset of %s/%d: %w", topic, partition, sarama.ErrIncompleteResponse)
	case !errors.Is(block.Err, sarama.ErrNoError):
		return 0, fmt.Errorf("last stable offset of %s/%d: %w", topic, partition, block.Err)
	case req.Version > 0:
		return block.Offset, nil
	case len(block.Offsets) == 1:
		return block.Offsets[0], nil
	}
	return 0, fmt.Errorf("last stable offset of %s/%d: no offset in the response", topic, partition)
}

// ReadRecord reads the single record at topic/partition@offset. It fails
// when there is no such record: the offset is outside the partition, or the
// record there is a transaction marker, was aborted or is not committed
// yet. client must be configured as for Read.
func ReadRecord(ctx context.Context, client sarama.Client, topic string, partition int32, offset int64) (*sarama.ConsumerMessage, error) {
	if err := checkConfig(client.Config()); err != nil {
		return nil, fmt.Errorf("dlq.ReadRecord: %w", err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("list the partitions of %s: %w", topic, err)
	}
	if !slices.Contains(parts, partition) {
		return nil, fmt.Errorf("%s has no partition %d (it has %d)", topic, partition, len(parts))
	}
	oldest, err := client.GetOffset(topic, partition, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("oldest offset of %s/%d: %w", topic, partition, err)
	}
	end, err := lastStableOffset(client, topic, partition)
	if err != nil {
		return nil, err
	}
	if offset < oldest || offset >= end {
		return nil, fmt.Errorf("%s/%d has no record at offset %d: its readable offsets are [%d, %d)", topic, partition, offset, oldest, end)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("start a consumer of %s: %w", topic, err)
	}
	defer func() { _ = consumer.Close() }()
	// The first record delivered is the one at offset, unless that offset
	// holds nothing a read_committed consumer delivers.
	var found *sarama.ConsumerMessage
	err = readPartition(ctx, client, consumer, topic, partition, offset, end, func(msg *sarama.ConsumerMessage) bool {
		found = msg
		return false
	})
	if err != nil {
		return nil, err
	}
	if found == nil || found.Offset != offset {
		return nil, fmt.Errorf("%s/%d has no record at offset %d: it is a transaction marker or an aborted record", topic, partition, offset)
	}
	return found, nil
}
