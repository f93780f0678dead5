package bridge

import (
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sagabridge/sagabridge/config"
)

// budget counts records and bytes held against a cap, with a low-water
// mark: it is over from the moment it holds maxRecords or maxBytes until
// it holds resumeAt of both. The counts are atomic; whether it is over
// changes only under the pressure's lock (settle).
type budget struct {
	maxRecords, maxBytes int64
	resumeAt             float64
	records, bytes       atomic.Int64
	over                 atomic.Bool
}

func newBudget(maxRecords, maxBytes int64, resumeAt float64) *budget {
	return &budget{maxRecords: max(1, maxRecords), maxBytes: max(1, maxBytes), resumeAt: resumeAt}
}

// add counts records and bytes (negative to release) and reports whether
// the budget may have crossed a mark, so the caller must settle it.
func (b *budget) add(records, bytes int64) (r, by int64, check bool) {
	r, by = b.records.Add(records), b.bytes.Add(bytes)
	return r, by, b.mayCross(r, by, records < 0 || bytes < 0)
}

// mayCross reports whether an add that left r and by (a release if
// release) may have crossed a mark. While the budget is over, every
// release may: r and by are two reads, and two releases at once can each
// see the other's half undone (one its records, the other its bytes), so
// that neither sees the low-water mark and the budget stays over with
// nothing held. The last release to finish its adds settles on them all.
// A hold that sees a mixed count only lets the budget overshoot until the
// next hold.
func (b *budget) mayCross(r, by int64, release bool) bool {
	if b.over.Load() {
		return release || b.low(r, by)
	}
	return b.high(r, by)
}

func (b *budget) high(r, by int64) bool { return r >= b.maxRecords || by >= b.maxBytes }
func (b *budget) low(r, by int64) bool {
	return float64(r) <= b.resumeAt*float64(b.maxRecords) && float64(by) <= b.resumeAt*float64(b.maxBytes)
}

// settle sets whether the budget is over from what it holds now and
// reports whether that changed. The caller holds the pressure's lock. It
// reads the counts again after each change, until they agree: a release
// counted between a read and the change would otherwise see the budget
// not yet over, skip settling, and leave it over with nothing held, every
// partition it covers paused for good.
func (b *budget) settle() (changed bool) {
	for {
		r, by := b.records.Load(), b.bytes.Load()
		over := b.over.Load()
		switch {
		case !over && b.high(r, by), over && b.low(r, by):
			b.over.Store(!over)
			changed = !changed
		default:
			return changed
		}
	}
}

// share is what the topics routed to one set of targets hold of the
// in-flight budget: 1/n of it for n sets (ReasonTargetShare).
type share struct {
	*budget
	targets string // the set, for logs: "namespace/queue,..."
}

// newShares gives each set of targets the topics route to an equal share
// of the in-flight budget, keyed by topic; nil if they all route to one
// set, which may hold the whole budget.
func newShares(cfg config.Backpressure, topicCircuits map[string][]circuitKey) map[string]*share {
	setOf := map[string]string{} // topic → its set
	sets := map[string]*share{}
	for topic, ks := range topicCircuits {
		names := make([]string, 0, len(ks))
		for _, k := range ks {
			names = append(names, k.String())
		}
		slices.Sort(names)
		set := strings.Join(slices.Compact(names), ",")
		setOf[topic], sets[set] = set, nil
	}
	if len(sets) < 2 {
		return nil
	}
	n := int64(len(sets))
	for set := range sets {
		sets[set] = &share{budget: newBudget(int64(cfg.MaxRecords)/n, int64(cfg.MaxBytes)/n, cfg.ResumeAt), targets: set}
	}
	out := map[string]*share{}
	for topic, set := range setOf {
		out[topic] = sets[set]
	}
	return out
}
