package devstack

import (
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
// The reaper restores Kafka's rule from outside: it watches the group
// requests each member sends (JoinGroup, SyncGroup, Heartbeat, offset
// commits) and removes, with a LeaveGroup on its behalf, a member that has
// sent none for its session timeout plus a grace: in a Stable group, or in
// a group completing a rebalance when the member's last word was its
// JoinGroup (so it never collected its reply). A live member heartbeats
// every few seconds and sends its SyncGroup at once, so only a dead one is
// ever reaped.
type reaper struct {
	log    *slog.Logger
	client *kgo.Client
	reaped atomic.Int64

	mu         sync.Mutex
	heartbeats map[string]int64 // group -> heartbeats seen (for tests)
	seen       map[memberKey]memberSeen
	completing map[string]time.Time // group -> first seen CompletingRebalance
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
	r := &reaper{log: log, client: cl, seen: map[memberKey]memberSeen{}, heartbeats: map[string]int64{}, completing: map[string]time.Time{}}
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
	case *kmsg.HeartbeatRequest:
		touch(q.Group, q.MemberID, 0)
		r.heartbeats[q.Group]++
	case *kmsg.OffsetCommitRequest:
		touch(q.Group, q.MemberID, 0)
	case *kmsg.TxnOffsetCommitRequest:
		touch(q.Group, q.MemberID, 0)
	case *kmsg.LeaveGroupRequest:
		delete(r.seen, memberKey{q.Group, q.MemberID})
		for _, m := range q.Members {
			delete(r.seen, memberKey{q.Group, m.MemberID})
		}
	}
}

// sweep removes the silent members of Stable groups and the members of
// completing groups that never came back for their JoinGroup reply.
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
		since, wasCompleting := r.completing[g.Group]
		if g.State == "CompletingRebalance" && !wasCompleting {
			since = now
			r.completing[g.Group] = now
		} else if g.State != "CompletingRebalance" {
			delete(r.completing, g.Group)
		}
		r.mu.Unlock()
		if g.State != "Stable" && g.State != "CompletingRebalance" {
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
			timeout := s.timeout
			if timeout == 0 {
				timeout = defaultSessionTimeout
			}
			silent := now.Sub(s.at)
			r.mu.Unlock()
			if g.State == "CompletingRebalance" {
				if !s.joined {
					continue // it sent its SyncGroup and waits for the leader's
				}
				// Kafka arms the session timer when the join completes.
				if since.After(s.at) {
					silent = now.Sub(since)
				}
			}
			if silent > timeout+reapGrace {
				r.reap(ctx, g.Group, m.MemberID, silent)
			}
		}
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
