package bridge

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sagabridge/sagabridge/config"
)

// Why partitions pause. A partition is paused while any reason holds.
const (
	// ReasonInFlight: the bridge holds Backpressure.MaxRecords records or
	// MaxBytes bytes; all partitions pause until it holds ResumeAt of both.
	ReasonInFlight = "in_flight"
	// ReasonCircuitOpen: calls to a target (namespace and task queue) the
	// partition's topic routes to keep failing, or Temporal refuses them;
	// the topic's partitions pause until a probe call succeeds. Topics
	// that route only to other targets keep flowing.
	ReasonCircuitOpen = "circuit_open"
	// ReasonBacklog: a task queue the partition's topic routes to is
	// backed up; the reason is reported as "task_queue_backlog:<queue>".
	ReasonBacklog = "task_queue_backlog"
	// ReasonDLQUnavailable: a dead letter of this partition cannot be
	// written (the DLQ topic is missing or its brokers refuse it); the
	// partition cannot commit past it, so it pauses alone until it can.
	ReasonDLQUnavailable = "dlq_unavailable"
	// ReasonPartitionInFlight: this partition holds batch.max_in_flight
	// records read and not yet committable; it pauses alone until some
	// are.
	ReasonPartitionInFlight = "partition_in_flight"
	// ReasonTargetShare: the routes use n > 1 sets of targets, and the
	// topics routed to this partition's set hold their share of the
	// in-flight budget (1/n of Backpressure.MaxRecords or MaxBytes); they
	// pause until they hold ResumeAt of it. A target that stops answering
	// thus keeps at most its share, and the other topics keep flowing.
	ReasonTargetShare = "target_share"
)

// pauser stops and restarts fetching of partitions; sarama.ConsumerGroup
// implements it.
type pauser interface {
	Pause(partitions map[string][]int32)
	Resume(partitions map[string][]int32)
}

// pressure decides which partitions may read. It counts the records the
// bridge holds (the in-flight budget), knows which task queues are backed
// up and whether the circuit is open, pauses and resumes the partitions in
// sarama, and wakes the partitions' readers on every change. Changes are
// logged once each, never per record. Safe for concurrent use.
type pressure struct {
	cfg         config.Backpressure
	log         *slog.Logger
	topicQueues map[string][]string // topic → the task queues its routes use
	// topicCircuits maps a topic to the circuits of its routes' targets.
	topicCircuits map[string][]circuitKey

	budget *budget // the whole in-flight budget (ReasonInFlight)
	// shares splits the budget between the sets of targets the topics
	// route to; nil with one set, which may hold the whole budget.
	shares  map[string]*share // topic → its set's share
	nCapped atomic.Int32      // len(capped), read without mu
	// nSharesOver counts the shares at their cap, read without mu.
	nSharesOver atomic.Int32

	mu       sync.Mutex
	global   map[string]bool     // reasons that pause every partition
	backedUp map[string]bool     // task queues above the high-water mark
	open     map[circuitKey]bool // circuits not closed (open or half-open)
	backlogs map[string]Backlog  // last backlog read per task queue
	// cached holds task queues whose last reading repeated the one before:
	// the server's cache, not a new measurement (see backlogAge).
	cached  map[string]bool
	flows   map[*flow]string // claimed partitions → the reason they are paused, "" if not
	capped  map[*flow]bool   // partitions at their own in-flight cap
	dlqDown map[*flow]string // partitions whose dead letter cannot be written, with why
	// unreadable holds task queues whose backlog reading expired, with why.
	unreadable      map[string]string
	backlogFailures atomic.Uint64     // failed DescribeTaskQueue polls
	pauses          map[string]uint64 // how often each reason started to hold
	pauser          pauser
	changed         chan struct{} // closed and replaced on every change
}

func newPressure(cfg config.Backpressure, topicQueues map[string][]string, topicCircuits map[string][]circuitKey, log *slog.Logger) *pressure {
	return &pressure{
		cfg: cfg, log: log, topicQueues: topicQueues, topicCircuits: topicCircuits, open: map[circuitKey]bool{},
		budget: newBudget(int64(cfg.MaxRecords), int64(cfg.MaxBytes), cfg.ResumeAt), shares: newShares(cfg, topicCircuits),
		global: map[string]bool{}, backedUp: map[string]bool{}, backlogs: map[string]Backlog{}, cached: map[string]bool{},
		flows: map[*flow]string{}, capped: map[*flow]bool{}, dlqDown: map[*flow]string{}, unreadable: map[string]string{}, pauses: map[string]uint64{}, changed: make(chan struct{}),
	}
}

