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
package dlqcli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/cli"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
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
	fs             *flag.FlagSet
}

// flags starts the subcommand's flag set with the flags every subcommand
// has.
func (c *command) flags(synopsis string) *target {
	c.fs = flag.NewFlagSet("bridge dlq "+c.name, flag.ContinueOnError)
	c.fs.SetOutput(c.stderr)
	c.fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: bridge dlq %s %s\n\nFlags:\n", c.name, synopsis)
		c.fs.PrintDefaults()
	}
	t := &target{}
	c.fs.StringVar(&t.brokers, "brokers", "", "comma-separated Kafka brokers, host:port (required)")
	c.fs.StringVar(&t.version, "kafka-version", "3.6.0", "Kafka protocol version to speak")
	c.fs.StringVar(&t.topic, "topic", "", "the DLQ topic (or give -source)")
	c.fs.StringVar(&t.source, "source", "", "the original topic; the DLQ topic is its name plus -suffix")
	c.fs.StringVar(&t.suffix, "suffix", dlq.DefaultSuffix, "DLQ topic suffix, with -source")
	return t
}

// parse parses args. ok is false when the command must return code:
// -h (0), or a bad flag or argument (2, usage printed).
func (c *command) parse(args []string) (code int, ok bool) {
	err := c.fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	case err != nil: // the flag package printed the error and the usage
		return exitUsage, false
	case c.fs.NArg() > 0:
		return c.usageError("unexpected argument %q", c.fs.Arg(0)), false
	}
	return 0, true
}

// usageError prints a flag error and the usage and returns exitUsage.
func (c *command) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "bridge dlq %s: %s\n", c.name, fmt.Sprintf(format, args...))
	c.fs.Usage()
	return exitUsage
}

// fail prints a runtime error and returns exitFail.
func (c *command) fail(err error) int {
	fmt.Fprintf(c.stderr, "bridge dlq %s: %v\n", c.name, err)
	return exitFail
}

// set returns the names of the flags given on the command line.
func (c *command) set() map[string]bool {
	m := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}

// target is where a subcommand reads: the brokers and the DLQ topic.
type target struct {
	brokers, version      string
	topic, source, suffix string

	// set by resolve
	brokerList []string
	kafka      sarama.KafkaVersion
	dlqTopic   string
}

// resolve checks the flags; the error names the flag at fault.
func (t *target) resolve(set map[string]bool) error {
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
	case t.topic != "":
		t.dlqTopic = t.topic
	default:
		t.dlqTopic = dlq.TopicFor(t.source, t.suffix)
	}
	return nil
}

