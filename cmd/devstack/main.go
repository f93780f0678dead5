// Command devstack runs the embedded development stack: a Kafka-protocol
// broker (kfake, in this process) with the demo topics, and the Temporal
// CLI's dev server (bin/temporal). It prints the addresses and the commands
// that start a worker and a bridge against them, and stops both on Ctrl-C.
//
//	devstack [-kafka-port 0] [-temporal-port 0] [-ui] [-db-file path] [-topics orders,orders.dlq,order-outcomes] [-partitions 8] [-search-attributes SagaStatus=Keyword]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/cli"
	"github.com/sagabridge/sagabridge/internal/devstack"
)

func main() {
	kafkaPort := flag.Int("kafka-port", 0, "broker port; 0 picks a free one")
	temporalPort := flag.Int("temporal-port", 0, "Temporal frontend port; 0 picks a free one")
	ui := flag.Bool("ui", false, "serve the Temporal Web UI on a free port")
	dbFile := flag.String("db-file", "", "persist Temporal state in this SQLite file; empty keeps it in memory")
	topics := flag.String("topics", "orders,orders.dlq,order-outcomes", "topics to create")
	partitions := flag.Int("partitions", 8, "partitions per topic")
	searchAttributes := flag.String("search-attributes", saga.StatusSearchAttribute+"=Keyword", "comma-separated NAME=TYPE search attributes to register")
	flag.Parse()

	log, _ := cli.NewLogger("info")
	opts := devstack.Options{
		Topics: cli.SplitList(*topics), Partitions: int32(*partitions), KafkaPort: *kafkaPort,
		Temporal: devstack.TemporalOptions{Port: *temporalPort, DBFile: *dbFile, Output: os.Stderr, SearchAttributes: cli.SplitList(*searchAttributes)},
	}
	if *ui {
		ports, err := devstack.FreePorts(1)
		if err != nil {
			cli.Fatal(log, "pick a UI port", err)
		}
		opts.Temporal.UIPort = ports[0]
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	s, err := devstack.Start(ctx, opts)
	if err != nil {
		cli.Fatal(log, "start the dev stack", err)
	}
	defer s.Close()
	bin := filepath.Dir(s.Temporal.Bin)
	fmt.Printf(`sagabridge dev stack is up (Ctrl-C stops it)
  Kafka brokers:    %s   topics: %s (%d partitions)
  Temporal address: %s
  Temporal UI:      %s

Start a worker and a bridge in other terminals:
  %s/worker -temporal-address %s -kafka-brokers %s
  %s/bridge -config examples/saga/bridge.yaml -kafka-brokers %s -temporal-address %s
`, s.Kafka.Brokers[0], *topics, *partitions, s.Temporal.Address, orNone(s.Temporal.UIAddress),
		bin, s.Temporal.Address, s.Kafka.Brokers[0], bin, s.Kafka.Brokers[0], s.Temporal.Address)
	<-ctx.Done()
	fmt.Println("stopping the dev stack")
}

func orNone(s string) string {
	if s == "" {
		return "(headless; pass -ui)"
	}
	return s
}
