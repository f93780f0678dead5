package devstack

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// reaper works around a kfake bug (docs/KFAKE.md; a minimal reproduction is
// cmd/kfakerepro): a classic-group member whose process dies while its
// JoinGroup waits at the broker can stay in a Stable group with no session
// timer, holding its partitions forever. Kafka expires every member that
// sends nothing for its session timeout; kfake, in that state, never does.
//
// The same bug makes a dead leader slow to go: kfake waits for a member
// that never sends its SyncGroup for the whole rebalance timeout, where
// Kafka expires it after its session timeout, as the join completed.
//
// And a member whose JoinGroup reply went to a dead connection has no
// session timer at all, so when the group goes back to PreparingRebalance
// before it is removed (another member left or was reaped), it stays until
// the rebalance timeout ends the round. Meanwhile kfake lets the session
// timer of a live member run while its JoinGroup waits (Kafka keeps a
// member that awaits its join alive), so a live member can be expelled from
// the round it waits in and its JoinGroup is never answered: a stall of the
// rebalance timeout plus sarama's 30 s read timeout.
//
// The reaper restores Kafka's rule from outside: it watches the group
// requests each member sends (JoinGroup, SyncGroup, Heartbeat, offset
// commits) and removes, with a LeaveGroup on its behalf, a member that has
// sent none for its session timeout plus a grace: in a Stable group, or,
// in a group completing or preparing a rebalance, when the member's last
// word was a JoinGroup that a completed round has answered (so it never
// came back for its reply); its silence counts from that round's end, as
// Kafka arms the session timer when the join completes. A member whose
// JoinGroup still waits in the current round is kept alive instead: the
// reaper heartbeats on its behalf (keepAlive). A live member
// heartbeats every few seconds and sends its SyncGroup at once, so only a
// dead one is ever reaped.
type reaper struct {
	log    *slog.Logger
	client *kgo.Client
	reaped atomic.Int64

	mu         sync.Mutex
	heartbeats map[string]int64 // group -> heartbeats seen (for tests)
	seen       map[memberKey]memberSeen
	settled    map[string]time.Time // group -> when a join round was last seen completed
	states     map[string]string    // group -> state at the last sweep
	gens       map[string]int32     // group -> highest generation its members used
	own        map[memberKey]int    // heartbeats the reaper sent and observe has yet to see
}

type memberKey struct{ group, member string }

type memberSeen struct {
	at      time.Time
	timeout time.Duration // the member's session timeout
	joined  bool          // the last request was a JoinGroup
}

// reapGrace is how long past its session timeout a silent member may stay.
const reapGrace = 2 * time.Second

// defaultSessionTimeout is assumed for a member whose JoinGroup was not seen.
const defaultSessionTimeout = 10 * time.Second

// startReaper installs the watch on c and runs the reaper until ctx ends.
func startReaper(ctx context.Context, c *kfake.Cluster, log *slog.Logger) (*reaper, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		return nil, err
	}
	r := &reaper{log: log, client: cl, seen: map[memberKey]memberSeen{}, heartbeats: map[string]int64{}, settled: map[string]time.Time{}, states: map[string]string{},
		gens: map[string]int32{}, own: map[memberKey]int{}}
	for _, key := range []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.OffsetCommit, kmsg.TxnOffsetCommit, kmsg.LeaveGroup} {
		c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			r.observe(req)
			return nil, nil, false // kfake handles the request as usual
		})
	}
	go func() {
		defer cl.Close()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.sweep(ctx)
			}
		}
	}()
	return r, nil
}

// observe records that a member spoke. It runs inside kfake's control
// hook, so it only touches the reaper's own state.
func (r *reaper) observe(req kmsg.Request) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	touch := func(group, member string, timeout time.Duration) {
		if member == "" {
			return // a first JoinGroup: the broker assigns the ID (KIP-394)
		}
		k := memberKey{group, member}
		joined := timeout != 0
		if timeout == 0 {
			timeout = r.seen[k].timeout
		}
		r.seen[k] = memberSeen{at: now, timeout: timeout, joined: joined}
	}
	switch q := req.(type) {
	case *kmsg.JoinGroupRequest:
		timeout := max(time.Duration(q.SessionTimeoutMillis)*time.Millisecond, time.Millisecond)
		touch(q.Group, q.MemberID, timeout)
	case *kmsg.SyncGroupRequest:
		touch(q.Group, q.MemberID, 0)
		r.gens[q.Group] = max(r.gens[q.Group], q.Generation)
	case *kmsg.HeartbeatRequest:
		if k := (memberKey{q.Group, q.MemberID}); r.own[k] > 0 {
			r.own[k]-- // the reaper's keep-alive, not the member's word
			return
		}
		touch(q.Group, q.MemberID, 0)
		r.heartbeats[q.Group]++
		r.gens[q.Group] = max(r.gens[q.Group], q.Generation)
	case *kmsg.OffsetCommitRequest:
		touch(q.Group, q.MemberID, 0)
		r.gens[q.Group] = max(r.gens[q.Group], q.Generation)
	case *kmsg.TxnOffsetCommitRequest:
		touch(q.Group, q.MemberID, 0)
		r.gens[q.Group] = max(r.gens[q.Group], q.Generation)
	case *kmsg.LeaveGroupRequest:
		delete(r.seen, memberKey{q.Group, q.MemberID})
		for _, m := range q.Members {
			delete(r.seen, memberKey{q.Group, m.MemberID})
		}
	}
}

