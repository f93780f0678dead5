package cli

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A program stopping while its collector takes connections and never
// answers exits within TracingShutdownTimeout, dropping what it could not
// export. (It waited 50 s for 3,000 spans, past a pod's grace period.)
func TestTracingShutdownIsBoundedWhenTheCollectorDoesNotAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = ln.Close() }()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // accepted, never answered
		}
	}()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	ctx, cancel := context.WithCancel(context.Background())
	tp, shutdown, err := TracerProvider(ctx, "test")
	require.NoError(t, err)
	for range 3000 { // a busy bridge: a span per delivery
		_, span := tp.Tracer("x").Start(ctx, "delivery")
		span.End()
	}
	cancel() // SIGTERM
	start := time.Now()
	_ = shutdown(context.WithoutCancel(ctx)) // as cmd/bridge and sagaworker call it
	assert.Less(t, time.Since(start), TracingShutdownTimeout+2*time.Second)
}
