package bridge

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/event"
)

// The final commit. sarama commits what the bridge marked when a session
// ends and when the group closes, and reports a commit that failed only on
// the group's error channel, as one error among others ("error while
// consuming orders/0: EOF"), which the bridge logs as a warning. A stop
// whose last commit failed looked like any other ("left the group", exit
// 0), and the restart read those records again. So the bridge remembers
// where it marked each partition of its last session, and once it has left
// the group reads the group's committed offsets back: any partition behind
// its mark makes Run fail with ErrFinalCommit.

// ErrFinalCommit matches (errors.Is) Run's error when, after the bridge
// left its group, the group's committed offsets are behind what the bridge
// marked as delivered in its last session, or cannot be read to check.
// Nothing is lost: the records after the committed offsets are read again
// by the next member, the workflows skip what they applied, and a dead
// letter among them may be written twice.
var ErrFinalCommit = errors.New("the final offset commit did not reach Kafka")

// markedOffsets is, for each partition of the current session, the next
// offset the bridge marked as delivered. Safe for concurrent use.
type markedOffsets struct {
	mu   sync.Mutex
	next map[string]map[int32]int64
}

func (m *markedOffsets) mark(topic string, partition int32, next int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.next == nil {
		m.next = map[string]map[int32]int64{}
	}
	if m.next[topic] == nil {
		m.next[topic] = map[int32]int64{}
	}
	m.next[topic][partition] = next
}

// forget drops a partition the bridge no longer owns (revoked while the
// session goes on): what it committed then is no longer this session's.
func (m *markedOffsets) forget(topic string, partition int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.next[topic], partition)
}

// keepOnly drops the partitions a new session does not claim.
func (m *markedOffsets) keepOnly(claims map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for topic, parts := range m.next {
		for p := range parts {
			if !slices.Contains(claims[topic], p) {
				delete(parts, p)
			}
		}
	}
}

// byTopic is a copy of the marks, by topic and partition.
func (m *markedOffsets) byTopic() map[string]map[int32]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[int32]int64{}
	for topic, parts := range m.next {
		if len(parts) > 0 {
			out[topic] = maps.Clone(parts)
		}
	}
	return out
}

// checkFinalCommit reads the group's committed offsets of the partitions
// marked in the last session, once the bridge has left the group, and
// returns an error wrapping ErrFinalCommit that names each partition whose
// committed offset is behind its mark.
func (b *Bridge) checkFinalCommit(client sarama.Client) error {
	marks := b.marked.byTopic()
	if len(marks) == 0 {
		return nil
	}
	parts := map[string][]int32{}
	for topic, ps := range marks {
		parts[topic] = slices.Sorted(maps.Keys(ps))
	}
	committed, unread, err := fetchCommitted(client, b.cfg.Kafka, parts)
	// A transactional commit is stable once its coordinator has written
	// the markers, a moment after the commit returned: until then the
	// offsets read UNSTABLE_OFFSET_COMMIT (per partition, or for the whole
	// answer), which is not a failed commit.
	for try := 0; try < unstableRetries && (errors.Is(err, sarama.ErrUnstableOffsetCommit) || err == nil && onlyUnstable(unread)); try++ {
		time.Sleep(unstableBackoff)
		committed, unread, err = fetchCommitted(client, b.cfg.Kafka, parts)
	}
	if err == nil {
		err = joinUnread(unread)
	}
	if err != nil {
		return fmt.Errorf("%w (it cannot be checked: %w); the records after the group's committed offsets are read again at the next start", ErrFinalCommit, err)
	}
	var behind []string
	for _, topic := range slices.Sorted(maps.Keys(marks)) {
		for _, p := range parts[topic] {
			at, ok := committed[topic][p]
			if next := marks[topic][p]; !ok || at < next {
				was := "nothing"
				if ok {
					was = fmt.Sprint(at)
				}
				behind = append(behind, fmt.Sprintf("%s/%d committed %s of %d delivered", topic, p, was, next))
			}
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("%w: %v; the records after the committed offsets are read again at the next start (the workflows skip what they applied; dead letters among them are written again)", ErrFinalCommit, behind)
	}
	return nil
}

// How checkFinalCommit waits for offsets a transaction is still making
// stable: about 2 s, far below the transaction timeout after which the
// broker aborts one whose commit was given up.
const (
	unstableRetries = 10
	unstableBackoff = 200 * time.Millisecond
)

// onlyUnstable reports whether unread holds errors, all of them
// UNSTABLE_OFFSET_COMMIT.
func onlyUnstable(unread map[event.Position]error) bool {
	for _, err := range unread {
		if !errors.Is(err, sarama.ErrUnstableOffsetCommit) {
			return false
		}
	}
	return len(unread) > 0
}

// fetchCommitted reads the group's committed offsets of parts, with
// require_stable when reading read_committed (an offset committed by a
// transaction still open is not taken for the last one). A partition
// without a committed offset is left out; one the coordinator answered
// with an error (UNSTABLE_OFFSET_COMMIT while a transaction is open) too,
// its error in unread.
func fetchCommitted(client sarama.Client, k config.Kafka, parts map[string][]int32) (committed map[string]map[int32]int64, unread map[event.Position]error, err error) {
	coordinator, err := client.Coordinator(k.Group)
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator of group %s: %w", k.Group, err)
	}
	req := sarama.NewOffsetFetchRequest(client.Config().Version, k.Group, parts)
	req.RequireStable = k.IsolationLevel == config.ReadCommitted && req.Version >= 7
	resp, err := coordinator.FetchOffset(req)
	if err != nil {
		return nil, nil, fmt.Errorf("committed offsets of group %s: %w", k.Group, err)
	}
	if resp.Err != sarama.ErrNoError {
		return nil, nil, fmt.Errorf("committed offsets of group %s: %w", k.Group, resp.Err)
	}
	out := map[string]map[int32]int64{}
	for topic, ps := range parts {
		for _, p := range ps {
			blk := resp.GetBlock(topic, p)
			if blk == nil {
				continue
			}
			if blk.Err != sarama.ErrNoError {
				if unread == nil {
					unread = map[event.Position]error{}
				}
				unread[event.Position{Topic: topic, Partition: p}] = fmt.Errorf("committed offset of %s/%d in group %s: %w", topic, p, k.Group, blk.Err)
				continue
			}
			if blk.Offset >= 0 {
				if out[topic] == nil {
					out[topic] = map[int32]int64{}
				}
				out[topic][p] = blk.Offset
			}
		}
	}
	return out, unread, nil
}

// joinUnread joins fetchCommitted's per-partition errors, in partition order.
func joinUnread(unread map[event.Position]error) error {
	keys := slices.SortedFunc(maps.Keys(unread), func(a, b event.Position) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = unread[k]
	}
	return errors.Join(errs...)
}