// connect opens a client configured by dlq.ConsumerConfig, adjusted by tune.
func (t *target) connect(tune func(*sarama.Config)) (sarama.Client, error) {
	cfg := dlq.ConsumerConfig(t.kafka)
	if tune != nil {
		tune(cfg)
	}
	client, err := sarama.NewClient(t.brokerList, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to Kafka at %s: %w", strings.Join(t.brokerList, ","), err)
	}
	return client, nil
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
	c.fs.Func("class", "only entries of this failure `class`: "+strings.Join(names, ", "), func(s string) error {
		for _, cl := range known {
			if string(cl) == s {
				f.Class = cl
				return nil
			}
		}
		return fmt.Errorf("not one of %s", strings.Join(names, ", "))
	})
	c.fs.StringVar(&f.WorkflowID, "workflow-id", "", "only entries for this workflow ID")
	c.fs.Func("since", "only entries that failed at or after this `time`: RFC 3339 (2026-11-25T10:00:00Z) or a duration ago (1h)", func(s string) error {
		t, err := parseWhen(s, c.now)
		f.Since = t
		return err
	})
	c.fs.Func("until", "only entries that failed before this `time`: RFC 3339 or a duration ago", func(s string) error {
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

// list is `bridge dlq list`.
func (c *command) list(ctx context.Context, args []string) int {
	t := c.flags("-brokers h:p[,h:p] (-topic T | -source S [-suffix .dlq]) [-class C] [-workflow-id ID] [-since T] [-until T] [-json]")
	var f dlq.Filter
	c.filterFlags(&f)
	asJSON := c.fs.Bool("json", false, "print one JSON object per entry instead of a table")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if err := t.resolve(c.set()); err != nil {
		return c.usageError("%v", err)
	}
	if err := checkWindow(f); err != nil {
		return c.usageError("%v", err)
	}
	client, err := t.connect(nil)
	if err != nil {
		return c.fail(err)
	}
	defer func() { _ = client.Close() }()
	entries, err := dlq.Read(ctx, client, t.dlqTopic, f)
	bad := dlq.BadRecords(err)
	if err != nil && len(bad) == 0 {
		return c.fail(fmt.Errorf("read %s: %w", t.dlqTopic, err))
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetEscapeHTML(false)
		for _, e := range entries {
			if err := enc.Encode(toJSON(t.dlqTopic, e)); err != nil {
				return c.fail(err)
			}
		}
	} else if len(entries) > 0 {
		writeTable(c.stdout, entries)
	}
	fmt.Fprintf(c.stderr, "%d matching entries in %s\n", len(entries), t.dlqTopic)
	for _, b := range bad {
		fmt.Fprintf(c.stderr, "bridge dlq list: %v\n", b)
	}
	if len(bad) > 0 {
		return exitFail
	}
	return exitOK
}

// errWidth is how much of an error message the table shows.
const errWidth = 80

// writeTable prints entries as an aligned table.
func writeTable(w io.Writer, entries []dlq.Entry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ\tORIGIN\tCLASS\tFAILED-AT\tATTEMPTS\tREDRIVES\tWORKFLOW-ID\tRUN-ID\tACTIVITY\tERROR")
	for _, e := range entries {
		f := e.Failure
		fmt.Fprintf(tw, "%d@%d\t%s/%d@%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n",
			e.Partition, e.Offset, f.Topic, f.Partition, f.Offset, orDash(string(f.Class)),
			f.FailedAt.UTC().Format("2006-01-02T15:04:05.000Z"), f.Attempts, e.Redrives,
			orDash(f.WorkflowID), orDash(f.RunID), orDash(f.ActivityType), orDash(truncate(oneLine(f.Err), errWidth)))
	}
	_ = tw.Flush()
}

// orDash shows an empty table cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine turns line breaks and tabs into spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}

// truncate cuts s to n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// jsonEntry is one line of `list -json`. Byte strings (key, value, header
// values) are text when they are valid UTF-8, else base64 (std encoding,
// padded); the *_encoding field says which: "utf8", "base64", or "null" for
// a null key or value (then the field is null).
type jsonEntry struct {
	DLQTopic      string       `json:"dlq_topic"`
	DLQPartition  int32        `json:"dlq_partition"`
	DLQOffset     int64        `json:"dlq_offset"`
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Class         string       `json:"class"`
	Error         string       `json:"error"`
	FailedAt      time.Time    `json:"failed_at"`
	Attempts      int          `json:"attempts"`
	Redrives      int          `json:"redrives"`
	WorkflowID    string       `json:"workflow_id"`
	RunID         string       `json:"run_id"`
	Activity      string       `json:"activity"`
	Key           *string      `json:"key"`
	KeyEncoding   string       `json:"key_encoding"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding"`
	Headers       []jsonHeader `json:"headers"`
}

// jsonHeader is one original (non-DLQ) header in `list -json`.
type jsonHeader struct {
	Key           string  `json:"key"`
	Value         *string `json:"value"`
	ValueEncoding string  `json:"value_encoding"`
}

// encodeBytes renders b for JSON: see jsonEntry.
func encodeBytes(b []byte) (*string, string) {
	switch {
	case b == nil:
		return nil, "null"
	case utf8.Valid(b):
		s := string(b)
		return &s, "utf8"
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s, "base64"
}

// toJSON is e, read from topic, as a line of `list -json`.
func toJSON(topic string, e dlq.Entry) jsonEntry {
	f := e.Failure
	j := jsonEntry{
		DLQTopic: topic, DLQPartition: e.Partition, DLQOffset: e.Offset,
		Topic: f.Topic, Partition: f.Partition, Offset: f.Offset,
		Class: string(f.Class), Error: f.Err, FailedAt: f.FailedAt.UTC(), Attempts: f.Attempts, Redrives: e.Redrives,
		WorkflowID: f.WorkflowID, RunID: f.RunID, Activity: f.ActivityType,
		Headers: make([]jsonHeader, 0, len(f.Headers)),
	}
	j.Key, j.KeyEncoding = encodeBytes(f.Key)
	j.Value, j.ValueEncoding = encodeBytes(f.Value)
	for _, h := range f.Headers {
		jh := jsonHeader{Key: string(h.Key)}
		jh.Value, jh.ValueEncoding = encodeBytes(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	return j
}

// position registers -partition and -offset (both -1 until given).
func (c *command) position(help string) (partition *int, offset *int64) {
	partition = c.fs.Int("partition", -1, "DLQ partition of the record"+help)
	offset = c.fs.Int64("offset", -1, "DLQ offset of the record"+help)
	return partition, offset
}

// show is `bridge dlq show`.
func (c *command) show(ctx context.Context, args []string) int {
	t := c.flags("-brokers h:p[,h:p] (-topic T | -source S [-suffix .dlq]) -partition P -offset O")
	partition, offset := c.position(" (required)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	set := c.set()
	if err := t.resolve(set); err != nil {
		return c.usageError("%v", err)
	}
	if err := checkPosition(set, *partition, *offset, true); err != nil {
		return c.usageError("%v", err)
	}
	client, err := t.connect(nil)
	if err != nil {
		return c.fail(err)
	}
	defer func() { _ = client.Close() }()
	msg, err := dlq.ReadRecord(ctx, client, t.dlqTopic, int32(*partition), *offset)
	if err != nil {
		return c.fail(err)
	}
	writeRecord(c.stdout, msg)
	if _, err := dlq.EntryOf(msg); err != nil {
		return c.fail(err)
	}
	return exitOK
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

// writeRecord prints every header of msg and its key and payload.
func writeRecord(w io.Writer, msg *sarama.ConsumerMessage) {
	fmt.Fprintf(w, "Record:     %s %d@%d\n", msg.Topic, msg.Partition, msg.Offset)
	if !msg.Timestamp.IsZero() {
		fmt.Fprintf(w, "Timestamp:  %s\n", msg.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	var orig, meta []*sarama.RecordHeader
	for _, h := range msg.Headers {
		if h == nil {
			continue
		}
		if strings.HasPrefix(string(h.Key), dlq.HeaderPrefix) {
			meta = append(meta, h)
		} else {
			orig = append(orig, h)
		}
	}
	for _, group := range []struct {
		title string
		hs    []*sarama.RecordHeader
	}{{"Original headers", orig}, {"DLQ headers", meta}} {
		fmt.Fprintf(w, "%s (%d):\n", group.title, len(group.hs))
		for _, h := range group.hs {
			fmt.Fprintf(w, "  %s: %s\n", h.Key, inline(h.Value))
		}
	}
	fmt.Fprintf(w, "Key:        %s\n", inline(msg.Key))
	kind, body := payload(msg.Value)
	fmt.Fprintf(w, "Payload (%s, %d bytes):\n%s", kind, len(msg.Value), body)
	if !strings.HasSuffix(body, "\n") {
		fmt.Fprintln(w)
	}
}

// printable reports whether b is UTF-8 text without control characters
// other than line breaks and tabs.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

// inline renders a key or header value on one line: text as is (quoted
// when it has line breaks or surrounding spaces), else base64.
func inline(b []byte) string {
	switch {
	case b == nil:
		return "(null)"
	case len(b) == 0:
		return `""`
	case printable(b):
		s := string(b)
		if strings.ContainsAny(s, "\n\r\t") || strings.TrimSpace(s) != s {
			return strconv.Quote(s)
		}
		return s
	}
	return "(base64) " + base64.StdEncoding.EncodeToString(b)
}

// payload renders a record's value: JSON pretty-printed, text as is,
// anything else as a hex dump.
func payload(b []byte) (kind, body string) {
	switch {
	case b == nil:
		return "null", "(null)"
	case len(b) == 0:
		return "empty", ""
	case json.Valid(b):
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, "", "  "); err == nil {
			return "json", buf.String()
		}
	}
	if printable(b) {
		return "text", string(b)
	}
	return "binary, hex", hex.Dump(b)
}

// redrive is `bridge dlq redrive`.
func (c *command) redrive(ctx context.Context, args []string) int {
	t := c.flags("-brokers h:p[,h:p] (-topic T | -source S [-suffix .dlq]) (-partition P -offset O | [-class C] [-workflow-id ID] [-since T] [-until T] | -all) [-max-redrives 3] [-dry-run]")
	partition, offset := c.position(" to redrive")
	var f dlq.Filter
	c.filterFlags(&f)
	all := c.fs.Bool("all", false, "redrive every entry of the DLQ (required when no record or filter is selected)")
	maxRedrives := c.fs.Int("max-redrives", 3, "refuse entries already redriven this many times")
	dryRun := c.fs.Bool("dry-run", false, "print what would be produced, produce nothing")
	if code, ok := c.parse(args); !ok {
		return code
	}
	set := c.set()
	if err := t.resolve(set); err != nil {
		return c.usageError("%v", err)
	}
	if err := checkPosition(set, *partition, *offset, false); err != nil {
		return c.usageError("%v", err)
	}
	if err := checkWindow(f); err != nil {
		return c.usageError("%v", err)
	}
	single := set["partition"]
	switch {
	case *maxRedrives < 1:
		return c.usageError("-max-redrives %d: must be 1 or more", *maxRedrives)
	case single && !f.IsZero():
		return c.usageError("-partition/-offset select one record: they cannot be combined with -class, -workflow-id, -since or -until")
	case *all && (single || !f.IsZero()):
		return c.usageError("-all redrives every entry: it cannot be combined with -partition/-offset or a filter")
	case !*all && !single && f.IsZero():
		return c.usageError("no entries selected: give -partition and -offset, a filter (-class, -workflow-id, -since, -until), or -all to redrive every entry of %s", t.dlqTopic)
	}

	client, err := t.connect(func(cfg *sarama.Config) {
		cfg.Producer.Idempotent = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Return.Successes = true
		cfg.Producer.Retry.Max = 10
		cfg.Net.MaxOpenRequests = 1
	})
	if err != nil {
		return c.fail(err)
	}
	defer func() { _ = client.Close() }()

	var entries []dlq.Entry
	var bad []*dlq.BadRecord
	if single {
		msg, err := dlq.ReadRecord(ctx, client, t.dlqTopic, int32(*partition), *offset)
		if err != nil {
			return c.fail(err)
		}
		e, err := dlq.EntryOf(msg)
		if err != nil {
			return c.fail(err)
		}
		entries = []dlq.Entry{e}
	} else {
		entries, err = dlq.Read(ctx, client, t.dlqTopic, f)
		bad = dlq.BadRecords(err)
		if err != nil && len(bad) == 0 {
			return c.fail(fmt.Errorf("read %s: %w", t.dlqTopic, err))
		}
	}

	var producer sarama.SyncProducer // started at the first record to produce
	defer func() {
		if producer != nil {
			_ = producer.Close()
		}
	}()
	var redriven, refused int
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return c.fail(err)
		}
		from := fmt.Sprintf("%d@%d", e.Partition, e.Offset)
		msg, err := dlq.RedriveMessage(e, *maxRedrives)
		var limit *dlq.LimitError
		if errors.As(err, &limit) {
			refused++
			fmt.Fprintf(c.stdout, "refused        %-10s already redriven %d times, the maximum is %d (-max-redrives); original %s/%d@%d\n",
				from, limit.Redrives, limit.Max, e.Failure.Topic, e.Failure.Partition, e.Failure.Offset)
			continue
		}
		if err != nil {
			return c.fail(err)
		}
		what := fmt.Sprintf("key=%s %s=%d", inline(e.Failure.Key), dlq.HeaderRedriveCount, e.Redrives+1)
		if *dryRun {
			redriven++
			fmt.Fprintf(c.stdout, "would redrive  %-10s -> %s  %s\n", from, msg.Topic, what)
			continue
		}
		if producer == nil {
			if producer, err = sarama.NewSyncProducerFromClient(client); err != nil {
				return c.fail(fmt.Errorf("start the producer: %w", err))
			}
		}
		p, o, err := producer.SendMessage(msg)
		if err != nil {
			fmt.Fprintf(c.stdout, "failed         %-10s -> %s: %v\n", from, msg.Topic, err)
			return c.fail(fmt.Errorf("redrive DLQ record %s to %s: %w (%d redriven before it)", from, msg.Topic, err, redriven))
		}
		redriven++
		fmt.Fprintf(c.stdout, "redriven       %-10s -> %s/%d@%d  %s\n", from, msg.Topic, p, o, what)
	}
	if *dryRun {
		fmt.Fprintf(c.stdout, "dry run: %d would be redriven, %d refused; nothing was produced\n", redriven, refused)
	} else {
		fmt.Fprintf(c.stdout, "%d redriven, %d refused\n", redriven, refused)
	}
	for _, b := range bad {
		fmt.Fprintf(c.stderr, "bridge dlq redrive: %v\n", b)
	}
	if refused > 0 {
		fmt.Fprintf(c.stderr, "bridge dlq redrive: %d entries refused: redriven -max-redrives (%d) times already\n", refused, *maxRedrives)
	}
	if refused > 0 || len(bad) > 0 {
		return exitFail
	}
	return exitOK
}
