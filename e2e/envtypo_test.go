package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A misspelled SAGABRIDGE_* variable stops the real binary at start, naming
// the variable and the one it was meant to be, as a misspelled YAML field
// (reported by its path) does; nothing is consumed meanwhile.
func TestTheBridgeRefusesAMisspelledVariableAndAMisspelledField(t *testing.T) {
	e := newEnv(t, 1)
	run := func(yaml string, env ...string) (int, string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "bridge.yaml")
		require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bridgeBin, "-config", path)
		cmd.Env = append(os.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		require.NoError(t, ctx.Err(), "the bridge did not exit: %s", out)
		return cmd.ProcessState.ExitCode(), string(out)
	}
	valid := `kafka: {brokers: [` + strings.Join(stack.Kafka.Brokers, ", ") + `], group: ` + e.topic + `}
temporal: {address: "` + e.temporal + `"}
routes: [{topic: ` + e.topic + `, workflow_type: W, workflow_id: "w-{key}", task_queue: ` + e.taskQueue + `}]
`
	code, out := run(valid, "SAGABRIDGE_KAFKA_BROKERZ=127.0.0.1:1")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "SAGABRIDGE_KAFKA_BROKERZ: not a configuration variable; did you mean SAGABRIDGE_KAFKA_BROKERS (kafka.brokers)?")

	code, out = run(strings.Replace(valid, "group:", "grup:", 1))
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "kafka.grup: unknown field (line 1); did you mean group?")
}
