// Command bridge consumes Kafka topics and delivers every record to the
// Temporal workflow that owns it, as the routes in its YAML config say.
//
//	bridge -config bridge.yaml [-kafka-brokers host:port,...] [-temporal-address host:port] [-print-config]
//
// Every field of the file can also be set from the environment, as
// SAGABRIDGE_<PATH> (SAGABRIDGE_KAFKA_BROKERS, SAGABRIDGE_DISPATCH_DRAIN_TIMEOUT;
// docs/CONFIG.md lists them). Precedence: defaults, then the file, then the
// environment, then the flags. -print-config shows the result, secrets redacted.
//
// `bridge dlq list|show|redrive` is the operator's tool for a dead-letter
// topic: list its entries, show one in full, re-produce entries to their
// original topic (run `bridge dlq` for its usage).
//
// `bridge offsets [show|move]` shows the group's committed offset, log end,
// lag, owner and pause reason of every partition, and moves a stuck
// partition's offset while the group is stopped (internal/offsetscli; run
// `bridge offsets help` for its usage).
//
// `bridge codec-server -config bridge.yaml [-listen 127.0.0.1:8081]
// [-token-file FILE] [-allow-origin https://ui.example.com] [-max-body N]
// [-enable-encode]` serves the temporal.codec payload decryption over HTTP
// (internal/codecserver), so that an operator who holds the key can read
// encrypted sagas with `temporal workflow query --codec-endpoint
// http://127.0.0.1:8081 --codec-auth 'Bearer <token>' ...` or the Temporal
// UI. /encode answers 404 to a request with payloads unless
// -enable-encode. Serve it only where the operators are.
//
// A listener on a wildcard address (metrics.listen ":9464", "0.0.0.0:…",
// "[::]:…"; the codec server's -listen) is logged as a warning at start,
// as an error when it serves profiles (metrics.pprof) or decodes without
// a token.
//
// With OTEL_EXPORTER_OTLP_ENDPOINT set it exports a span per delivery,
// continuing the W3C traceparent of the records into Temporal.
//
// SIGINT, SIGTERM or SIGHUP stops fetching, lets in-flight calls finish
// (dispatch.drain_timeout), commits what was delivered and leaves the group.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/bridge/temporalsdk"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/cli"
	"github.com/sagabridge/sagabridge/internal/codecserver"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/dlqcli"
	"github.com/sagabridge/sagabridge/internal/offsetscli"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "dlq" {
		ctx, stop := cli.SignalContext(nil)
		code := dlqcli.Main(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if len(os.Args) > 1 && os.Args[1] == "offsets" {
		ctx, stop := cli.SignalContext(nil)
		code := offsetscli.Main(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if len(os.Args) > 1 && os.Args[1] == "codec-server" {
		os.Exit(codecServer(os.Args[2:]))
	}
	configPath := flag.String("config", "", "path to the bridge's YAML config (required)")
	brokers := flag.String("kafka-brokers", "", "comma-separated brokers; overrides kafka.brokers")
	temporalAddr := flag.String("temporal-address", "", "Temporal frontend host:port; overrides temporal.address")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	printConfig := flag.Bool("print-config", false, "print the effective configuration (file, then SAGABRIDGE_* environment, then flags; secrets redacted) and exit")
	flag.Parse()
	if flag.NArg() > 0 {
		// "bridge -config b.yaml offsets move ..." would otherwise start a
		// group member, the one thing offsets move needs stopped.
		fmt.Fprintf(os.Stderr, "bridge: unexpected argument %q: the tools take their own flags after their name (bridge offsets ..., bridge dlq ..., bridge codec-server ...)\n", flag.Arg(0))
		os.Exit(2)
	}

	log, err := cli.NewLogger(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "bridge: -config is required")
		os.Exit(2)
	}
	fromEnv, err := config.FromEnv(os.Environ())
	if err != nil {
		cli.Fatal(log, "invalid configuration in the environment", err)
	}
	cfg, err := config.Load(*configPath, fromEnv, func(c *config.Config) {
		if *brokers != "" {
			c.Kafka.Brokers = cli.SplitList(*brokers)
		}
		if *temporalAddr != "" {
			c.Temporal.Address = *temporalAddr
		}
	})
	if err != nil {
		cli.Fatal(log, "invalid configuration", err)
	}
	if *printConfig {
		out, err := cfg.Redacted().YAML()
		if err != nil {
			cli.Fatal(log, "print the configuration", err)
		}
		os.Stdout.Write(out)
		return
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.Memory.SoftLimit > 0 {
		debug.SetMemoryLimit(cfg.Memory.SoftLimit)
	}
	if cfg.Log.RedactKeys { // every line, the Temporal client's too (bridge.New would wrap only its own)
		log = slog.New(bridge.RedactKeys(log.Handler()))
	}
	ctx, stop := cli.SignalContext(log)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		if cli.StoppedWhileStarting(ctx, err) {
			log.Info("stopped before the bridge was up", "err", err)
			return
		}
		cli.Fatal(log, "bridge failed", err)
	}
}

func run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	opts, err := connect.ClientOptions(cfg.Temporal, sdklog.NewStructuredLogger(log.With("component", "temporal-client")))
	if err != nil {
		return err
	}
	tp, shutdownTracing, err := cli.TracerProvider(ctx, "sagabridge-bridge")
	if err != nil {
		return err
	}
	defer shutdownTracing(context.WithoutCancel(ctx))
	tracing, err := connect.TracingInterceptor(tp)
	if err != nil {
		return err
	}
	opts.Interceptors = append(opts.Interceptors, tracing)
	if cfg.Temporal.TLS.InsecureSkipVerify {
		log.Warn(connect.InsecureTemporal)
	}
	// Lazily: a bridge that starts while Temporal is down (an autoscaler
	// adding a member during an outage) joins its group with every
	// partition paused and resumes when Temporal answers, instead of exiting.
	tc, err := client.NewLazyClient(opts)
	if err != nil {
		return fmt.Errorf("temporal client for %s: %w", cfg.Temporal.Address, err)
	}
	defer tc.Close()
	pc, err := connect.DLQProducerConfig(cfg.Kafka, cfg.DLQ.MaxMessageBytes)
	if err != nil {
		return err
	}
	producer, err := connect.SyncProducer(ctx, cfg.Kafka, pc)
	if err != nil {
		return fmt.Errorf("start DLQ producer: %w", err)
	}
	defer producer.Close()
	alone, err := connect.SyncProducer(ctx, cfg.Kafka, dlq.AloneConfig(pc)) // a dead letter refused in a batch goes again alone
	if err != nil {
		return fmt.Errorf("start DLQ producer: %w", err)
	}
	defer alone.Close()
	b, err := bridge.New(cfg, bridge.Deps{
		Temporal:       temporalsdk.Client{Client: tc, Namespace: cfg.Temporal.Namespace, DataConverter: opts.DataConverter},
		DeadLetters:    dlq.ProducerWriter{Producer: producer, Alone: alone, Suffix: cfg.DLQ.Suffix},
		Logger:         log,
		TracerProvider: tp,
	})
	if err != nil {
		return err
	}
	if cfg.Metrics.Listen != "" {
		exp := cli.Exposure{Field: "metrics.listen", What: "/metrics, /healthz and /readyz"}
		if cfg.Metrics.Pprof {
			exp.What = "/metrics, /healthz, /readyz and /debug/pprof/"
			exp.Sensitive = "with metrics.pprof Go's profiles (/debug/pprof/: the command line, stacks, heap, CPU profiles and traces on request)"
		}
		stopServing, err := cli.Serve(cfg.Metrics.Listen, b.Handler(), log, exp)
		if err != nil {
			return err
		}
		defer stopServing()
	}
	return b.Run(ctx)
}

// codecServer runs `bridge codec-server` and returns the exit status.
func codecServer(args []string) int {
	fs := flag.NewFlagSet("bridge codec-server", flag.ContinueOnError)
	configPath := fs.String("config", "", "the bridge's YAML config, for temporal.codec and temporal.namespace (required)")
	listen := fs.String("listen", "127.0.0.1:8081", "host:port to serve on")
	tokenFile := fs.String("token-file", "", "file holding the bearer token every request must carry (Authorization: Bearer <token>); read again when it changes. Default: no authentication")
	var origins originList
	fs.Var(&origins, "allow-origin", "origin of a Temporal UI whose browser may call the server (CORS), such as https://temporal.example.com; repeat or comma-separate")
	maxBody := fs.Int64("max-body", codecserver.DefaultMaxBodyBytes, "largest request body in bytes; larger ones get 413")
	enableEncode := fs.Bool("enable-encode", false, "also encode payloads on /encode (whoever reaches it can make ciphertexts with the key); default 404 for any request with payloads")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, _ := cli.NewLogger("info")
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "bridge codec-server: -config is required")
		return 2
	}
	fromEnv, err := config.FromEnv(os.Environ())
	if err != nil {
		log.Error("invalid environment", "err", err)
		return 1
	}
	temporal, err := config.LoadCodec(*configPath, fromEnv)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		return 1
	}
	codec, err := connect.PayloadCodec(temporal)
	if err != nil || codec == nil {
		log.Error("temporal.codec: no key configured; nothing to serve", "err", err)
		return 1
	}
	if *maxBody <= 0 { // 0 would mean the default to codecserver.New
		log.Error("invalid flag", "err", fmt.Errorf("-max-body: must be a positive number of bytes, not %d", *maxBody))
		return 2
	}
	h, err := codecserver.New(codecserver.Options{
		Codec: codec, Namespace: temporal.Namespace, EnableEncode: *enableEncode,
		MaxBodyBytes: *maxBody, AllowedOrigins: origins, TokenFile: *tokenFile, Logger: log,
	})
	if err != nil {
		log.Error("invalid flag", "err", codecFlagError(err))
		return 2
	}
	exp := cli.Exposure{Field: "-listen", What: "decoding of namespace " + temporal.Namespace + "'s payloads (/decode)"}
	if *enableEncode {
		exp.What += " and encoding with its key (/encode)"
	}
	if *tokenFile == "" {
		exp.Sensitive = "without authentication (no -token-file)"
	}
	ctx, stop := cli.SignalContext(log)
	defer stop()
	stopServing, err := cli.Serve(*listen, h, log, exp)
	if err != nil {
		log.Error("codec server", "err", err)
		return 1
	}
	<-ctx.Done()
	stopServing()
	return 0
}

// codecFlagError names the flag of an option codecserver.New refused.
func codecFlagError(err error) error {
	var oe *codecserver.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	flagName, ok := map[string]string{"AllowedOrigins": "-allow-origin", "TokenFile": "-token-file", "MaxBodyBytes": "-max-body"}[oe.Option]
	if !ok {
		return err
	}
	return fmt.Errorf("%s: %w", flagName, oe.Err)
}

// originList is the repeatable, comma-separated -allow-origin flag.
type originList []string

// String shows the origins as the flag takes them.
func (o *originList) String() string { return strings.Join(*o, ",") }

// Set adds the comma-separated origins of one -allow-origin.
func (o *originList) Set(v string) error {
	*o = append(*o, cli.SplitList(v)...)
	return nil
}
