// Package dlqcli implements `bridge dlq`, the operator's tool for a DLQ
// topic: list its entries, show one record in full, and redrive entries to
// their original topic.
//
//	bridge dlq list    -brokers h:p (-topic T | -source S [-suffix .dlq]) [filters] [-json]
//	bridge dlq show    -brokers h:p (-topic T | -source S) -partition P -offset O
//	bridge dlq redrive -brokers h:p (-topic T | -source S) (-partition P -offset O | filters | -all) [-max-redrives 3] [-dry-run]
//
// Exit status: 0 on success, 1 when something failed (Kafka, a record that
// is not a valid DLQ record, an entry refused by redrive), 2 for a missing
// or bad flag.
//
// It reads its connection settings through config and internal/connect and
// must not import the bridge engine.
package dlqcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/cli"
	"github.com/sagabridge/sagabridge/internal/connect"
)

// Exit statuses.
const (
	exitOK    = cli.ExitOK
	exitFail  = cli.ExitFail
	exitUsage = cli.ExitUsage
)

const usage = `usage: bridge dlq <command> [flags]

Commands:
  list     list the entries of a DLQ topic, optionally filtered
  show     print one DLQ record in full: every header and the payload
  redrive  re-produce DLQ entries to their original topic

Run 'bridge dlq <command> -h' for a command's flags.
`

// Main runs `bridge dlq` with args (the words after "dlq") and returns the
// process's exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr, time.Now())
}

