// Package e2e holds the end-to-end tests: they start the real embedded
// stack (kfake over TCP and the Temporal CLI dev server from bin/) and run
// the bridge, the worker and the Temporal CLI against it. There are no mocks
// of Kafka or Temporal here.
//
// No other package may import it.
package e2e
