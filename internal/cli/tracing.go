package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerProvider exports spans over OTLP/gRPC when OpenTelemetry's standard
// environment names a collector (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; the exporter also reads the other
// OTEL_EXPORTER_OTLP_* variables, such as _INSECURE and _HEADERS), and
// traces nothing otherwise. OTEL_SERVICE_NAME overrides service. shutdown
// flushes what is buffered, for at most TracingShutdownTimeout.
func TracerProvider(ctx context.Context, service string) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	if name := os.Getenv("OTEL_SERVICE_NAME"); name != "" {
		service = name
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	shutdown = func(ctx context.Context) error {
		// A collector that does not answer must not hold the exit: the
		// batch exporter flushes its queue a batch at a time, each with
		// its own 10 s timeout (50 s measured for 3,000 spans), past a
		// pod's grace period.
		ctx, cancel := context.WithTimeout(ctx, TracingShutdownTimeout)
		defer cancel()
		return sdk.Shutdown(ctx)
	}
	return sdk, shutdown, nil
}

// TracingShutdownTimeout bounds how long a stopping program waits for its
// spans to reach the collector; what is not exported by then is dropped.
const TracingShutdownTimeout = 3 * time.Second
