package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/devstack"
)

// guideBlock is a fenced code block of README.md's guide, marked by an
// HTML comment before it: <!-- guide:file main.go -->, <!-- guide:sh run -->
// or <!-- guide:json query-answer --> (an answer the guide shows).
type guideBlock struct {
	kind, name, body string
}

var guideMarker = regexp.MustCompile("(?s)<!-- guide:(file|sh|json) (\\S+) -->\\s*```[a-z]*\\n(.*?)\\n```")

// readGuide returns the guide's marked blocks in the order they appear.
func readGuide(t *testing.T, root string) []guideBlock {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	var blocks []guideBlock
	for _, m := range guideMarker.FindAllStringSubmatch(string(readme), -1) {
		blocks = append(blocks, guideBlock{kind: m[1], name: m[2], body: m[3]})
	}
	require.NotEmpty(t, blocks, "README.md has no <!-- guide:... --> blocks")
	return blocks
}

// guideLines are the commands of a sh block, without comments and blanks.
func guideLines(body string) []string {
	var out []string
	for line := range strings.SplitSeq(body, "\n") {
		if i := strings.Index(line, "  #"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// guideKcatMessage reads a guide line `echo 'VALUE' | kcat -P -b $BROKERS -t TOPIC -k KEY -H k=v ...`
// as the record kcat would produce.
func guideKcatMessage(t *testing.T, line string) *sarama.ProducerMessage {
	t.Helper()
	m := regexp.MustCompile(`^echo '([^']*)' \| kcat (.*)$`).FindStringSubmatch(line)
	require.NotNil(t, m, "not an echo | kcat line: %s", line)
	msg := &sarama.ProducerMessage{Value: sarama.StringEncoder(m[1])}
	args := strings.Fields(m[2])
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-P":
		case "-b":
			i++ // the test's broker
		case "-t":
			i++
			msg.Topic = args[i]
		case "-k":
			i++
			msg.Key = sarama.StringEncoder(args[i])
		case "-H":
			i++
			k, v, ok := strings.Cut(args[i], "=")
			require.True(t, ok, "header %q", args[i])
			msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
		default:
			t.Fatalf("kcat flag %q in %q: teach the test", args[i], line)
		}
	}
	return msg
}

// guideState is what the test reads of the signup saga's state.
type guideState struct {
	Status         string   `json:"status"`
	CompletedSteps []string `json:"completed_steps"`
	Compensations  []struct {
		Name  string `json:"name"`
		Error string `json:"error"`
	} `json:"compensations"`
	LastError string `json:"last_error"`
	State     struct {
		Email, Plan   string
		PaymentMethod string `json:"payment_method"`
	} `json:"state"`
	Stats struct {
		Applied      int `json:"applied"`
		DedupedByKey int `json:"deduped_by_key"`
		Updates      int `json:"updates"`
	} `json:"stats"`
}

// TestGuideRunsAsWritten follows README.md's "Your own saga" section: a
// fresh module with a replace to this checkout, the README's main.go and
// bridge.yaml, its worker built with go build, the real bridge binary, the
// README's records, and its query, update and list commands run through sh.
func TestGuideRunsAsWritten(t *testing.T) {
	root, err := devstack.ModuleRoot()
	require.NoError(t, err)
	blocks := readGuide(t, root)
	dir := t.TempDir()
	env := map[string]string{"SB": root, "BROKERS": stack.Kafka.Brokers[0], "TEMPORAL": stack.Temporal.Address}
	shell := func(line string) (string, error) {
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = dir
		cmd.Env = os.Environ()
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		// go mod tidy would load the tests of every dependency from the
		// proxy; the build below takes the checkout's go.sum instead. It
		// may still fetch go.mod files that the guide's module graph needs
		// and the checkout's own build did not (github.com/go-logr/stdr
		// requires logr v1.2.2): on a fresh machine they are not in the
		// module cache, so the proxy stays on, and go.sum verifies them.
		cmd.Env = append(cmd.Env, "GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	producer, err := sarama.NewSyncProducer(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	defer producer.Close()

	var logs syncBuffer
	var stateJSON string // the guide's query command
	for _, b := range blocks {
		if b.name == "query" {
			lines := guideLines(b.body)
			require.Len(t, lines, 1)
			stateJSON = lines[0]
		}
	}
	require.Contains(t, stateJSON, "--workflow-id signup-ann", "the guide queries ann's saga")
	query := func(workflowID string) (guideState, error) {
		var st guideState
		out, err := shell(strings.ReplaceAll(stateJSON, "signup-ann", workflowID))
		if err != nil {
			return st, err
		}
		var resp struct {
			QueryResult []guideState `json:"queryResult"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.QueryResult) != 1 {
			return st, fmt.Errorf("query answered %s: %v", out, err)
		}
		return resp.QueryResult[0], nil
	}
	produced := 0
	var answer string // what the query printed
	for _, b := range blocks {
		switch {
		case b.kind == "file":
			require.NoError(t, os.WriteFile(filepath.Join(dir, b.name), []byte(b.body+"\n"), 0o600))
			if b.name == "main.go" { // go mod tidy, in the guide
				data, err := os.ReadFile(filepath.Join(root, "go.sum"))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), data, 0o600))
			}
		case b.name == "setup":
			for _, line := range guideLines(b.body) {
				if strings.HasPrefix(line, "go mod ") { // SB= and mkdir/cd: the test has its directory
					out, err := shell(line)
					require.NoError(t, err, "%s: %s", line, out)
				}
			}
		case b.name == "run":
			guideRun(t, dir, guideLines(b.body), env, shell, &logs)
		case b.name == "produce":
			for _, line := range guideLines(b.body) {
				_, _, err := producer.SendMessage(guideKcatMessage(t, line))
				require.NoError(t, err)
				produced++
			}
			if produced == 3 {
				var st guideState
				require.Eventually(t, func() bool {
					st, err = query("signup-ann")
					return err == nil && st.Stats.Applied+st.Stats.DedupedByKey == 3
				}, 45*time.Second, 200*time.Millisecond, "ann's first records; last state %+v, err %v\n%s", st, err, logs.String())
				assert.Equal(t, "trial", st.Status)
				assert.Equal(t, []string{"CreateAccount"}, st.CompletedSteps)
				assert.Equal(t, "pm_visa", st.State.PaymentMethod)
				assert.Equal(t, 1, st.Stats.DedupedByKey, "the producer's retry, at a new offset, is dropped by its idempotency key")
			}
		case b.name == "query":
			out, err := shell(stateJSON)
			require.NoError(t, err, out)
			t.Logf("the guide's query answers:\n%s", out)
			answer = out
		case b.name == "query-answer":
			require.NotEmpty(t, answer, "the answer comes after the query")
			assert.Equal(t, comparableAnswer(t, b.body), comparableAnswer(t, answer), "README.md shows this answer to the query; the CLI printed:\n%s", answer)
		case b.name == "update":
			lines := guideLines(b.body)
			require.Len(t, lines, 1)
			out, err := shell(lines[0])
			require.NoError(t, err, out)
			var resp struct {
				Name   string                `json:"name"`
				Result struct{ Plan string } `json:"result"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &resp), out)
			assert.Equal(t, "change-plan", resp.Name)
			assert.Equal(t, "basic", resp.Result.Plan)
		case b.name == "list":
			var ann, bob guideState
			require.Eventually(t, func() bool {
				ann, err = query("signup-ann")
				if err != nil {
					return false
				}
				bob, err = query("signup-bob")
				return err == nil && ann.Status == "active" && bob.Status == "failed"
			}, 45*time.Second, 200*time.Millisecond, "ann %+v, bob %+v, err %v\n%s", ann, bob, err, logs.String())
			assert.Equal(t, []string{"CreateAccount", "Charge", "Activate"}, ann.CompletedSteps)
			assert.Equal(t, "basic", ann.State.Plan)
			assert.Equal(t, 1, ann.Stats.Updates)
			require.Len(t, bob.Compensations, 2) // the refund, registered before the charge, then the account
			assert.Equal(t, "Refund", bob.Compensations[0].Name)
			assert.Equal(t, "CloseAccount", bob.Compensations[1].Name)
			assert.Empty(t, bob.Compensations[0].Error)
			assert.Empty(t, bob.Compensations[1].Error)
			assert.Equal(t, "CardDeclined: card declined", bob.LastError)

			lines := guideLines(b.body)
			require.Len(t, lines, 1)
			var out string
			require.Eventually(t, func() bool { // visibility is eventually consistent
				out, err = shell(lines[0])
				return err == nil && strings.Contains(out, "signup-bob")
			}, 30*time.Second, 250*time.Millisecond, "list: %s %v", out, err)
			assert.NotContains(t, out, "signup-ann")
		default:
			t.Fatalf("guide block %s %s: teach the test what to do with it", b.kind, b.name)
		}
	}
	for _, step := range []string{"setup", "main.go", "bridge.yaml", "run", "produce", "query", "query-answer", "update", "list"} {
		assert.True(t, slices.ContainsFunc(blocks, func(b guideBlock) bool { return b.name == step }), "the guide has no %s block", step)
	}
}

// comparableAnswer decodes a query answer, leaving out what differs from
// run to run: the timeouts' deadlines and the watermarks' partitions and
// topic IDs (kcat and sarama partition keys differently).
func comparableAnswer(t *testing.T, out string) map[string]any {
	t.Helper()
	var resp map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &resp), out)
	results, ok := resp["queryResult"].([]any)
	require.True(t, ok && len(results) == 1, "one queryResult: %s", out)
	st := results[0].(map[string]any)
	if ts, ok := st["timeouts"].([]any); ok {
		for _, tm := range ts {
			tm.(map[string]any)["at"] = "<deadline>"
		}
	}
	if wm, ok := st["watermarks"].(map[string]any); ok {
		var offsets []float64
		for _, o := range wm {
			offsets = append(offsets, o.(float64))
		}
		slices.Sort(offsets)
		st["watermarks"] = offsets
	}
	return resp
}

