package offsetscli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/cli"
	"github.com/sagabridge/sagabridge/internal/connect"
)

// Exit statuses.
const (
	exitOK    = cli.ExitOK
	exitFail  = cli.ExitFail
	exitUsage = cli.ExitUsage
)

const usage = `usage: bridge offsets [<command>] [flags]

Commands:
  show   (the default) every partition's committed offset, log end, lag,
         owner and, with -metrics, pause reason
  move   move the group's committed offset of a partition (or, with
         --to-time, of every partition); the group must have no members

Run 'bridge offsets <command> -h' for a command's flags.
`

// Main runs `bridge offsets` with args (the words after "offsets") and
// returns the process's exit status. The SAGABRIDGE_* variables of the
// process's environment apply to -config.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, os.Environ(), stdout, stderr)
}

// run is Main with the environment given.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	name, rest := "show", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, rest = args[0], args[1:]
	}
	c := command{name: name, environ: environ, stdout: stdout, stderr: stderr}
	switch name {
	case "show":
		return c.show(ctx, rest)
	case "move":
		return c.move(ctx, rest)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "bridge offsets: unknown command %q\n\n%s", name, usage)
	return exitUsage
}

// command is one run of a subcommand.
type command struct {
	name           string
	environ        []string
	stdout, stderr io.Writer
	*cli.Subcommand
}

// target is the group and topics a subcommand works on, from -config and
// the flags.
type target struct {
	configPath, brokers, version, group, topics string

	// set by resolve
	kafka       config.Kafka
	topicList   []string
	startOldest bool

	warn io.Writer // where warnings go (insecure_skip_verify)
}

// flags starts the subcommand's flag set with the flags every subcommand
// has.
func (c *command) flags(synopsis string) *target {
	c.Subcommand = cli.NewSubcommand("bridge offsets "+c.name, synopsis, c.stderr)
	t := &target{warn: c.stderr}
	c.Flags.StringVar(&t.configPath, "config", "", "the bridge's configuration file: kafka.* gives the brokers, group, version, isolation level, TLS and SASL, the routes the topics (SAGABRIDGE_* variables apply; flags override)")
	c.Flags.StringVar(&t.brokers, "brokers", "", "comma-separated Kafka brokers, host:port (required without -config)")
	c.Flags.StringVar(&t.version, "kafka-version", "", "Kafka protocol version to speak (default kafka.version, 3.6.0)")
	c.Flags.StringVar(&t.group, "group", "", "the consumer group (required without -config; default kafka.group)")
	c.Flags.StringVar(&t.topics, "topic", "", "comma-separated topics (required without -config; default every routed topic)")
	return t
}

// resolve loads -config (the whole bridge configuration, as the bridge
// loads it) or, without it, the kafka defaults and the environment, then
// applies the flags. Errors name the flag or field at fault.
func (t *target) resolve(environ []string, set map[string]bool) error {
	fromEnv, err := config.FromEnv(environ)
	if err != nil {
		return fmt.Errorf("the environment: %w", err)
	}
	override := func(c *config.Config) {
		if set["brokers"] {
			c.Kafka.Brokers = cli.SplitList(t.brokers)
		}
		if set["kafka-version"] {
			c.Kafka.Version = t.version
		}
		if set["group"] {
			c.Kafka.Group = t.group
		}
	}
	var routed []string
	if t.configPath != "" {
		cfg, err := config.LoadForKafkaTools(t.configPath, fromEnv, override) // Kafka only: Temporal's secrets need not be here
		if err != nil {
			return fmt.Errorf("-config: %w", err)
		}
		t.kafka = cfg.Kafka
		for _, w := range connect.Insecure(cfg.Kafka, config.Temporal{}) {
			fmt.Fprintf(t.warn, "bridge offsets: warning: %s\n", w)
		}
		for _, r := range cfg.Routes {
			if !slices.Contains(routed, r.Topic) {
				routed = append(routed, r.Topic)
			}
		}
	} else {
		conns, err := config.LoadConnections("", fromEnv, override)
		if err != nil {
			if !set["brokers"] {
				return fmt.Errorf("-brokers or -config is required: %w", err)
			}
			return err
		}
		t.kafka = conns.Kafka
	}
	if t.kafka.Group == "" {
		return errors.New("-group is required without -config")
	}
	if set["topic"] && len(cli.SplitList(t.topics)) == 0 {
		// A script's unset $TOPIC must not mean every routed topic.
		return fmt.Errorf("-topic %q names no topic (leave -topic out to mean every routed topic)", t.topics)
	}
	for _, topic := range cli.SplitList(t.topics) { // a topic given twice is one topic
		if !slices.Contains(t.topicList, topic) {
			t.topicList = append(t.topicList, topic)
		}
	}
	if len(t.topicList) == 0 {
		t.topicList = routed
	}
	if len(t.topicList) == 0 {
		return errors.New("-topic is required without -config")
	}
	t.startOldest = t.kafka.InitialOffset != "newest"
	if v, err := sarama.ParseKafkaVersion(t.kafka.Version); err == nil && t.isolation() == sarama.ReadCommitted && !v.IsAtLeast(sarama.V0_11_0_0) {
		return fmt.Errorf("-kafka-version %s: reading read_committed, as the bridge does (kafka.isolation_level), needs 0.11.0 or later", t.kafka.Version)
	}
	return nil
}

// isolation is the level the bridge reads at.
func (t *target) isolation() sarama.IsolationLevel {
	if t.kafka.IsolationLevel == config.ReadUncommitted {
		return sarama.ReadUncommitted
	}
	return sarama.ReadCommitted
}

// connect opens a client and an admin with the configuration's version,
// TLS and SASL, within kafka.connect_timeout.
func (t *target) connect(ctx context.Context) (*cluster, error) {
	cfg, err := connect.SaramaConfig(t.kafka)
	if err != nil {
		return nil, fmt.Errorf("-config: %w", err)
	}
	cfg.ClientID = t.kafka.ClientID + "-offsets"
	// Asking for a mistyped topic's metadata must not create it (brokers
	// do by default): show and move then refuse it, naming it.
	cfg.Metadata.AllowAutoTopicCreation = false
	client, err := connect.Client(ctx, t.kafka, cfg)
	if err != nil {
		return nil, err
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	return &cluster{client: client, admin: admin, group: t.kafka.Group, isolation: t.isolation()}, nil
}
