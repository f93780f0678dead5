// Command saramarace is the minimal reproduction of a data race inside
// sarama's transactional producer (v1.61.1, and IBM/sarama#2913 on
// v1.43): transactionManager.transitionTo writes lastError under
// statusLock, while publishTxnPartitions, on a broker producer's goroutine,
// reads it under partitionInTxnLock only. Two records refused on the
// client side (over Producer.MaxMessageBytes) within one transaction, with
// a record to a partition not yet in the transaction between them, are
// enough: the first refusal puts the transaction in its abortable error
// state, the broker producer reads lastError to fail the AddPartitions,
// the second refusal writes it again.
//
//	go run -race ./cmd/saramarace [-trials 200]
//
// Built with -race it prints the race detector's report and exits 66 when
// the race shows (here: within the first 200 trials, every run tried).
// The bridge and eos sidestep it for dead letters by reducing one over the
// producer's limit before sending it (dlq.Failure.Within); a record the
// broker refuses (the topic's max.message.bytes) still takes sarama's
// error path.
package main

import (
	"flag"
	"fmt"
	"log"
	"strings"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/internal/devstack"
)

func main() {
	trials := flag.Int("trials", 200, "transactions to try")
	flag.Parse()
	const partitions = 8
	k, err := devstack.StartKafka(0, partitions, "t")
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Transaction.ID = "race"
	c.Producer.MaxMessageBytes = 1_000
	c.Net.MaxOpenRequests = 1
	c.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(k.Brokers, c)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	big := sarama.ByteEncoder(strings.Repeat("x", 2_000))
	for i := range *trials {
		if err := p.BeginTxn(); err != nil {
			log.Fatalf("trial %d: begin: %v", i, err)
		}
		var msgs []*sarama.ProducerMessage
		for part := range int32(partitions) {
			msgs = append(msgs,
				&sarama.ProducerMessage{Topic: "t", Partition: part, Value: sarama.StringEncoder("small")},
				&sarama.ProducerMessage{Topic: "t", Partition: part, Value: big})
		}
		_ = p.SendMessages(msgs) // refused: the big records
		if err := p.AbortTxn(); err != nil {
			log.Fatalf("trial %d: abort: %v", i, err)
		}
	}
	fmt.Printf("%d transactions, each with %d records over Producer.MaxMessageBytes; built with -race, a race shows above and the exit code is 66\n", *trials, partitions)
}
