// Package kafkatxn holds what the two users of sarama's transactional
// producer share (eos.Processor and the bridge's dlq.transactional
// committer): the transactional ID scheme, aborting, and telling apart the
// errors that mean the partition has a newer owner. It must not import
// either of its users.
package kafkatxn

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// NewProducer starts a transactional SyncProducer on a client of its own,
// which its Close closes. When the producer cannot start (its
// InitProducerId refused: the transactional ID's ACL missing, the
// coordinator loading) the client is closed before NewProducer returns:
// sarama's NewSyncProducer leaves the client it opened behind then, its
// goroutines and connections with it, and both callers retry a start for
// as long as it fails.
func NewProducer(brokers []string, c *sarama.Config) (sarama.SyncProducer, error) {
	client, err := sarama.NewClient(brokers, c)
	if err != nil {
		return nil, err
	}
	return ProducerFromClient(client)
}

// ProducerFromClient starts a transactional SyncProducer on client, which
// it then owns: its Close closes client, and so does a failed start.
func ProducerFromClient(client sarama.Client) (sarama.SyncProducer, error) {
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		if cerr := client.Close(); cerr != nil {
			return nil, fmt.Errorf("%w (and closing its client failed: %w)", err, cerr)
		}
		return nil, err
	}
	return ownClient{prod, client}, nil
}

// ownClient is a SyncProducer that closes its client after itself.
type ownClient struct {
	sarama.SyncProducer
	client sarama.Client
}

// Close closes the producer, then its client.
func (p ownClient) Close() error {
	return errors.Join(p.SyncProducer.Close(), p.client.Close())
}

// Committing reports whether prod is left in the middle of a commit, as
// sarama leaves it when EndTxn(commit) ran out of retries: the commit may
// have reached the coordinator. Aborting then is wrong (a coordinator that
// committed answers INVALID_TXN_STATE, which sarama makes fatal); sending
// the commit again is right either way, since the coordinator takes a
// repeated commit of a committed transaction as a no-op.
func Committing(prod sarama.SyncProducer) bool {
	st := prod.TxnStatus()
	return st&sarama.ProducerTxnFlagFatalError == 0 && st&sarama.ProducerTxnFlagCommittingTransaction != 0
}

// Abort aborts prod's open transaction after cause and returns cause (with
// the abort's own failure, if any). A producer in sarama's fatal state has
// nothing to abort with; the caller must stop using it. A producer in the
// middle of a commit (Committing) is not aborted: Ready finishes its
// commit.
func Abort(prod sarama.SyncProducer, cause error) error {
	if prod.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0 || Committing(prod) {
		return cause
	}
	if err := prod.AbortTxn(); err != nil {
		return fmt.Errorf("%w (and the abort failed: %w)", cause, err)
	}
	return cause
}

// Ready readies prod for a new transaction after a failed one. It aborts
// a transaction left open or in an abortable error, and finishes an end of
// transaction or an epoch bump that ran out of sarama's retries (the
// transaction coordinator out of reach for a few seconds): sarama leaves
// the producer between transactions then, refuses BeginTxn, and finishes
// them on the next abort. A producer in sarama's fatal state cannot be
// readied; Ready leaves it to the caller.
//
// A commit that ran out of retries (Committing) is finished by committing
// it again, never aborted: it may have committed.
func Ready(prod sarama.SyncProducer) error {
	const unfinished = sarama.ProducerTxnFlagAbortableError | sarama.ProducerTxnFlagInTransaction |
		sarama.ProducerTxnFlagEndTransaction | sarama.ProducerTxnFlagInitializing
	st := prod.TxnStatus()
	if st&sarama.ProducerTxnFlagFatalError != 0 || st&unfinished == 0 {
		return nil
	}
	if Committing(prod) {
		if err := prod.CommitTxn(); err != nil {
			return fmt.Errorf("finish the commit that ran out of retries (%s): %w", st, err)
		}
		return nil
	}
	if err := prod.AbortTxn(); err != nil {
		return fmt.Errorf("abort the unfinished transaction (%s): %w", st, err)
	}
	return nil
}

// SendErrors turns sarama's ProducerErrors, which hide their causes from
// errors.Is, into a joined error that does not, each cause once with how
// many records it failed (a batch failing alike made a line per record);
// other errors pass through.
func SendErrors(err error) error {
	var pes sarama.ProducerErrors
	if !errors.As(err, &pes) {
		return err
	}
	var (
		causes []error
		counts = map[string]int{}
	)
	for _, pe := range pes {
		text := pe.Err.Error()
		if counts[text] == 0 {
			causes = append(causes, pe.Err)
		}
		counts[text]++
	}
	errs := make([]error, len(causes))
	for i, c := range causes {
		errs[i] = fmt.Errorf("%d records: %w", counts[c.Error()], c)
	}
	return fmt.Errorf("%d records failed: %w", len(pes), errors.Join(errs...))
}

// Fenced reports whether err says a newer producer with the same
// transactional ID took over.
func Fenced(err error) bool {
	return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch)
}

// StaleMember reports whether the group coordinator rejected the offsets
// because this member's generation is over (KIP-447): the partition is
// being reassigned.
func StaleMember(err error) bool {
	return errors.Is(err, sarama.ErrIllegalGeneration) ||
		errors.Is(err, sarama.ErrUnknownMemberId) ||
		errors.Is(err, sarama.ErrFencedInstancedId)
}

// TransactionalID is the ID of the producer that serves one input
// partition: "<prefix>-<group>-<topic>-<partition>". It depends only on the
// partition, never on the process, so whichever instance owns the partition
// next fences the one before.
func TransactionalID(prefix, group, topic string, partition int32) string {
	return fmt.Sprintf("%s-%s-%s-%d", prefix, group, topic, partition)
}