// sweep removes the silent members of Stable groups and the members of
// rebalancing groups that never came back for their JoinGroup reply.
func (r *reaper) sweep(ctx context.Context) {
	list, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx, r.client)
	if err != nil {
		return
	}
	describe := kmsg.NewPtrDescribeGroupsRequest()
	for _, g := range list.Groups {
		if g.ProtocolType == "consumer" {
			describe.Groups = append(describe.Groups, g.Group)
		}
	}
	if len(describe.Groups) == 0 {
		return
	}
	groups, err := describe.RequestWith(ctx, r.client)
	if err != nil {
		return
	}
	now := time.Now()
	for _, g := range groups.Groups {
		r.mu.Lock()
		// A round ends when the group leaves PreparingRebalance: every
		// JoinGroup waiting in it was answered then.
		done := g.State == "CompletingRebalance" || g.State == "Stable"
		if prev, ok := r.states[g.Group]; done && (!ok || prev != g.State && prev != "CompletingRebalance") {
			r.settled[g.Group] = now
		}
		r.states[g.Group] = g.State
		settled := r.settled[g.Group]
		r.mu.Unlock()
		if !done && g.State != "PreparingRebalance" {
			continue
		}
		for _, m := range g.Members {
			k := memberKey{g.Group, m.MemberID}
			r.mu.Lock()
			s, ok := r.seen[k]
			if !ok { // never seen: start its clock now
				s = memberSeen{at: now, joined: true}
				r.seen[k] = s
			}
			timeout := cmp.Or(s.timeout, defaultSessionTimeout)
			r.mu.Unlock()
			if s.joined {
				// Outside PreparingRebalance every JoinGroup has been
				// answered; inside, one sent after the last round ended
				// still waits.
				if g.State == "PreparingRebalance" && !settled.After(s.at) {
					r.keepAlive(ctx, g.Group, m.MemberID)
					continue
				}
				// Kafka arms the session timer when the join completes.
				if settled.After(s.at) {
					s.at = settled
				}
			} else if g.State != "Stable" {
				continue // it heartbeats or waits for the leader's SyncGroup
			}
			if silent := now.Sub(s.at); silent > timeout+reapGrace {
				r.reap(ctx, g.Group, m.MemberID, silent)
			}
		}
	}
}

// keepAlive heartbeats for a member whose JoinGroup waits in a round, as
// Kafka keeps such a member alive and kfake lets its session timer run. In
// PreparingRebalance kfake answers REBALANCE_IN_PROGRESS and restarts the
// member's session timer. The generation is the highest the group's members
// used; a wrong guess is refused and changes nothing.
func (r *reaper) keepAlive(ctx context.Context, group, member string) {
	k := memberKey{group, member}
	r.mu.Lock()
	gen := r.gens[group]
	r.own[k]++
	r.mu.Unlock()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	if _, err := req.RequestWith(ctx, r.client); err != nil {
		r.mu.Lock()
		r.own[k] = max(0, r.own[k]-1)
		r.mu.Unlock()
	}
}

// reap removes a member that has been silent past its session timeout, as
// Kafka would have.
func (r *reaper) reap(ctx context.Context, group, member string, silent time.Duration) {
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = group
	req.Members = []kmsg.LeaveGroupRequestMember{{MemberID: member}}
	if _, err := req.RequestWith(ctx, r.client); err != nil {
		r.log.Warn("kfake workaround: cannot remove a silent group member", "group", group, "member", member, "err", err)
		return
	}
	r.mu.Lock()
	delete(r.seen, memberKey{group, member})
	r.mu.Unlock()
	r.reaped.Add(1)
	r.log.Warn("kfake workaround: removed a group member silent past its session timeout (kfake does not expire it; Kafka would)",
		"group", group, "member", member, "silent_for", silent.Round(time.Second))
}
