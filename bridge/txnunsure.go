package bridge

// A transactional commit whose outcome is unknown (txnCommitter.unsure):
// sarama ran out of retries sending EndTxn(commit) after it may have
// reached the coordinator. It is settled by committing again, never by
// aborting, which would write its dead letters twice.

import (
	"errors"
	"fmt"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

// errCommitUnsure is a commit whose outcome is unknown: sarama ran out of
// retries sending EndTxn(commit), which may have reached the coordinator.
var errCommitUnsure = errors.New("commit outcome unknown")

// unsureCommit is a transaction whose commit outcome is unknown.
type unsureCommit struct {
	dead []dlq.Failure
	next int64
}

// settle finishes the unsure transaction by committing it again. Once
// committed, its dead letters and watermark count as committed; if the
// producer is no longer in the middle of that commit (fenced, or fatal),
// the transaction did not commit, and its dead letters go back to the
// queue for the next transaction. While the coordinator stays out of
// reach, it returns the error and keeps them.
func (c *txnCommitter) settle() (int, error) {
	u := c.unsure
	err := c.prod.CommitTxn()
	switch {
	case err == nil:
		c.unsure = nil
		c.committed = max(c.committed, u.next)
		if len(u.dead) > 0 {
			c.committedDead(u.dead)
		}
		c.log.Info("the unsure transaction is committed", "dead_letters", len(u.dead))
		return 0, nil
	case kafkatxn.Committing(c.prod):
		return len(u.dead), fmt.Errorf("commit %s again: %w: %w", c.txnID, errCommitUnsure, err)
	default:
		c.unsure = nil
		c.mu.Lock()
		c.queued = append(u.dead, c.queued...)
		c.mu.Unlock()
		return len(u.dead), fmt.Errorf("commit %s again: %w", c.txnID, err)
	}
}
