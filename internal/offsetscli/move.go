package offsetscli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"
	"github.com/sagabridge/sagabridge/internal/committed"
	"github.com/sagabridge/sagabridge/internal/topicid"
)

// moveFlags are move's own flags.
type moveFlags struct {
	partition int
	toOffset  int64
	toTime    time.Time
	skipOne   bool
	dryRun    bool
}

// mode checks that exactly one way to move was given, and the partition
// it needs; errors name the flags.
func (f moveFlags) mode(set map[string]bool, topics []string) (Mode, error) {
	var mode Mode
	n := 0
	for flagName, m := range map[string]Mode{"to-offset": ToOffset, "to-time": ToTime, "skip-one": SkipOne} {
		if set[flagName] {
			mode, n = m, n+1
		}
	}
	switch {
	case n != 1:
		return 0, errors.New("give exactly one of --to-offset N, --to-time RFC3339, --skip-one")
	case set["partition"] && (f.partition < 0 || f.partition > 1<<31-1):
		return 0, fmt.Errorf("-partition %d: must be a partition number, 0 or more", f.partition)
	case set["partition"] && len(topics) != 1:
		return 0, fmt.Errorf("-partition needs exactly one -topic, not %d topics", len(topics))
	case mode != ToTime && !set["partition"]:
		return 0, fmt.Errorf("%v moves one partition: give -topic T -partition P", mode)
	case mode == ToOffset && f.toOffset < 0:
		return 0, fmt.Errorf("--to-offset %d: must be an offset, 0 or more", f.toOffset)
	case mode == SkipOne && !f.skipOne:
		return 0, errors.New("--skip-one=false: leave it out instead")
	}
	return mode, nil
}