// setPauser sets what pauses partitions in the consumer; nil pauses only
// the bridge's own readers.
func (p *pressure) setPauser(pa pauser) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pauser = pa
}

// hold counts records of topic the bridge just took in.
func (p *pressure) hold(topic string, records, bytes int) { p.add(topic, int64(records), int64(bytes)) }

// release counts records of topic the bridge no longer holds.
func (p *pressure) release(topic string, records, bytes int) {
	p.add(topic, -int64(records), -int64(bytes))
}

// add counts records and bytes of topic against the budget and its set of
// targets' share, and pauses or resumes partitions when either crosses a
// mark.
func (p *pressure) add(topic string, records, bytes int64) {
	if s := p.shares[topic]; s != nil {
		if r, b, check := s.add(records, bytes); check {
			p.mu.Lock()
			if s.settle() {
				if s.over.Load() {
					p.nSharesOver.Add(1)
					p.log.Debug("pausing the topics of a set of targets: their share of the in-flight budget reached",
						"reason", ReasonTargetShare, "targets", s.targets, "records", r, "bytes", b,
						"share_records", s.maxRecords, "share_bytes", s.maxBytes)
					p.pauses[ReasonTargetShare]++
				} else {
					p.nSharesOver.Add(-1)
					p.log.Debug("share of the in-flight budget below the low-water mark", "reason", ReasonTargetShare,
						"targets", s.targets, "records", r, "bytes", b)
				}
				p.applyLocked()
			}
			p.mu.Unlock()
		}
	}
	r, b, check := p.budget.add(records, bytes)
	if !check || p.shares != nil {
		// The shares add up to the whole budget, and each pauses its own
		// topics. A global pause on top would hold every topic until the
		// total fell to the low-water mark, which a set whose target does
		// not answer can hold alone, for as long as it does not.
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.budget.settle() {
		return
	}
	if p.budget.over.Load() {
		// Reaching the budget is ordinary flow control while catching up
		// (it may happen several times a second), so it is logged at
		// debug level and counted in sagabridge_pauses_total.
		p.log.Debug("pausing all partitions: in-flight budget reached", "reason", ReasonInFlight,
			"records", r, "bytes", b, "max_records", p.cfg.MaxRecords, "max_bytes", p.cfg.MaxBytes)
		p.pauses[ReasonInFlight]++
		p.global[ReasonInFlight] = true
	} else {
		p.log.Debug("in-flight budget below the low-water mark", "reason", ReasonInFlight, "records", r, "bytes", b)
		delete(p.global, ReasonInFlight)
	}
	p.applyLocked()
}

// held returns the records and bytes the bridge holds.
func (p *pressure) held() (records, bytes int64) {
	return p.budget.records.Load(), p.budget.bytes.Load()
}

// setCircuitOpen pauses (open) or resumes the partitions of the topics
// that route to circuit k's target.
func (p *pressure) setCircuitOpen(k circuitKey, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[k] == open {
		return
	}
	if open {
		p.open[k] = true
		p.pauses[ReasonCircuitOpen]++
	} else {
		delete(p.open, k)
	}
	p.applyLocked()
}

// reasonLocked says why topic's partitions are paused, "" if they are not.
// Several reasons are joined with ",". The caller holds p.mu.
func (p *pressure) reasonLocked(topic string) string {
	rs := slices.Sorted(maps.Keys(p.global))
	if s := p.shares[topic]; s != nil && s.over.Load() {
		rs = append(rs, ReasonTargetShare)
	}
	for _, k := range p.topicCircuits[topic] {
		if p.open[k] {
			rs = append(rs, ReasonCircuitOpen)
			break
		}
	}
	for _, q := range p.topicQueues[topic] {
		if p.backedUp[q] {
			rs = append(rs, ReasonBacklog+":"+q)
		}
	}
	return strings.Join(rs, ",")
}

// flowReasonLocked says why f is paused: its topic's reasons and its own.
// The caller holds p.mu.
func (p *pressure) flowReasonLocked(f *flow) string {
	r := p.reasonLocked(f.topic)
	add := func(reason string) {
		if r != "" {
			r += ","
		}
		r += reason
	}
	if _, ok := p.dlqDown[f]; ok {
		add(ReasonDLQUnavailable)
	}
	if p.capped[f] {
		add(ReasonPartitionInFlight)
	}
	return r
}

// setDLQFailing pauses f while its dead letters cannot be written (err),
// and resumes it when one is (nil).
func (p *pressure) setDLQFailing(f *flow, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, was := p.dlqDown[f]
	switch {
	case err != nil:
		p.dlqDown[f] = err.Error()
		if !was {
			p.pauses[ReasonDLQUnavailable]++
			p.applyLocked()
		}
	case was:
		delete(p.dlqDown, f)
		p.applyLocked()
	}
}

// dlqFailing lists the partitions whose dead letters cannot be written.
func (p *pressure) dlqFailing() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]string{}
	for f, err := range p.dlqDown {
		out[fmt.Sprintf("%s/%d", f.topic, f.partition)] = err
	}
	return out
}

