package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

// withoutLister is the real seam without its search-attribute listing, so
// the bridge cannot check the routes' attributes at start (as when
// Temporal cannot list them then) and its calls meet the server's own
// refusal.
type withoutLister struct{ bridge.Temporal }

// The bridge's unit tests classify Temporal's refusal of a route's search
// attributes from messages written in the test; this runs the real dev
// server. A route whose search attribute is not registered is the
// bridge's fault: its calls are refused, the circuit opens, nothing is
// dead-lettered, and once the attribute is registered every record is
// applied once, in order.
func TestARouteWithAnUnregisteredSearchAttributeDeadLettersNothingOnTheRealServer(t *testing.T) {
	e := newEnv(t, 1)
	attr := "SagabridgeE2e" + strings.ReplaceAll(e.id, "-", "")
	at := e.produceLedger(ledger.Stream(e.id+"-", 3, 12, 1.1, 5))
	_, stop := e.runBridgeOn(e.ledgerTopic, func(t bridge.Temporal) bridge.Temporal { return withoutLister{t} }, func(c *config.Config) {
		c.Routes = c.Routes[1:] // the ledger route
		c.Routes[0].SearchAttributes = map[string]config.SearchAttribute{attr: {Type: config.SearchAttributeKeyword, Value: "x"}}
		c.Backpressure.Circuit.OpenFor = time.Second
	})
	defer stop()
	require.Eventually(t, func() bool {
		return strings.Contains(e.bridgeLogs.String(), "Temporal refuses the bridge's own access")
	},
		60*time.Second, 50*time.Millisecond, "the server's refusal was not taken for the bridge's access fault")

	out, err := temporalCLI(t, "operator", "search-attribute", "create", "--namespace", "default", "--name", attr, "--type", "Keyword")
	require.NoError(t, err, "register %s: %s", attr, out)
	e.assertLedgers(at, 2*time.Minute)
	stop()
	assert.Zero(t, endOffsets(t, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix)), "records were dead-lettered")
}