// move is `bridge offsets move`.
func (c *command) move(ctx context.Context, args []string) int {
	t := c.flags("[-config bridge.yaml] -topic T [-partition P] (--to-offset N | --to-time RFC3339 | --skip-one) [-dry-run]")
	var f moveFlags
	c.Flags.IntVar(&f.partition, "partition", -1, "the partition to move (required but with --to-time, which moves every partition of the topics without it)")
	c.Flags.Int64Var(&f.toOffset, "to-offset", -1, "move to this offset, from the log start to the log end")
	c.Flags.Func("to-time", "move to the first offset whose record's timestamp is at or after this `RFC3339` time, or to the log end when none is", func(s string) error {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return errors.New("not an RFC 3339 time such as 2026-11-25T10:00:00Z")
		}
		if tm.Before(time.UnixMilli(0)) {
			// ListOffsets takes milliseconds since 1970, and reads -1, -2
			// and -3 as "latest", "earliest" and "max timestamp".
			return errors.New("is before 1970-01-01T00:00:00Z, where Kafka's timestamps start: to move to the log start, give 1970-01-01T00:00:00Z")
		}
		f.toTime = tm
		return nil
	})
	c.Flags.BoolVar(&f.skipOne, "skip-one", false, "move one past the committed offset: skip the record the group is stuck on")
	c.Flags.BoolVar(&f.dryRun, "dry-run", false, "print what would be moved and whether the group would allow it; commit nothing")
	if code, ok := c.Parse(args); !ok {
		return code
	}
	set := c.Set()
	if err := t.resolve(c.environ, set); err != nil {
		return c.UsageError("%v", err)
	}
	mode, err := f.mode(set, t.topicList)
	if err != nil {
		return c.UsageError("%v", err)
	}
	k, err := t.connect(ctx)
	if err != nil {
		return c.Fail(err)
	}
	defer func() { _ = k.Close() }()

	g, err := k.describe(ctx)
	if err != nil {
		return c.Fail(err)
	}
	if !g.movable() && !f.dryRun {
		return c.Fail(&ActiveError{Group: g})
	}
	parts, err := k.partitions(ctx, t.topicList)
	if err != nil {
		return c.Fail(err)
	}
	if set["partition"] {
		want := tp{t.topicList[0], int32(f.partition)}
		if !containsTP(parts, want) {
			return c.Fail(fmt.Errorf("%s: no such partition: topic %s has %d partitions", want, want.topic, len(parts)))
		}
		parts = []tp{want}
	}
	// With the group empty the offsets are read require_stable: a stopped
	// bridge's transaction still committing one must end first, and a dry
	// run says so as the move would. With members, the move is refused for
	// them (the dry run prints the plan and names them): their
	// transactions commit all the time.
	// The topics' IDs now, against which the move is planned: one
	// deleted and created again before the commit would take offsets
	// planned on its earlier log.
	ids, err := topicid.Lookup(k.client, t.topicList)
	if err != nil {
		if !f.dryRun {
			return c.Fail(fmt.Errorf("read the topics' IDs, to check that none is deleted and created again during the move: %w; nothing committed", err))
		}
		fmt.Fprintf(c.stderr, "bridge offsets move: warning: cannot read the topics' IDs (%v); the move would refuse to start\n", err)
	}
	moves, err := c.plan(ctx, k, mode, f, parts, g.movable(), t.startOldest)
	if err != nil {
		return c.Fail(err)
	}
	if f.dryRun {
		writeMoves(c.stdout, moves, true, nil)
		if !g.movable() {
			return c.Fail(&ActiveError{Group: g})
		}
		fmt.Fprintf(c.stderr, "dry run: group %s is %s, so the move would be allowed; nothing committed\n", g.ID, g.State)
		return exitOK
	}
	// Whatever Kafka answered, the offsets are read back before anything
	// is reported: a commit answered with an error (REQUEST_TIMED_OUT), or
	// whose answer was lost, may have been applied, and a move reported
	// as not made would be made again by the next --skip-one.
	todo := changed(moves)
	if changed, err := recreated(k.client, ids); changed != nil || err != nil {
		return c.Fail(fmt.Errorf("%w; nothing committed: run the move again", cmp.Or(changed, err)))
	}
	refused, cerr := k.commit(ctx, todo)
	// Read back even when interrupted (Ctrl-C during the commit): whether
	// the offsets moved is what the operator must know.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackTimeout)
	defer cancel()
	after, rerr := readBack(rctx, k, todo)
	if rerr != nil {
		if cerr == nil {
			return c.Fail(fmt.Errorf("committed, but the offsets cannot be read back to confirm it: %w", rerr))
		}
		return c.Fail(fmt.Errorf("the move's outcome is unknown: the commit answered %w, and the offsets cannot be read back (%v); run `bridge offsets show` before moving again (a second --skip-one would skip one more record)", cerr, rerr))
	}
	notMoved := map[tp]error{}
	for _, m := range todo {
		p := tp{m.Topic, m.Partition}
		at, ok := after[p]
		if ok && at == m.To {
			continue
		}
		why := refused[p]
		if why == nil {
			why = cerr
		}
		switch {
		case !ok && m.From != noOffset:
			why = errors.Join(why, fmt.Errorf("%s/%d: no committed offset reads back", m.Topic, m.Partition))
		case ok && at != m.From:
			why = errors.Join(why, fmt.Errorf("%s/%d: the group's offset reads back as %d", m.Topic, m.Partition, at))
		}
		if why == nil {
			why = fmt.Errorf("%s/%d: the group's offset does not read back as %d", m.Topic, m.Partition, m.To)
		}
		notMoved[p] = why
	}
	writeMoves(c.stdout, moves, false, notMoved)
	if changed, err := recreated(k.client, ids); changed != nil {
		// The commit (by topic name: Kafka's OffsetCommit carries no topic
		// ID) may have landed on the new topic.
		return c.Fail(fmt.Errorf("%w while the offsets were committed: those read back above were planned on its earlier log and may not fit the new one; check with `bridge offsets show` and move again", changed))
	} else if err != nil { // the move's outcome is what was read back
		fmt.Fprintf(c.stderr, "bridge offsets move: warning: %v, to check that no topic was deleted and created again during the move; the offsets read back above are the move's outcome\n", err)
	}
	var whys []error
	for _, m := range todo {
		if err := notMoved[tp{m.Topic, m.Partition}]; err != nil {
			whys = append(whys, err)
		}
	}
	switch n := len(todo) - len(notMoved); {
	case len(notMoved) == 0:
		if cerr != nil {
			fmt.Fprintf(c.stderr, "Kafka answered the commit with an error (%v), but every offset reads back moved\n", cerr)
		}
		fmt.Fprintf(c.stderr, "moved %d partition(s) of group %s (read back)\n", len(todo), g.ID)
		return exitOK
	case n == 0:
		return c.Fail(fmt.Errorf("nothing moved (the offsets read back as before):\n%w", errors.Join(whys...)))
	default:
		return c.Fail(fmt.Errorf("the move was partly applied: %d of %d partition(s) moved (read back), the others not:\n%w", n, len(todo), errors.Join(whys...)))
	}
}

