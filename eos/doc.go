// Package eos will hold the exactly-once consume-process-produce Processor:
// outputs and input offsets committed in one Kafka transaction per batch,
// one transactional ID per input partition so a restarted or zombie
// instance is fenced. It is not built yet; see issue 6. The dead-letter
// contract it will share with the bridge is in package dlq.
package eos
