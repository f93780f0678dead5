package devstack

import (
	"os"
	"slices"
	"strings"
)

// testControls are the SAGABRIDGE_* variables that steer tests and tools
// rather than configure a bridge; Hermetic keeps them.
var testControls = []string{"SAGABRIDGE_SEED", "SAGABRIDGE_TEMPORAL", "SAGABRIDGE_UPDATE_DOCS", "SAGABRIDGE_RECORD_HISTORIES"}

// Hermetic removes from this process's environment what would reach the
// processes a test starts and change what they do, and returns the names
// it removed: the caller's SAGABRIDGE_* configuration (every bridge
// applies it over its file, so a shell with SAGABRIDGE_KAFKA_BROKERS set
// sent the tests' bridges to that cluster) and the Temporal CLI's
// TEMPORAL_* settings (TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, ...), which
// the tests' CLI calls would otherwise apply. Call it first in TestMain.
func Hermetic() []string {
	var removed []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(name, "SAGABRIDGE_") && !slices.Contains(testControls, name)) || strings.HasPrefix(name, "TEMPORAL_") {
			_ = os.Unsetenv(name)
			removed = append(removed, name)
		}
	}
	return removed
}