// guideRun does what the guide's run block says: devstack's topics (the
// test's stack stands in for devstack), the worker (built from the guide's
// module; the guide's `go run .`) and the bridge binary, with the guide's
// flags.
func guideRun(t *testing.T, dir string, lines []string, env map[string]string, shell func(string) (string, error), logs *syncBuffer) {
	t.Helper()
	require.Len(t, lines, 3, "devstack, worker, bridge")
	expand := func(line string) []string {
		return strings.Fields(os.Expand(line, func(k string) string { return env[k] }))
	}
	devstackArgs := expand(lines[0])
	require.Equal(t, filepath.Join(env["SB"], "bin", "devstack"), devstackArgs[0])
	i := slices.Index(devstackArgs, "-topics")
	require.GreaterOrEqual(t, i, 0, "devstack without -topics")
	for _, topic := range strings.Split(devstackArgs[i+1], ",") {
		for _, name := range []string{topic, topic + ".dlq"} {
			if err := stack.Kafka.Cluster.CreateTopic(name, 2, nil); err != nil {
				t.Logf("create topic %s: %v", name, err)
			}
		}
	}

	workerArgs := expand(lines[1])
	require.Equal(t, []string{"go", "run", "."}, workerArgs[:3])
	if out, err := shell("go build -o worker ."); err != nil {
		t.Fatalf("go build of the guide's module: %v\n%s", err, out)
	}
	w, err := devstack.StartProcess(logs, filepath.Join(dir, "worker"), workerArgs[3:]...)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, w.Stop(15*time.Second), "the worker stops cleanly on SIGTERM")
	})
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `"msg":"worker started"`) },
		30*time.Second, 50*time.Millisecond, "worker output:\n%s", logs.String())

	bridgeArgs := expand(lines[2])
	require.Equal(t, filepath.Join(env["SB"], "bin", "bridge"), bridgeArgs[0])
	for j, a := range bridgeArgs {
		if strings.HasSuffix(a, ".yaml") {
			bridgeArgs[j] = filepath.Join(dir, a)
		}
	}
	// bridgeBin is cmd/bridge as it is now; $SB/bin/bridge may be older.
	b, err := devstack.StartProcess(logs, bridgeBin, bridgeArgs[1:]...)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, b.Stop(20*time.Second), "the bridge stops cleanly on SIGTERM")
		if t.Failed() {
			t.Logf("worker and bridge output:\n%s", logs.String())
		}
	})
}
