package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEveryTopicGetsItsDLQTopic(t *testing.T) {
	assert.Equal(t, []string{"signups", "orders", "signups.dlq", "orders.dlq"}, withDLQTopics([]string{"signups", "orders"}))
	assert.Equal(t, []string{"a.dlq", "a"}, withDLQTopics([]string{"a.dlq", "a"}), "a DLQ topic given is not doubled")
}

func TestTheHintForYourOwnTopicShowsItsRouteAndNotTheOrderExample(t *testing.T) {
	h := hint(hintInput{Brokers: "127.0.0.1:1", Temporal: "127.0.0.1:2", Bin: "/x/bin", Topics: withDLQTopics([]string{"signups"}), Partitions: 4})
	assert.Contains(t, h, "topics: signups,signups.dlq (4 partitions)")
	assert.Contains(t, h, "export BROKERS=127.0.0.1:1 TEMPORAL=127.0.0.1:2\n")
	assert.Contains(t, h, "/x/bin/bridge -config bridge.yaml -kafka-brokers 127.0.0.1:1 -temporal-address 127.0.0.1:2")
	// The README guide's worker (Worker.Kafka) needs the brokers: without
	// them it refused to start ("kafka.brokers: at least one broker is required").
	assert.Contains(t, h, "go run . -temporal-address 127.0.0.1:2 -kafka-brokers 127.0.0.1:1")
	assert.Contains(t, h, "/x/bin/temporal workflow query")
	assert.Contains(t, h, "    - topic: signups\n")
	assert.Contains(t, h, `workflow_id: "signups-{key}"`)
	assert.Contains(t, h, "kcat -P -b 127.0.0.1:1 -t signups -k KEY -H event-type=YourEvent")
	assert.Contains(t, h, "/x/bin/temporal workflow query --address 127.0.0.1:2 --workflow-id signups-KEY --type state --output json")
	assert.NotContains(t, h, "examples/saga/bridge.yaml")
	assert.NotContains(t, h, "/x/bin/worker")
	assert.Contains(t, h, "(headless; pass -ui)")
}

func TestTheHintForTheOrderTopicIsTheOrderExample(t *testing.T) {
	h := hint(hintInput{Brokers: "b:1", Temporal: "t:2", UI: "http://ui", Bin: "bin", Topics: withDLQTopics([]string{"orders", "order-outcomes"}), Partitions: 8})
	assert.Contains(t, h, "bin/worker -temporal-address t:2 -kafka-brokers b:1")
	assert.Contains(t, h, "bin/bridge -config examples/saga/bridge.yaml -kafka-brokers b:1 -temporal-address t:2")
	assert.NotContains(t, h, "routes:", "no route to write for the example")
	assert.NotContains(t, h, "topic: order-outcomes", "the outcome topic is not consumed")
	assert.Contains(t, h, "http://ui")
}

func TestTheHintForBothShowsBoth(t *testing.T) {
	h := hint(hintInput{Brokers: "b:1", Temporal: "t:2", Bin: "bin", Topics: []string{"orders", "signups", "devices"}})
	assert.Contains(t, h, "examples/saga/bridge.yaml")
	assert.Contains(t, h, "Your saga on signups, devices")
	assert.Contains(t, h, "    - topic: devices\n")
}

func TestOnlyDLQTopicsGetNoRoute(t *testing.T) {
	h := hint(hintInput{Topics: []string{"x.dlq"}})
	assert.Contains(t, h, "No topic for a bridge to consume")
	assert.NotContains(t, h, "routes:")
}

// The bridge and worker printed are this checkout's (beside devstack),
// wherever the Temporal CLI was found: with SAGABRIDGE_TEMPORAL set, or a
// bin/temporal in the caller's module, the hint named a bridge and a
// worker beside that CLI, which were not there.
func TestTheHintNamesTheBridgeBesideDevstackNotBesideTheCLI(t *testing.T) {
	cli := filepath.Join(t.TempDir(), "temporal")
	checkout := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(checkout, "bridge"), nil, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(checkout, "devstack"), nil, 0o755))
	assert.Equal(t, checkout, toolsDir(filepath.Join(checkout, "devstack"), cli))
	// go run: devstack is built in a temporary directory; the CLI's
	// directory, the checkout's bin/, is the best guess left.
	assert.Equal(t, filepath.Dir(cli), toolsDir(filepath.Join(t.TempDir(), "devstack"), cli))

	h := hint(hintInput{Brokers: "b:1", Temporal: "t:2", Bin: "/checkout/bin", TemporalBin: "/usr/local/bin/temporal", Topics: []string{"orders", "signups"}})
	assert.Contains(t, h, "/checkout/bin/worker -temporal-address")
	assert.Contains(t, h, "/checkout/bin/bridge -config examples/saga/bridge.yaml")
	assert.Contains(t, h, "/usr/local/bin/temporal workflow query")
}