// recreated returns changed, an error naming the topics whose ID is no
// longer the one in ids (deleted and created again), or err when the IDs
// cannot be read again; both nil when none changed, or when the broker
// serves no IDs.
func recreated(client sarama.Client, ids map[string]string) (changed, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	topics := slices.Sorted(maps.Keys(ids))
	now, err := topicid.Lookup(client, topics)
	if err != nil {
		return nil, fmt.Errorf("cannot read the topics' IDs again: %w", err)
	}
	var errs []error
	for _, topic := range topics {
		if now[topic] != ids[topic] {
			errs = append(errs, fmt.Errorf("topic %s was deleted and created again during the move (ID %s, now %q)", topic, ids[topic], now[topic]))
		}
	}
	return errors.Join(errs...), nil
}

// readBackTimeout bounds the read-back of a move that was interrupted.
const readBackTimeout = 15 * time.Second

// readBack reads the committed offsets of moves' partitions.
func readBack(ctx context.Context, k *cluster, moves []Move) (map[tp]int64, error) {
	parts := make([]tp, len(moves))
	for i, m := range moves {
		parts[i] = tp{m.Topic, m.Partition}
	}
	got, err := k.committed(ctx, parts, false)
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	out := map[tp]int64{}
	for _, p := range parts {
		if c, ok := got[p]; ok && c.Offset != noOffset {
			out[p] = c.Offset
		}
	}
	return out, nil
}

