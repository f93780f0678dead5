package offsetscli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// cluster is the Kafka side of one run: a client, an admin over it and
// the group. Not safe for concurrent use; Close closes both.
type cluster struct {
	client    sarama.Client
	admin     sarama.ClusterAdmin
	group     string
	isolation sarama.IsolationLevel
}

// Close closes the admin and, with it, the client.
func (k *cluster) Close() error { return k.admin.Close() }

// tp is a topic and a partition.
type tp struct {
	topic     string
	partition int32
}

func (t tp) String() string { return fmt.Sprintf("%s/%d", t.topic, t.partition) }

// partitions lists every partition of topics, in topic order.
func (k *cluster) partitions(ctx context.Context, topics []string) ([]tp, error) {
	var out []tp
	for _, t := range topics {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ps, err := k.client.Partitions(t)
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return nil, fmt.Errorf("-topic %q: no such topic on the brokers", t)
		}
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", t, err)
		}
		slices.Sort(ps)
		for _, p := range ps {
			out = append(out, tp{t, p})
		}
	}
	return out, nil
}

// Special ListOffsets timestamps.
const (
	latest   = sarama.OffsetNewest // the log end: HWM, or LSO under read_committed
	earliest = sarama.OffsetOldest // the log start
)

// listOffsets asks each partition's leader for the offset of ts(partition)
// (latest, earliest or a time in milliseconds) under isolation; a time no
// record reaches answers noOffset.
func (k *cluster) listOffsets(ctx context.Context, parts []tp, ts func(tp) int64, isolation sarama.IsolationLevel) (out map[tp]int64, err error) {
	err = k.retry(ctx, parts, func() error {
		out, err = k.listOffsetsOnce(ctx, parts, ts, isolation)
		return err
	})
	return out, err
}

// listOffsetsOnce is listOffsets without its retries.
func (k *cluster) listOffsetsOnce(ctx context.Context, parts []tp, ts func(tp) int64, isolation sarama.IsolationLevel) (map[tp]int64, error) {
	byLeader := map[*sarama.Broker][]tp{}
	for _, p := range parts {
		b, err := k.client.Leader(p.topic, p.partition)
		if err != nil {
			return nil, fmt.Errorf("%s: leader: %w", p, err)
		}
		byLeader[b] = append(byLeader[b], p)
	}
	out := make(map[tp]int64, len(parts))
	for b, ps := range byLeader {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		req := sarama.NewOffsetRequest(k.client.Config().Version)
		req.IsolationLevel = isolation
		for _, p := range ps {
			req.AddBlock(p.topic, p.partition, ts(p), 1)
		}
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			return nil, fmt.Errorf("list offsets of %s at broker %s: %w", joinTPs(ps), b.Addr(), err)
		}
		for _, p := range ps {
			blk := resp.GetBlock(p.topic, p.partition)
			switch {
			case blk == nil:
				return nil, fmt.Errorf("%s: list offsets: %w", p, sarama.ErrIncompleteResponse)
			case !errors.Is(blk.Err, sarama.ErrNoError):
				return nil, fmt.Errorf("%s: list offsets: %w", p, blk.Err)
			case len(blk.Offsets) != 1:
				return nil, fmt.Errorf("%s: list offsets: %d offsets in the answer, want 1", p, len(blk.Offsets))
			}
			out[p] = blk.Offsets[0]
		}
	}
	return out, nil
}

// joinTPs names partitions for an error.
func joinTPs(ps []tp) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// read fetches the committed offset, log start, high watermark and the end
// the bridge reads to of every partition. requireStable makes a partition
// whose offset a still-open transaction is committing an error
// (UNSTABLE_OFFSET_COMMIT) instead of answering the last stable offset.
func (k *cluster) read(ctx context.Context, parts []tp, requireStable bool) ([]Partition, error) {
	committed, err := k.committed(ctx, parts, requireStable)
	if err != nil {
		return nil, err
	}
	start, err := k.listOffsets(ctx, parts, func(tp) int64 { return earliest }, sarama.ReadUncommitted)
	if err != nil {
		return nil, err
	}
	hwm, err := k.listOffsets(ctx, parts, func(tp) int64 { return latest }, sarama.ReadUncommitted)
	if err != nil {
		return nil, err
	}
	end := hwm
	if k.isolation == sarama.ReadCommitted {
		if end, err = k.listOffsets(ctx, parts, func(tp) int64 { return latest }, sarama.ReadCommitted); err != nil {
			return nil, err
		}
	}
	out := make([]Partition, len(parts))
	for i, p := range parts {
		c := committed[p]
		out[i] = Partition{Topic: p.topic, Partition: p.partition, Committed: c.Offset, Metadata: c.Metadata,
			LogStart: start[p], HighWatermark: hwm[p], End: end[p]}
	}
	return out, nil
}

