// Command devstack runs the embedded development stack: a Kafka-protocol
// broker (kfake, in this process) with the topics you name, and the Temporal
// CLI's dev server (bin/temporal). It prints the addresses and the commands
// that start a worker and a bridge, produce a record and query a saga for
// those topics, and stops both on Ctrl-C.
//
//	devstack [-topics orders,order-outcomes] [-partitions 8] [-search-attributes SagaStatus=Keyword]
//	         [-kafka-port 0] [-temporal-port 0] [-ui] [-db-file path]
//
// -topics lists the topics to create; each one's DLQ topic (the topic plus
// ".dlq", which the bridge requires at start) is created with it. The
// default is the order example's. For a topic of your own (-topics signups)
// the hint shows a bridge route for it; for "orders", the order example's
// worker and bridge.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/cli"
	"github.com/sagabridge/sagabridge/internal/devstack"
)

// usage is printed before the flags by -h.
const usage = `devstack runs Kafka (kfake, in process) and the Temporal dev server on
local ports until Ctrl-C, and prints how to run a worker and a bridge on them.

  devstack                       the order example's topics (orders, order-outcomes)
  devstack -topics signups       your own topic; signups.dlq is created with it
  devstack -topics a,b -ui       several topics, and the Temporal Web UI

Flags:
`

func main() {
	ctx, stop := cli.SignalContext(nil)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if err == flag.ErrHelp {
			return
		}
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "devstack: stopped before the stack was up")
			return
		}
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// run starts the stack as args say, prints the hint to out and waits for ctx.
func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprint(errOut, usage)
		fs.PrintDefaults()
	}
	kafkaPort := fs.Int("kafka-port", 0, "broker port; 0 picks a free one")
	temporalPort := fs.Int("temporal-port", 0, "Temporal frontend port; 0 picks a free one")
	ui := fs.Bool("ui", false, "serve the Temporal Web UI on a free port")
	dbFile := fs.String("db-file", "", "persist Temporal state in this SQLite file; empty keeps it in memory")
	topicList := fs.String("topics", saga.Topic+","+saga.OutcomeTopic,
		"comma-separated topics to create, each with its DLQ topic (<topic>.dlq); the hint printed is for these topics")
	partitions := fs.Int("partitions", 8, "partitions per topic, DLQ topics included")
	searchAttributes := fs.String("search-attributes", saga.StatusSearchAttribute+"=Keyword", "comma-separated NAME=TYPE search attributes to register")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (topics go in -topics a,b)", fs.Arg(0))
	}
	topics := withDLQTopics(cli.SplitList(*topicList))
	if len(topics) == 0 {
		return fmt.Errorf("-topics: name at least one topic")
	}
	opts := devstack.Options{
		Topics: topics, Partitions: int32(*partitions), KafkaPort: *kafkaPort,
		Temporal: devstack.TemporalOptions{Port: *temporalPort, DBFile: *dbFile, Output: errOut, SearchAttributes: cli.SplitList(*searchAttributes)},
	}
	bin, err := temporalBin()
	if err != nil {
		return err
	}
	opts.Temporal.Bin = bin
	if *ui {
		ports, err := devstack.FreePorts(1)
		if err != nil {
			return fmt.Errorf("pick a UI port: %w", err)
		}
		opts.Temporal.UIPort = ports[0]
	}
	s, err := devstack.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start the dev stack: %w", err)
	}
	defer s.Close()
	fmt.Fprint(out, hint(hintInput{
		Brokers: s.Kafka.Brokers[0], Temporal: s.Temporal.Address, UI: s.Temporal.UIAddress,
		Bin: toolsDir(exe(), s.Temporal.Bin), TemporalBin: s.Temporal.Bin, Topics: topics, Partitions: *partitions,
	}))
	<-ctx.Done()
	fmt.Fprintln(out, "stopping the dev stack")
	return nil
}

// exe is devstack's own path, or "" when it cannot be told.
func exe() string {
	path, err := os.Executable()
	if err != nil {
		return ""
	}
	return path
}

// temporalBin finds the Temporal CLI: $SAGABRIDGE_TEMPORAL, bin/temporal in
// the module above the working directory, or else the temporal next to this
// executable, so that $CHECKOUT/bin/devstack runs from any directory (your
// own module's, for one).
func temporalBin() (string, error) {
	found, err := devstack.FindTemporal()
	if err == nil {
		return found, nil
	}
	if exe, exeErr := os.Executable(); exeErr == nil {
		beside := filepath.Join(filepath.Dir(exe), "temporal")
		if _, statErr := os.Stat(beside); statErr == nil {
			return beside, nil
		}
	}
	return "", fmt.Errorf("find the Temporal CLI (or set SAGABRIDGE_TEMPORAL): %w", err)
}
