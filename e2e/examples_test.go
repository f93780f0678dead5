package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The examples are what users copy into modules of their own, where Go
// refuses imports of another module's internal/ packages: their non-test
// code imports only the public packages. (examples/enrich imported
// internal/cli and did not compile once copied.) The saga demo is a
// runner of the embedded stack, not an example to copy.
func TestExamplesImportOnlyPublicPackages(t *testing.T) {
	// Their own imports: the public packages may use internal ones.
	out, err := exec.Command("go", "list", "-f", `{{range .Imports}}{{$.ImportPath}} imports {{.}}{{"\n"}}{{end}}`,
		"../examples/saga", "../examples/trip", "../examples/signup/...", "../examples/enrich").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var internal []string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "imports github.com/sagabridge/sagabridge/internal/") {
			internal = append(internal, strings.TrimSpace(line))
		}
	}
	assert.Empty(t, internal, "internal packages the examples import")
}