// plan reads the partitions (requireStable: an open transaction committing
// one refuses the move) and computes their moves; errors are joined,
// one per partition that cannot move. startOldest is kafka.initial_offset
// (oldest or not), where the bridge resumes from a committed offset
// outside the log (Move.Resume).
func (c *command) plan(ctx context.Context, k *cluster, mode Mode, f moveFlags, parts []tp, requireStable, startOldest bool) ([]Move, error) {
	read, err := k.read(ctx, parts, requireStable)
	if err != nil {
		return nil, err
	}
	arg := func(Partition) int64 { return f.toOffset }
	var unskippable []error
	if mode == SkipOne {
		next := map[tp]int64{}
		for _, p := range read {
			if p.Committed == noOffset || p.Committed >= p.End {
				continue // plan names why there is nothing to skip
			}
			if p.Committed < p.LogStart {
				unskippable = append(unskippable, fmt.Errorf("%s/%d: --skip-one: the committed offset %d is before the log start %d (its records were deleted; the bridge resumes at kafka.initial_offset): give --to-offset",
					p.Topic, p.Partition, p.Committed, p.LogStart))
				continue
			}
			at := tp{p.Topic, p.Partition}
			if k.isolation == sarama.ReadCommitted {
				// Only markers or aborted records left (a transactional
				// partition at rest): nothing to skip, said at once.
				if left, err := committed.Deliverable(k.client, p.Topic, p.Partition, p.Committed, p.End); err == nil && !left {
					unskippable = append(unskippable, fmt.Errorf("%s/%d: --skip-one: nothing to skip: no record to read from %d to the end %d, only transaction markers or aborted records", p.Topic, p.Partition, p.Committed, p.End))
					continue
				}
			}
			o, err := k.nextRecord(ctx, at, p.Committed)
			if ctx.Err() != nil {
				return nil, ctx.Err() // interrupted: nothing planned, nothing committed
			}
			if err != nil {
				// The committed offset + 1 may be that very record (the
				// committed offset is often a commit marker): moving
				// there would skip nothing and report a skip.
				unskippable = append(unskippable, fmt.Errorf("%w; nothing moved: find the record to skip (kcat -C -t %s -p %d -o %d -c 1 -f '%%o\\n') and give --to-offset past it",
					err, p.Topic, p.Partition, p.Committed))
				continue
			}
			next[at] = o
		}
		arg = func(p Partition) int64 {
			if o, ok := next[tp{p.Topic, p.Partition}]; ok {
				return o
			}
			return noOffset
		}
	}
	if mode == ToTime {
		ms := f.toTime.UnixMilli()
		at, err := k.listOffsets(ctx, parts, func(tp) int64 { return ms }, k.isolation)
		if err != nil {
			return nil, fmt.Errorf("--to-time %s: %w", f.toTime.Format(time.RFC3339), err)
		}
		arg = func(p Partition) int64 { return at[tp{p.Topic, p.Partition}] }
	}
	moves, err := planAll(mode, arg, read)
	for i, m := range moves {
		for _, p := range read {
			if p.Topic == m.Topic && p.Partition == m.Partition && p.OutOfRange() {
				moves[i].Outside, moves[i].Resume = true, p.End
				if startOldest {
					moves[i].Resume = p.LogStart
				}
			}
		}
	}
	if len(unskippable) > 0 {
		return nil, errors.Join(append(unskippable, err)...)
	}
	return moves, err
}

// changed keeps the moves that commit a new offset.
func changed(moves []Move) []Move {
	var out []Move
	for _, m := range moves {
		if m.Changes() {
			out = append(out, m)
		}
	}
	return out
}

// writeMoves prints the moves as a table; those in refused (Kafka refused
// their commit) as NOT MOVED, with why.
func writeMoves(w io.Writer, moves []Move, dryRun bool, refused map[tp]error) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	verb := "MOVED"
	if dryRun {
		verb = "WOULD-MOVE"
	}
	fmt.Fprintf(tw, "TOPIC\tPARTITION\tCOMMITTED\tNEW\t%s\n", verb)
	for _, m := range moves {
		from := "-"
		if m.From != noOffset {
			from = strconv.FormatInt(m.From, 10)
		}
		what := delta(m)
		if err := refused[tp{m.Topic, m.Partition}]; err != nil {
			why := err
			if u := errors.Unwrap(err); u != nil { // the broker's error, without the partition and offset the row shows
				why = u
			}
			what = "NOT MOVED (" + why.Error() + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", m.Topic, m.Partition, from, m.To, what)
	}
	_ = tw.Flush()
}

// delta describes a move: how many records it skips or re-reads, from
// where the bridge would resume without it.
func delta(m Move) string {
	from, where := m.From, ""
	if m.Outside {
		from = m.Resume
		where = fmt.Sprintf(" from %d, where the bridge would resume (committed %d is outside the log)", m.Resume, m.From)
	}
	switch d := m.To - from; {
	case m.From == noOffset:
		return "first commit"
	case d == 0 && m.Outside:
		return fmt.Sprintf("commits %d, where the bridge would resume anyway (committed %d is outside the log)", m.To, m.From)
	case d == 0:
		return "unchanged"
	case d > 0:
		return fmt.Sprintf("skips %d offset(s)", d) + where
	default:
		return fmt.Sprintf("re-reads %d offset(s)", -d) + where
	}
}

// containsTP says whether parts holds p.
func containsTP(parts []tp, p tp) bool {
	for _, q := range parts {
		if q == p {
			return true
		}
	}
	return false
}