// run is Main at the given time (which relative -since and -until count
// back from).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, now time.Time) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "bridge dlq: a command is required\n\n"+usage)
		return exitUsage
	}
	c := command{name: args[0], stdout: stdout, stderr: stderr, now: now}
	switch args[0] {
	case "list":
		return c.list(ctx, args[1:])
	case "show":
		return c.show(ctx, args[1:])
	case "redrive":
		return c.redrive(ctx, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "bridge dlq: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// command is one run of a subcommand.
type command struct {
	name           string
	stdout, stderr io.Writer
	now            time.Time
	*cli.Subcommand
}

// flags starts the subcommand's flag set with the flags every subcommand
// has.
func (c *command) flags(synopsis string) *target {
	c.Subcommand = cli.NewSubcommand("bridge dlq "+c.name, synopsis, c.stderr)
	t := &target{warn: c.stderr}
	c.Flags.StringVar(&t.configPath, "config", "", "a bridge configuration file: its kafka section gives the brokers, version, TLS and SASL, its dlq.suffix the DLQ of -source (SAGABRIDGE_KAFKA_* variables apply; -brokers, -kafka-version and -suffix override it)")
	c.Flags.StringVar(&t.brokers, "brokers", "", "comma-separated Kafka brokers, host:port (required without -config)")
	c.Flags.StringVar(&t.version, "kafka-version", "3.6.0", "Kafka protocol version to speak")
	c.Flags.StringVar(&t.topic, "topic", "", "the DLQ topic (or give -source)")
	c.Flags.StringVar(&t.source, "source", "", "the original topic; the DLQ topic is its name plus -suffix")
	c.Flags.StringVar(&t.suffix, "suffix", dlq.DefaultSuffix, "DLQ topic suffix, with -source (default: -config's dlq.suffix, else .dlq)")
	return t
}

// target is where a subcommand reads: the brokers and the DLQ topic.
type target struct {
	configPath            string
	brokers, version      string
	topic, source, suffix string

	// set by resolve
	brokerList []string
	kafka      sarama.KafkaVersion
	security   config.Kafka // TLS and SASL, from -config
	dlqTopic   string

	warn io.Writer // where warnings go (insecure_skip_verify)
}

// resolve checks the flags; the error names the flag at fault.
func (t *target) resolve(set map[string]bool) error {
	if t.configPath != "" {
		if err := t.load(set); err != nil {
			return err
		}
	}
	t.brokerList = cli.SplitList(t.brokers)
	if len(t.brokerList) == 0 {
		return errors.New("-brokers is required")
	}
	v, err := sarama.ParseKafkaVersion(t.version)
	if err != nil {
		return fmt.Errorf("-kafka-version %q: %v", t.version, err)
	}
	t.kafka = v
	switch {
	case t.topic != "" && t.source != "":
		return errors.New("give -topic or -source, not both")
	case t.topic == "" && t.source == "":
		return errors.New("-topic (the DLQ topic) or -source (its original topic) is required")
	case set["suffix"] && t.source == "":
		return errors.New("-suffix applies with -source only")
	case t.source != "" && strings.TrimSpace(t.suffix) == "":
		return errors.New("-suffix is empty: the DLQ topic would be the source topic itself")
	case t.topic != "":
		t.dlqTopic = t.topic
	default:
		t.dlqTopic = dlq.TopicFor(t.source, t.suffix)
	}
	return nil
}

// load takes the brokers, version, TLS and SASL from the bridge
// configuration at -config (and the environment); flags given override it.
func (t *target) load(set map[string]bool) error {
	fromEnv, err := config.FromEnv(os.Environ())
	if err != nil {
		return fmt.Errorf("-config: the environment: %w", err)
	}
	conns, err := config.LoadForKafkaTools(t.configPath, fromEnv, func(c *config.Config) { // Kafka only: Temporal's secrets need not be here
		if set["brokers"] {
			c.Kafka.Brokers = cli.SplitList(t.brokers)
		}
		if set["kafka-version"] {
			c.Kafka.Version = t.version
		}
	})
	if err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	t.security = conns.Kafka
	if !set["suffix"] && conns.DLQ.Suffix != "" {
		t.suffix = conns.DLQ.Suffix // where the bridge of that file writes its dead letters
	}
	for _, w := range connect.Insecure(conns.Kafka, config.Temporal{}) {
		fmt.Fprintf(t.warn, "bridge dlq: warning: %s\n", w)
	}
	t.brokers, t.version = strings.Join(conns.Kafka.Brokers, ","), conns.Kafka.Version
	return nil
}

// connect opens a client configured by dlq.ConsumerConfig and -config's
// TLS and SASL, adjusted by tune.
func (t *target) connect(ctx context.Context, tune func(*sarama.Config)) (sarama.Client, error) {
	cfg := dlq.ConsumerConfig(t.kafka)
	if err := connect.Secure(cfg, t.security); err != nil {
		return nil, fmt.Errorf("-config: %w", err)
	}
	if tune != nil {
		tune(cfg)
	}
	k := t.security // names TLS, the SASL mechanism and user in errors
	k.Brokers = t.brokerList
	return connect.Client(ctx, k, cfg)
}

// classes are the values -class accepts.
func classes() []dlq.Class {
	return []dlq.Class{dlq.ClassDecode, dlq.ClassRoute, dlq.ClassRejected, dlq.ClassWorkflowClosed, dlq.ClassProcess, dlq.ClassActivity}
}

// filterFlags registers -class, -workflow-id, -since and -until on c's flag
// set, filling f.
func (c *command) filterFlags(f *dlq.Filter) {
	known := classes()
	names := make([]string, len(known))
	for i, cl := range known {
		names[i] = string(cl)
	}
	c.Flags.Func("class", "only entries of this failure `class`: "+strings.Join(names, ", "), func(s string) error {
		for _, cl := range known {
			if string(cl) == s {
				f.Class = cl
				return nil
			}
		}
		return fmt.Errorf("not one of %s", strings.Join(names, ", "))
	})
	c.Flags.StringVar(&f.WorkflowID, "workflow-id", "", "only entries for this workflow ID")
	c.Flags.Func("since", "only entries that failed at or after this `time`: RFC 3339 (2026-11-25T10:00:00Z) or a duration ago (1h)", func(s string) error {
		t, err := parseWhen(s, c.now)
		f.Since = t
		return err
	})
	c.Flags.Func("until", "only entries that failed before this `time`: RFC 3339 or a duration ago", func(s string) error {
		t, err := parseWhen(s, c.now)
		f.Until = t
		return err
	})
}

// parseWhen reads an RFC 3339 time, or a positive duration counted back
// from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, errors.New("neither an RFC 3339 time (2026-11-25T10:00:00Z) nor a duration (1h30m)")
	}
	if d <= 0 {
		return time.Time{}, errors.New("a duration ago must be positive")
	}
	return now.Add(-d), nil
}

// checkWindow rejects -since at or after -until.
func checkWindow(f dlq.Filter) error {
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return fmt.Errorf("-since (%s) must be before -until (%s)", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	return nil
}

// position registers -partition and -offset (both -1 until given).
func (c *command) position(help string) (partition *int, offset *int64) {
	partition = c.Flags.Int("partition", -1, "DLQ partition of the record"+help)
	offset = c.Flags.Int64("offset", -1, "DLQ offset of the record"+help)
	return partition, offset
}

// checkPosition validates -partition and -offset: both or neither, and
// both when required.
func checkPosition(set map[string]bool, partition int, offset int64, required bool) error {
	switch {
	case required && !set["partition"] && !set["offset"]:
		return errors.New("-partition and -offset are required")
	case set["partition"] != set["offset"]:
		return errors.New("-partition and -offset go together: give both")
	case set["partition"] && (partition < 0 || partition > 1<<31-1):
		return fmt.Errorf("-partition %d: must be a partition number, 0 or more", partition)
	case set["offset"] && offset < 0:
		return fmt.Errorf("-offset %d: must be an offset, 0 or more", offset)
	}
	return nil
}
