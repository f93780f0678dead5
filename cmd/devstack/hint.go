package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/examples/saga"
)

// hintInput is what the printed hint is made of.
type hintInput struct {
	Brokers     string   // one bootstrap broker
	Temporal    string   // the frontend's host:port
	UI          string   // the Web UI's URL, empty when headless
	Bin         string   // the directory holding bridge and worker
	TemporalBin string   // the Temporal CLI
	Topics      []string // every topic created, DLQ topics included
	Partitions  int
}

// withDLQTopics adds each topic's DLQ topic (the bridge refuses to start
// without it) after the topics given, keeping their order.
func withDLQTopics(topics []string) []string {
	out := slices.Clone(topics)
	for _, t := range topics {
		if strings.HasSuffix(t, dlq.DefaultSuffix) {
			continue
		}
		if d := dlq.TopicFor(t, dlq.DefaultSuffix); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// sourceTopics are the topics a bridge would consume: neither DLQ topics
// nor the order example's outcome topic, which the worker writes.
func sourceTopics(topics []string) []string {
	var out []string
	for _, t := range topics {
		if !strings.HasSuffix(t, dlq.DefaultSuffix) && t != saga.OutcomeTopic {
			out = append(out, t)
		}
	}
	return out
}

// hint is what devstack prints once the stack is up: the addresses, then
// for the order example's topic its worker and bridge, and for every other
// topic a bridge route, a worker line, a kcat command and a query.
func hint(in hintInput) string {
	var b strings.Builder
	ui := in.UI
	if ui == "" {
		ui = "(headless; pass -ui)"
	}
	fmt.Fprintf(&b, `sagabridge dev stack is up (Ctrl-C stops it)
  Kafka brokers:    %s   topics: %s (%d partitions)
  Temporal address: %s
  Temporal UI:      %s
  export BROKERS=%s TEMPORAL=%s
`, in.Brokers, strings.Join(in.Topics, ","), in.Partitions, in.Temporal, ui, in.Brokers, in.Temporal)
	sources := sourceTopics(in.Topics)
	var own []string
	for _, t := range sources {
		if t != saga.Topic {
			own = append(own, t)
		}
	}
	if slices.Contains(sources, saga.Topic) {
		fmt.Fprintf(&b, `
The order example (topic %s), in other terminals:
  %s/worker -temporal-address %s -kafka-brokers %s
  %s/bridge -config examples/saga/bridge.yaml -kafka-brokers %s -temporal-address %s
`, saga.Topic, in.Bin, in.Temporal, in.Brokers, in.Bin, in.Brokers, in.Temporal)
	}
	if len(own) == 0 {
		if len(sources) == 0 {
			b.WriteString("\nNo topic for a bridge to consume: pass -topics your-topic.\n")
		}
		return b.String()
	}
	fmt.Fprintf(&b, `
Your saga on %s (README.md, "Your own saga"), in other terminals:
  go run . -temporal-address %s -kafka-brokers %s   # your sagaworker.Main, in your module (no -kafka-brokers without Worker.Kafka)
  %s/bridge -config bridge.yaml -kafka-brokers %s -temporal-address %s
with bridge.yaml routing each topic to the workflow name your worker registers:
  kafka: {brokers: [%s], group: my-bridge}
  routes:
`, strings.Join(own, ", "), in.Temporal, in.Brokers, in.Bin, in.Brokers, in.Temporal, in.Brokers)
	for _, t := range own {
		fmt.Fprintf(&b, `    - topic: %s
      type_header: event-type   # without it every record's event type is empty
      workflow_type: YourSaga   # = the name your worker registers
      workflow_id: "%s-{key}"
      task_queue: %s   # = the task queue your worker polls
`, t, t, t)
	}
	t := own[0]
	fmt.Fprintf(&b, `Produce a record, then query its saga:
  echo '{"field":"value"}' | kcat -P -b %s -t %s -k KEY -H event-type=YourEvent
  %s workflow query --address %s --workflow-id %s-KEY --type state --output json
`, in.Brokers, t, cmp.Or(in.TemporalBin, filepath.Join(in.Bin, "temporal")), in.Temporal, t)
	return b.String()
}

// toolsDir is the directory holding bridge and worker: devstack's own
// (exe) when a bridge is beside it, else the Temporal CLI's (cli).
func toolsDir(exe, cli string) string {
	if dir := filepath.Dir(exe); exe != "" {
		if _, err := os.Stat(filepath.Join(dir, "bridge")); err == nil {
			return dir
		}
	}
	return filepath.Dir(cli)
}
