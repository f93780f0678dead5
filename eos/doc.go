// Package eos is exactly-once consume-process-produce on Kafka: a Processor
// reads records from a consumer group, calls a function that turns each into
// zero or more output records, and commits the outputs together with the
// input offsets in one Kafka transaction per batch (several, in order, when
// the function is too slow for one). A consumer that reads the
// outputs with isolation level read_committed sees each input's outputs
// exactly once, whatever crashes, restarts and rebalances happened.
//
// # Transactions
//
// For every claimed input partition the Processor runs one transactional
// producer whose ID is stable across restarts:
//
//	<prefix>-<group>-<topic>-<partition>
//
// It depends only on the partition, never on the process, so whichever
// instance owns the partition next fences the one before (the bridge's
// dlq.transactional committer uses the same scheme). A batch is: call the
// function on each record, send every output and every dead letter, add the offset after the batch's last
// record to the transaction (AddMessageToTxnWithGroupMetadata, with the
// consumer group's generation and member ID), commit. Nothing of a batch is
// visible to read_committed consumers before the commit, and the offset
// moves only with it. A transaction open half of Config.TransactionTimeout
// commits what it holds and the rest of the batch goes in the next one:
// the broker aborts a transaction that outlives the timeout and fences its
// producer.
//
// # Rewind
//
// The records of a batch stay in memory until its transaction commits. When
// anything fails (the function, a send, the offset, the commit), the
// transaction is aborted and the same records, which are exactly those after
// the last committed offset, are processed again after a backoff. sarama's
// session.ResetOffset would not do this: it only lowers the local mark, the
// claim keeps delivering later records, and the next commit would skip the
// failed one. When the function fails on record i of a batch, records before
// i are committed first and processing resumes at i, so a failing record
// never makes the Processor redo work it had finished.
//
// A record whose function keeps failing (Config.MaxAttempts attempts), or
// fails with an error wrapped by Permanent, is written to the dead-letter
// topic (package dlq) inside the transaction that commits its offset: the
// DLQ record and the offset commit are atomic, so a crash can neither lose
// the record nor dead-letter it twice. A dead letter too large for the DLQ
// goes in reduced form (dlq.Failure.Reduced: the value dropped, the
// coordinates and the error kept): at once when it is over the producer's
// Producer.MaxMessageBytes, or, when the broker refused it (the topic's
// max.message.bytes), when the batch is retried. A record whose function
// returns an output that can never be sent is poison too, and is
// dead-lettered rather than retried for ever: at once when the output is
// over Producer.MaxMessageBytes (the error names the output, its size and
// the limit), and when the broker refuses it for its topic, on a later
// attempt (the broker refuses a whole batch, so the records in it send
// their outputs one output at a time until the refusal names one). An
// error wrapped by Outage is not the record's fault (a service the
// function calls is down, or refuses the Processor's own access): the
// record is retried for as long as the function says so, never counted,
// never dead-lettered. Errors that say so by themselves count as outages
// unwrapped: Kafka's authorization and SASL errors, no leader or too few
// in-sync replicas (inside a sarama producer's send errors too), gRPC's
// PermissionDenied, Unauthenticated, Unavailable and ResourceExhausted
// (Temporal's too; not a message over gRPC's size limit), a Temporal namespace not found or not active, a
// connection refused.
//
// # Fencing
//
// Two mechanisms fence a zombie (a Processor that lost its partitions but
// does not know yet, for example after a long pause):
//
//   - The transactional ID belongs to the partition, not to the process.
//     The new owner of a partition initialises a producer with the same ID,
//     which bumps the producer epoch: the broker aborts the zombie's open
//     transaction and rejects its next send or commit with PRODUCER_FENCED
//     or INVALID_PRODUCER_EPOCH.
//   - KIP-447: the offsets are added with the consumer group's metadata
//     (generation and member ID, sarama.NewConsumerGroupMetadataFromSession),
//     so the group coordinator rejects an offset commit from a member of an
//     older generation even where transactional IDs were shared. sarama's
//     plain AddMessageToTxn sends generation -1 and no member ID, which
//     disables this check; the Processor never uses it. This needs Kafka
//     protocol version 2.5 or newer (Config.KafkaVersion).
//
// A fenced Processor stops: Run returns an error matching ErrFenced, the
// fenced partition commits nothing more, and the others finish their
// batches in progress as on cancellation. Any other error that leaves the transactional
// producer unusable (sarama's fatal state) also stops Run; recreating the
// producer in place could fence the partition's rightful new owner, so the
// decision to restart belongs to the supervisor (a process restart).
//
// # What is exactly once
//
// Outputs, dead letters and input offsets: exactly once, for consumers that
// read with read_committed. The function itself may run more than once for
// a record (after an abort or a crash), so it must not have side effects
// outside Kafka, or those must be idempotent.
//
// eos is independent of Temporal and of the bridge: it must not import
// either, nor the workflows.
package eos
