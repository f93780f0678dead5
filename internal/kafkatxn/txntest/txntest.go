// Package txntest is a fake of sarama's transactional SyncProducer for
// unit tests of code that commits transactions: it models the states
// sarama leaves a producer in when an end of transaction runs out of
// retries, which a broker fake cannot produce (the commit reaching the
// coordinator and its reply lost).
package txntest

import (
	"errors"
	"sync"

	"github.com/IBM/sarama"
)

// Coordinator is what a transaction coordinator has committed: the
// records of each committed transaction, by what Key makes of them.
type Coordinator struct {
	// Key names a record in Committed (for example its DLQ offset).
	Key func(*sarama.ProducerMessage) string

	mu        sync.Mutex
	committed [][]string
	// lostReplies is how many EndTxn(commit) replies are lost.
	lostReplies int
}

// NewCoordinator returns a coordinator whose next lost EndTxn(commit)
// replies are lost: each of those commits lands, and its producer sees a
// network error.
func NewCoordinator(key func(*sarama.ProducerMessage) string, lost int) *Coordinator {
	return &Coordinator{Key: key, lostReplies: lost}
}

// Committed returns the keys of the records of each committed transaction.
func (c *Coordinator) Committed() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.committed...)
}

// Producer returns a new producer of the coordinator, ready.
func (c *Coordinator) Producer() *Producer {
	return &Producer{c: c, status: sarama.ProducerTxnFlagReady}
}

// Producer fakes sarama's transactional SyncProducer. After a commit whose
// reply was lost its status is EndTransaction|CommittingTransaction (as
// sarama's is once EndTxn ran out of retries); an abort then reaches a
// coordinator that has committed and is answered INVALID_TXN_STATE, which
// sarama makes fatal; a commit sent again is a no-op for the coordinator.
// Methods it does not fake panic (the embedded interface is nil).
type Producer struct {
	sarama.SyncProducer
	c      *Coordinator
	status sarama.ProducerTxnStatusFlag
	sent   []string
	landed bool // the open transaction's commit reached the coordinator
	closed bool
}

// TxnStatus is the producer's sarama status.
func (p *Producer) TxnStatus() sarama.ProducerTxnStatusFlag { return p.status }

// IsTransactional is true.
func (p *Producer) IsTransactional() bool { return true }

// Close closes the producer.
func (p *Producer) Close() error { p.closed = true; return nil }

// BeginTxn begins a transaction from the ready state.
func (p *Producer) BeginTxn() error {
	if p.status != sarama.ProducerTxnFlagReady {
		return sarama.ErrTransitionNotAllowed
	}
	p.status, p.sent, p.landed = sarama.ProducerTxnFlagInTransaction, nil, false
	return nil
}

// SendMessage adds msg to the transaction.
func (p *Producer) SendMessage(msg *sarama.ProducerMessage) (int32, int64, error) {
	return 0, 0, p.SendMessages([]*sarama.ProducerMessage{msg})
}

// SendMessages adds msgs to the transaction.
func (p *Producer) SendMessages(msgs []*sarama.ProducerMessage) error {
	if p.status&sarama.ProducerTxnFlagInTransaction == 0 {
		return sarama.ErrTransactionNotReady
	}
	for _, m := range msgs {
		p.sent = append(p.sent, p.c.Key(m))
	}
	return nil
}

// AddOffsetsToTxnWithGroupMetadata adds offsets to the transaction.
func (p *Producer) AddOffsetsToTxnWithGroupMetadata(map[string][]*sarama.PartitionOffsetMetadata, *sarama.ConsumerGroupMetadata) error {
	return nil
}

// AddMessageToTxnWithGroupMetadata adds a consumed record's offset to the
// transaction.
func (p *Producer) AddMessageToTxnWithGroupMetadata(*sarama.ConsumerMessage, *sarama.ConsumerGroupMetadata, *string) error {
	return nil
}

// CommitTxn commits the transaction, once at the coordinator however often
// it is sent; while replies are lost it returns a network error and leaves
// the producer committing.
func (p *Producer) CommitTxn() error {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if p.status&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagCommittingTransaction) == 0 {
		return sarama.ErrTransitionNotAllowed
	}
	if !p.landed {
		p.c.committed = append(p.c.committed, p.sent)
		p.landed = true
	}
	if p.c.lostReplies > 0 {
		p.c.lostReplies--
		p.status = sarama.ProducerTxnFlagEndTransaction | sarama.ProducerTxnFlagCommittingTransaction
		return errors.New("EndTxn: read tcp 127.0.0.1:9092: i/o timeout")
	}
	p.status = sarama.ProducerTxnFlagReady
	return nil
}

// AbortTxn aborts the transaction, unless its commit reached the
// coordinator: then INVALID_TXN_STATE, and the producer is fatal.
func (p *Producer) AbortTxn() error {
	if p.landed {
		p.status = sarama.ProducerTxnFlagInError | sarama.ProducerTxnFlagFatalError
		return sarama.ErrInvalidTxnState
	}
	p.status = sarama.ProducerTxnFlagReady
	return nil
}