// committed fetches the group's committed offsets of parts (noOffset for
// a partition it has none of).
func (k *cluster) committed(ctx context.Context, parts []tp, requireStable bool) (out map[tp]sarama.OffsetFetchResponseBlock, err error) {
	err = k.retry(ctx, parts, func() error {
		out, err = k.committedOnce(ctx, parts, requireStable)
		return err
	})
	return out, err
}

// retry runs op until it succeeds, fails for a reason a moment does not
// cure, or has been tried retryTries times, backing off from 200 ms and
// refreshing the metadata of parts' topics and the group's coordinator
// before each retry: a leader or coordinator that moved or is loading (a
// rolling restart of the brokers) made a show or a move fail at once.
func (k *cluster) retry(ctx context.Context, parts []tp, op func() error) error {
	var topics []string
	for _, p := range parts {
		if !slices.Contains(topics, p.topic) {
			topics = append(topics, p.topic)
		}
	}
	wait := 200 * time.Millisecond
	for try := 1; ; try++ {
		err := op()
		if err == nil || try == retryTries || !transient(err) || ctx.Err() != nil {
			return err
		}
		if len(topics) > 0 {
			_ = k.client.RefreshMetadata(topics...)
		}
		_ = k.client.RefreshCoordinator(k.group)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		wait *= 2
	}
}

// retryTries is how many times retry tries (about 3 s of backing off).
const retryTries = 5

