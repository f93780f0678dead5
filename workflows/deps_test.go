package workflows

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Workflow code must not need the Kafka client: importing workflows must
// not pull in sarama (it once did, through activities and dlq).
func TestWorkflowsDoesNotDependOnTheKafkaClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sagabridge/sagabridge/workflows").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/IBM/sarama") {
			t.Errorf("workflows depends on %s; go list -deps:\n%s", pkg, out)
		}
	}
}
