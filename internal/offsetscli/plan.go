package offsetscli

import (
	"errors"
	"fmt"
)

// noOffset is Kafka's "none": no committed offset, no record at a time.
const noOffset = -1

// Partition is what Kafka says about one partition of a routed topic.
type Partition struct {
	// Topic and Partition name the partition.
	Topic     string
	Partition int32
	// Committed is the group's committed offset (the next record the
	// group reads), noOffset when it has committed none.
	Committed int64
	// Metadata is the string committed with Committed.
	Metadata string
	// LogStart is the first offset still in the log.
	LogStart int64
	// HighWatermark is the log end: one past the last replicated record.
	HighWatermark int64
	// End is where the bridge reads up to: the last stable offset under
	// read_committed, HighWatermark under read_uncommitted.
	End int64
}

// Lag is how many records the group has not committed past: End minus the
// committed offset, or, with none committed or one outside the log
// (OutOfRange), minus where the group would start (the log start when
// oldest, else End). Never negative.
func (p Partition) Lag(startOldest bool) int64 {
	from := p.Committed
	if from == noOffset || p.OutOfRange() {
		from = p.End
		if startOldest {
			from = p.LogStart
		}
	}
	return max(p.End-from, 0)
}

// OutOfRange reports whether the committed offset lies outside the log:
// before its start (the records were deleted: retention, DeleteRecords) or
// past its end (the log was truncated, an unclean leader election). The
// bridge's consumer then starts again at kafka.initial_offset.
func (p Partition) OutOfRange() bool {
	return p.Committed != noOffset && (p.Committed < p.LogStart || p.Committed > p.HighWatermark)
}

// Mode is how move picks a partition's new offset.
type Mode int

// The three ways to move.
const (
	// ToOffset moves to a given offset.
	ToOffset Mode = iota + 1
	// ToTime moves to the first offset at or after a time.
	ToTime
	// SkipOne moves one past the committed offset.
	SkipOne
)

// String names the mode as its flag.
func (m Mode) String() string {
	switch m {
	case ToOffset:
		return "--to-offset"
	case ToTime:
		return "--to-time"
	case SkipOne:
		return "--skip-one"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ErrNoCommitted is returned for --skip-one on a partition the group has
// committed no offset for: there is no "current record" to skip.
var ErrNoCommitted = errors.New("the group has committed no offset here, so there is no record to skip; give --to-offset")

// RangeError is a new offset outside a partition's log.
type RangeError struct {
	// Topic and Partition name the partition.
	Topic     string
	Partition int32
	// Offset is the refused new offset.
	Offset int64
	// Start and End are the valid range, both included: the log start
	// and the log end (the high watermark; the end means "nothing left").
	Start, End int64
}

// Error names the partition, the offset and the valid range.
func (e *RangeError) Error() string {
	where := "before the log start"
	if e.Offset > e.End {
		where = "beyond the log end"
	}
	return fmt.Sprintf("%s/%d: offset %d is %s: valid offsets are %d (log start) to %d (log end)",
		e.Topic, e.Partition, e.Offset, where, e.Start, e.End)
}

// Move is one partition's planned new committed offset.
type Move struct {
	// Topic and Partition name the partition.
	Topic     string
	Partition int32
	// From is the committed offset now, noOffset when none.
	From int64
	// To is the offset to commit.
	To int64
	// Metadata is committed with To: the old offset's, kept.
	Metadata string
	// Outside says From lies outside the log (Partition.OutOfRange), and
	// Resume is where the bridge resumes from it (kafka.initial_offset:
	// the log start or end): what the move skips or re-reads counts from
	// there.
	Outside bool
	Resume  int64
}

// Changes says whether the move commits anything new.
func (m Move) Changes() bool { return m.From != m.To }

// plan computes p's new offset for mode. arg is the offset for ToOffset;
// for ToTime, the offset ListOffsets returned for the time (noOffset when
// no record is that recent, which moves to p.End); for SkipOne, the offset
// of the record the group reads next (noOffset when unknown). The new offset must lie
// within the log, p.LogStart to p.HighWatermark; errors name the partition.
func plan(mode Mode, arg int64, p Partition) (Move, error) {
	m := Move{Topic: p.Topic, Partition: p.Partition, From: p.Committed, Metadata: p.Metadata}
	switch mode {
	case ToOffset:
		m.To = arg
	case ToTime:
		m.To = arg
		if arg == noOffset {
			m.To = p.End
		}
	case SkipOne:
		if p.Committed == noOffset {
			return Move{}, fmt.Errorf("%s/%d: --skip-one: %w", p.Topic, p.Partition, ErrNoCommitted)
		}
		// Past the record the group reads next, at arg (the committed
		// offset may be a commit marker, or a gap): noOffset when none is
		// known, then the committed offset + 1.
		m.To = p.Committed + 1
		if arg != noOffset {
			m.To = arg + 1
		}
	default:
		return Move{}, fmt.Errorf("%s/%d: unknown move %v", p.Topic, p.Partition, mode)
	}
	if m.To < p.LogStart || m.To > p.HighWatermark {
		return Move{}, &RangeError{Topic: p.Topic, Partition: p.Partition, Offset: m.To, Start: p.LogStart, End: p.HighWatermark}
	}
	return m, nil
}

// planAll plans every partition and returns every error, joined.
func planAll(mode Mode, arg func(Partition) int64, parts []Partition) ([]Move, error) {
	var moves []Move
	var errs []error
	for _, p := range parts {
		m, err := plan(mode, arg(p), p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		moves = append(moves, m)
	}
	return moves, errors.Join(errs...)
}