// transient reports whether err is a leader or coordinator moving or
// loading, which a moment and fresh metadata cure.
func transient(err error) bool {
	for _, e := range []error{
		sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrOffsetNotAvailable,
		sarama.ErrFencedLeaderEpoch, sarama.ErrUnknownLeaderEpoch, sarama.ErrRequestTimedOut,
		sarama.ErrNotCoordinatorForConsumer, sarama.ErrOffsetsLoadInProgress, sarama.ErrConsumerCoordinatorNotAvailable,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// committedOnce is committed without its retries.
func (k *cluster) committedOnce(ctx context.Context, parts []tp, requireStable bool) (map[tp]sarama.OffsetFetchResponseBlock, error) {
	resp, _, err := k.fetchOffsets(ctx, parts, requireStable)
	if err != nil {
		return nil, err
	}
	out := make(map[tp]sarama.OffsetFetchResponseBlock, len(parts))
	switch gerr := resp.GroupError(); {
	case errors.Is(gerr, sarama.ErrGroupIDNotFound): // a group that does not exist has committed nothing
		for _, p := range parts {
			out[p] = sarama.OffsetFetchResponseBlock{Offset: noOffset}
		}
		return out, nil
	case !errors.Is(gerr, sarama.ErrNoError):
		return nil, fmt.Errorf("group %s: fetch committed offsets: %w", k.group, gerr)
	}
	for _, p := range parts {
		blk := resp.GetBlock(p.topic, p.partition)
		switch {
		case blk == nil:
			out[p] = sarama.OffsetFetchResponseBlock{Offset: noOffset}
		case errors.Is(blk.Err, sarama.ErrUnstableOffsetCommit):
			return nil, fmt.Errorf("%s: an open transaction of a stopped bridge is still committing this partition's offset; "+
				"the broker aborts it within the transaction timeout (10 s), try again then: %w", p, blk.Err)
		case !errors.Is(blk.Err, sarama.ErrNoError):
			return nil, fmt.Errorf("%s: committed offset of group %s: %w", p, k.group, blk.Err)
		default:
			out[p] = *blk
		}
	}
	return out, nil
}

// Member is an active member of the group.
type Member struct {
	// ID is the member ID the coordinator gave it.
	ID string `json:"member_id"`
	// InstanceID is its group.instance.id (kafka.instance_id), "" for a
	// dynamic member.
	InstanceID string `json:"instance_id,omitempty"`
	// ClientID and Host are what it connected as and from.
	ClientID string `json:"client_id"`
	Host     string `json:"host"`
	// Assigned lists its partitions by topic.
	Assigned map[string][]int32 `json:"assigned,omitempty"`
}

// String names the member for an operator.
func (m Member) String() string {
	s := fmt.Sprintf("%s (client %s, host %s", m.ID, m.ClientID, m.Host)
	if m.InstanceID != "" {
		s += ", instance " + m.InstanceID
	}
	return s + ")"
}

// Group is the group's state and members.
type Group struct {
	// ID is the group ID (kafka.group).
	ID string `json:"group"`
	// State is the coordinator's: Empty, Stable, PreparingRebalance,
	// CompletingRebalance or Dead.
	State string `json:"state"`
	// Members are the active members, by ID.
	Members []Member `json:"members"`
}

// movable says whether Kafka takes offsets from outside the group: only
// when it has no members (Empty), or does not exist (Dead).
func (g Group) movable() bool { return g.State == "Empty" || g.State == "Dead" }

// owner returns the member that is assigned p, if any.
func (g Group) owner(p tp) (Member, bool) {
	for _, m := range g.Members {
		if slices.Contains(m.Assigned[p.topic], p.partition) {
			return m, true
		}
	}
	return Member{}, false
}

// describe reads the group's state and members, retrying a coordinator
// that moves or loads (a rolling restart) as the reads after it do.
func (k *cluster) describe(ctx context.Context) (g Group, err error) {
	err = k.retry(ctx, nil, func() error {
		g, err = k.describeOnce(ctx)
		return err
	})
	return g, err
}

// describeOnce is describe without its retries.
func (k *cluster) describeOnce(ctx context.Context) (Group, error) {
	if err := ctx.Err(); err != nil {
		return Group{}, err
	}
	ds, err := k.admin.DescribeConsumerGroups([]string{k.group})
	if err != nil {
		return Group{}, fmt.Errorf("describe group %s: %w", k.group, err)
	}
	if len(ds) != 1 {
		return Group{}, fmt.Errorf("describe group %s: %d groups in the answer", k.group, len(ds))
	}
	d := ds[0]
	switch {
	case errors.Is(d.Err, sarama.ErrGroupIDNotFound): // DescribeGroups v6+ on a group that does not exist
		return Group{ID: k.group, State: "Dead", Members: []Member{}}, nil
	case !errors.Is(d.Err, sarama.ErrNoError):
		return Group{}, fmt.Errorf("describe group %s: %w", k.group, d.Err)
	}
	g := Group{ID: k.group, State: d.State, Members: []Member{}}
	for id, md := range d.Members {
		m := Member{ID: id, ClientID: md.ClientId, Host: md.ClientHost}
		if md.GroupInstanceId != nil {
			m.InstanceID = *md.GroupInstanceId
		}
		if a, err := md.GetMemberAssignment(); err == nil && a != nil {
			m.Assigned = a.Topics
		}
		g.Members = append(g.Members, m)
	}
	sort.Slice(g.Members, func(i, j int) bool { return g.Members[i].ID < g.Members[j].ID })
	return g, nil
}

// ActiveError refuses a move while the group has members.
type ActiveError struct {
	// Group is the group as described, with its members.
	Group Group
}

// Error names the group's state and every member.
func (e *ActiveError) Error() string {
	names := make([]string, len(e.Group.Members))
	for i, m := range e.Group.Members {
		names[i] = m.String()
	}
	return fmt.Sprintf("group %s is %s with %d active member(s): %s; stop every bridge of the group first "+
		"(a static member, kafka.instance_id, stays a member until its session times out)",
		e.Group.ID, e.Group.State, len(e.Group.Members), strings.Join(names, "; "))
}

// commit commits the moves with a plain OffsetCommit from outside the
// group (generation -1, no member ID), keeping each one's metadata. Kafka
// refuses it for a group that has members again since it was described.
// Kafka answers per partition, and may apply some and refuse others (it
// authorizes the commit per topic): refused says why each refused one was,
// and err (refused joined, or what failed the whole request) is nil only
// when every move was applied.
func (k *cluster) commit(ctx context.Context, moves []Move) (refused map[tp]error, err error) {
	if err := ctx.Err(); err != nil || len(moves) == 0 {
		return nil, err
	}
	coord, err := k.client.Coordinator(k.group)
	if err != nil {
		return nil, fmt.Errorf("group %s: coordinator: %w", k.group, err)
	}
	req := sarama.NewOffsetCommitRequest(k.client.Config(), k.group)
	for _, m := range moves {
		// Leader epoch -1: unknown, as an admin reset commits it.
		req.AddBlockWithLeaderEpoch(m.Topic, m.Partition, m.To, -1, sarama.ReceiveTime, m.Metadata)
	}
	resp, err := coord.CommitOffset(req)
	if err != nil {
		return nil, fmt.Errorf("group %s: commit offsets: %w", k.group, err)
	}
	refused = map[tp]error{}
	var errs []error
	for _, m := range moves {
		kerr, ok := resp.Errors[m.Topic][m.Partition]
		var e error
		switch {
		case !ok:
			e = fmt.Errorf("%s/%d: commit offset %d: no answer for the partition", m.Topic, m.Partition, m.To)
		case errors.Is(kerr, sarama.ErrUnknownMemberId), errors.Is(kerr, sarama.ErrIllegalGeneration), errors.Is(kerr, sarama.ErrRebalanceInProgress):
			e = fmt.Errorf("%s/%d: commit offset %d: the group has members again (a bridge started?): %w", m.Topic, m.Partition, m.To, kerr)
		case !errors.Is(kerr, sarama.ErrNoError):
			e = fmt.Errorf("%s/%d: commit offset %d: %w", m.Topic, m.Partition, m.To, kerr)
		}
		if e != nil {
			refused[tp{m.Topic, m.Partition}] = e
			errs = append(errs, e)
		}
	}
	return refused, errors.Join(errs...)
}

// nextRecord returns the offset of the first record at or after from that
// the group reads (under the client's isolation level: past commit
// markers and aborted records), waiting at most the client's read timeout.
func (k *cluster) nextRecord(ctx context.Context, p tp, from int64) (int64, error) {
	consumer, err := sarama.NewConsumerFromClient(k.client)
	if err != nil {
		return 0, fmt.Errorf("%s/%d: read the next record: %w", p.topic, p.partition, err)
	}
	defer func() { _ = consumer.Close() }()
	pc, err := consumer.ConsumePartition(p.topic, p.partition, from)
	if err != nil {
		return 0, fmt.Errorf("%s/%d: read the next record from %d: %w", p.topic, p.partition, from, err)
	}
	defer func() { _ = pc.Close() }()
	wait := time.NewTimer(k.client.Config().Net.ReadTimeout)
	defer wait.Stop()
	select {
	case msg := <-pc.Messages():
		return msg.Offset, nil
	case err := <-pc.Errors():
		return 0, fmt.Errorf("%s/%d: read the next record from %d: %w", p.topic, p.partition, from, err)
	case <-wait.C:
		return 0, fmt.Errorf("%s/%d: no record to skip from %d within %s (only transaction markers or aborted records before the log end, or a transaction still open)",
			p.topic, p.partition, from, k.client.Config().Net.ReadTimeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// pendingCommits returns the partitions of parts whose committed offset a
// transaction still open is committing: the ones a require_stable fetch
// answers UNSTABLE_OFFSET_COMMIT.
func (k *cluster) pendingCommits(ctx context.Context, parts []tp) (map[tp]bool, error) {
	resp, stable, err := k.fetchOffsets(ctx, parts, true)
	if err != nil || !stable {
		return nil, err // no require_stable before Kafka 2.5: nothing to tell
	}
	out := map[tp]bool{}
	for _, p := range parts {
		if blk := resp.GetBlock(p.topic, p.partition); blk != nil && errors.Is(blk.Err, sarama.ErrUnstableOffsetCommit) {
			out[p] = true
		}
	}
	return out, nil
}

// fetchOffsets sends the group's coordinator an OffsetFetch for parts,
// with require_stable when asked and the version has it (stable says
// whether it did).
func (k *cluster) fetchOffsets(ctx context.Context, parts []tp, requireStable bool) (resp *sarama.OffsetFetchResponse, stable bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	byTopic := map[string][]int32{}
	for _, p := range parts {
		byTopic[p.topic] = append(byTopic[p.topic], p.partition)
	}
	coord, err := k.client.Coordinator(k.group)
	if err != nil {
		return nil, false, fmt.Errorf("group %s: coordinator: %w", k.group, err)
	}
	req := sarama.NewOffsetFetchRequest(k.client.Config().Version, k.group, byTopic)
	req.RequireStable = requireStable && req.Version >= 7
	resp, err = coord.FetchOffset(req)
	if err != nil {
		return nil, false, fmt.Errorf("group %s: fetch committed offsets: %w", k.group, err)
	}
	return resp, req.RequireStable, nil
}