// setCapped pauses (true) or resumes (false) f alone for its in-flight cap.
func (p *pressure) setCapped(f *flow, capped bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.capped[f] == capped {
		return
	}
	if capped {
		p.capped[f] = true
		p.pauses[ReasonPartitionInFlight]++
	} else {
		delete(p.capped, f)
	}
	p.nCapped.Store(int32(len(p.capped)))
	p.applyLocked()
}

// full reports whether the bridge holds all it may read: its in-flight
// budget, some set of targets its share of it, or some partition its own
// cap (batch.max_in_flight). More then
// waits in Kafka, and the dispatcher favours large calls (choose).
func (p *pressure) full() bool {
	return p.budget.over.Load() || p.nSharesOver.Load() > 0 || p.nCapped.Load() > 0
}

// reason says why topic's partitions are paused, "" if they are not, and
// returns a channel closed at the next change.
func (p *pressure) reason(topic string) (string, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reasonLocked(topic), p.changed
}

// applyLocked pauses and resumes claimed partitions in the consumer to
// match the reasons, logs each partition that changes, and wakes readers.
// The caller holds p.mu.
func (p *pressure) applyLocked() {
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for f, was := range p.flows {
		now := p.flowReasonLocked(f)
		if now == was {
			continue
		}
		p.flows[f] = now
		switch {
		case now == "":
			resume[f.topic] = append(resume[f.topic], f.partition)
		case was == "":
			pause[f.topic] = append(pause[f.topic], f.partition)
		}
		p.log.Debug("partition pause state", "topic", f.topic, "partition", f.partition, "reason", now)
	}
	if p.pauser != nil {
		if len(pause) > 0 {
			p.pauser.Pause(pause)
		}
		if len(resume) > 0 {
			p.pauser.Resume(resume)
		}
	}
	if len(pause) > 0 || len(resume) > 0 {
		p.log.Debug("partitions paused or resumed", "paused", pause, "resumed", resume, "paused_total", p.pausedLocked())
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *pressure) pausedLocked() int {
	n := 0
	for _, r := range p.flows {
		if r != "" {
			n++
		}
	}
	return n
}

// register adds a claimed partition and pauses or resumes it at once, as
// it must be. Resuming matters as much as pausing: sarama's consumer
// remembers a partition it paused after the partition is released
// (consumer.paused, "retains pause state while a partition is
// reassigned") and starts a new claim of it paused, so a partition this
// member released while paused (at its in-flight cap, say) and is given
// back in a later rebalance would otherwise never fetch again.
func (p *pressure) register(f *flow) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.flowReasonLocked(f)
	p.flows[f] = r
	if p.pauser == nil {
		return
	}
	parts := map[string][]int32{f.topic: {f.partition}}
	if r != "" {
		p.pauser.Pause(parts)
	} else {
		p.pauser.Resume(parts)
	}
}

// pauseUnregistered pauses a claimed partition not yet registered (its
// claim still being readied); register then pauses or resumes it.
func (p *pressure) pauseUnregistered(topic string, partition int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pauser != nil {
		p.pauser.Pause(map[string][]int32{topic: {partition}})
	}
}

// unregister drops a released partition. Another member's consumer starts
// it unpaused; this member's starts it as it left it, and register pauses
// or resumes it there.
func (p *pressure) unregister(f *flow) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.flows, f)
	delete(p.capped, f)
	p.nCapped.Store(int32(len(p.capped)))
	delete(p.dlqDown, f)
}

// claimed lists the claimed partitions.
func (p *pressure) claimed() []*flow {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Keys(p.flows))
}

// pausedPartition is one claimed partition and why it is paused.
type pausedPartition struct {
	topic     string
	partition int32
	reason    string
}

// snapshot returns the state the metrics report.
func (p *pressure) snapshot() (paused []pausedPartition, backlogs map[string]Backlog, backedUp map[string]bool, pauses map[string]uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for f, r := range p.flows {
		if r != "" {
			paused = append(paused, pausedPartition{f.topic, f.partition, r})
		}
	}
	return paused, maps.Clone(p.backlogs), maps.Clone(p.backedUp), maps.Clone(p.pauses)
}
