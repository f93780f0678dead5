package dlqcli

import (
	"context"
	"encoding/base64"
	"encoding/json"
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
	"github.com/sagabridge/sagabridge/internal/topicid"
)

// list is `bridge dlq list`.
func (c *command) list(ctx context.Context, args []string) int {
	t := c.flags("-brokers h:p[,h:p] (-topic T | -source S [-suffix .dlq]) [-class C] [-workflow-id ID] [-since T] [-until T] [-json]")
	var f dlq.Filter
	c.filterFlags(&f)
	asJSON := c.Flags.Bool("json", false, "print one JSON object per entry instead of a table")
	if code, ok := c.Parse(args); !ok {
		return code
	}
	if err := t.resolve(c.Set()); err != nil {
		return c.UsageError("%v", err)
	}
	if err := checkWindow(f); err != nil {
		return c.UsageError("%v", err)
	}
	client, err := t.connect(ctx, nil)
	if err != nil {
		return c.Fail(err)
	}
	defer func() { _ = client.Close() }()
	entries, err := dlq.Read(ctx, client, t.dlqTopic, f)
	bad := dlq.BadRecords(err)
	if err != nil && len(bad) == 0 {
		return c.Fail(fmt.Errorf("read %s: %w", t.dlqTopic, err))
	}
	// Best effort: the entries are what list is for.
	redriven, err := redrivenOf(ctx, client, t.dlqTopic, entries)
	if err != nil {
		unknown := "the entries' REDRIVEN-TO shows ?"
		if redriven != nil {
			unknown = "the redrives of the others are shown"
		}
		fmt.Fprintf(c.stderr, "bridge dlq list: warning: %v (%s)\n", err, unknown)
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetEscapeHTML(false)
		for i, e := range entries {
			var r *dlq.Redrive
			if redriven != nil {
				r = redriven[i]
			}
			j := toJSON(t.dlqTopic, e, r)
			j.RedrivenUnknown = redriven == nil
			if err := enc.Encode(j); err != nil {
				return c.Fail(err)
			}
		}
	} else if len(entries) > 0 {
		writeTable(c.stdout, entries, redriven)
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

// redrivenOf returns, for each of entries, its redrive as the redrive
// ledger records it (nil for none): the entry's own, or that of another
// dead letter of the same record, which a redrive refuses alike. With
// records of the ledger that are not redrive records it returns what the
// others say and an error naming them; when the ledger cannot be read, nil
// and the error.
func redrivenOf(ctx context.Context, client sarama.Client, dlqTopic string, entries []dlq.Entry) ([]*dlq.Redrive, error) {
	out := make([]*dlq.Redrive, len(entries))
	if len(entries) == 0 {
		return out, nil
	}
	ids, err := topicid.Lookup(client, []string{dlqTopic})
	if err != nil {
		return nil, err
	}
	redrives, err := dlq.ReadRedrives(ctx, client, dlqTopic)
	if err != nil && !onlyBadRedriveRecords(err) {
		return nil, fmt.Errorf("read the redrive records of %s: %w", dlqTopic, err)
	}
	for i, e := range entries {
		r, ok := redrives.Of(ids[dlqTopic], e.Partition, e.Offset)
		if !ok {
			r, ok = redrives.OfRecord(dlq.RecordID(e.Failure))
		}
		if ok {
			out[i] = &r
		}
	}
	if err != nil {
		return out, fmt.Errorf("read the redrive records of %s: %w", dlqTopic, err)
	}
	return out, nil
}

// onlyBadRedriveRecords says every error err joins is a
// *dlq.BadRedriveRecord: ReadRedrives read the others.
func onlyBadRedriveRecords(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyBadRedriveRecords(e) {
				return false
			}
		}
		return true
	}
	_, ok := err.(*dlq.BadRedriveRecord)
	return ok
}

// errWidth is how much of an error message the table shows.
const errWidth = 80

// writeTable prints entries as an aligned table; redriven[i] is entry i's
// redrive, nil for none (redriven nil: not known). REDRIVES is how often
// the record had been redriven when it was dead-lettered
// (sagabridge.redrive.count), REDRIVEN-TO where a redrive since sent it.
func writeTable(w io.Writer, entries []dlq.Entry, redriven []*dlq.Redrive) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ\tORIGIN\tCLASS\tFAILED-AT\tATTEMPTS\tREDRIVES\tREDRIVEN-TO\tWORKFLOW-ID\tRUN-ID\tACTIVITY\tERROR")
	for i, e := range entries {
		f := e.Failure
		to := "?"
		switch {
		case redriven == nil:
		case redriven[i] != nil:
			to = oneLine(redriven[i].To)
		default:
			to = "-"
		}
		fmt.Fprintf(tw, "%d@%d\t%s/%d@%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n",
			e.Partition, e.Offset, f.Topic, f.Partition, f.Offset, orDash(string(f.Class)),
			f.FailedAt.UTC().Format("2006-01-02T15:04:05.000Z"), f.Attempts, e.Redrives, to,
			orDash(oneLine(f.WorkflowID)), orDash(oneLine(f.RunID)), orDash(oneLine(f.ActivityType)),
			orDash(truncate(reducedMark(f)+oneLine(f.Err), errWidth)))
	}
	_ = tw.Flush()
}

// reducedMark starts the error cell of a dead letter written in reduced
// form, whose value the table would otherwise show as if it were null.
func reducedMark(f dlq.Failure) string {
	if !f.IsReduced() {
		return ""
	}
	what, _ := f.Dropped()
	return "[reduced, " + what + "] "
}

// orDash shows an empty table cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine turns line breaks and tabs into spaces, and writes other
// control characters as Go escapes (\x1b), so that an error quoting
// payload bytes cannot send the operator's terminal escape sequences.
func oneLine(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
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
	DLQTopic     string    `json:"dlq_topic"`
	DLQPartition int32     `json:"dlq_partition"`
	DLQOffset    int64     `json:"dlq_offset"`
	Topic        string    `json:"topic"`
	Partition    int32     `json:"partition"`
	Offset       int64     `json:"offset"`
	Class        string    `json:"class"`
	Error        string    `json:"error"`
	FailedAt     time.Time `json:"failed_at"`
	Timestamp    *string   `json:"timestamp,omitempty"` // the original record's, when kept (as dlq.FormatTimestamp writes it)
	Attempts     int       `json:"attempts"`
	Redrives     int       `json:"redrives"`
	WorkflowID   string    `json:"workflow_id"`
	RunID        string    `json:"run_id"`
	Activity     string    `json:"activity"`
	EventID      string    `json:"event_id,omitempty"`
	// TraceParent and TraceState are the writer's W3C trace context.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
	// RedrivenAt and RedrivenTo are the redrive the ledger records for
	// the entry (or another dead letter of its record), which `redrive`
	// refuses to repeat without -force; omitted for none.
	RedrivenAt *time.Time `json:"redriven_at,omitempty"`
	RedrivenTo string     `json:"redriven_to,omitempty"`
	// RedrivenUnknown says the redrives topic could not be read (a
	// warning says why): whether the entry was redriven is not known.
	RedrivenUnknown bool         `json:"redriven_unknown,omitempty"`
	Key             *string      `json:"key"`
	KeyEncoding     string       `json:"key_encoding"`
	Value           *string      `json:"value"`
	ValueEncoding   string       `json:"value_encoding"`
	Headers         []jsonHeader `json:"headers"`
	// Reduced says what a dead letter written in reduced form dropped
	// (then value is null though the record had one, of ValueSize bytes);
	// both are omitted for a dead letter that is whole.
	Reduced   string `json:"reduced,omitempty"`
	ValueSize int    `json:"value_size,omitempty"`
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

// toJSON is e, read from topic, as a line of `list -json`; redriven is
// its redrive, nil for none.
func toJSON(topic string, e dlq.Entry, redriven *dlq.Redrive) jsonEntry {
	f := e.Failure
	j := jsonEntry{
		DLQTopic: topic, DLQPartition: e.Partition, DLQOffset: e.Offset,
		Topic: f.Topic, Partition: f.Partition, Offset: f.Offset,
		Class: string(f.Class), Error: f.Err, FailedAt: f.FailedAt.UTC(), Attempts: f.Attempts, Redrives: e.Redrives,
		WorkflowID: f.WorkflowID, RunID: f.RunID, Activity: f.ActivityType, EventID: f.EventID,
		TraceParent: f.TraceParent, TraceState: f.TraceState,
		Headers: make([]jsonHeader, 0, len(f.Headers)),
	}
	if redriven != nil {
		at := redriven.At.UTC()
		j.RedrivenAt, j.RedrivenTo = &at, redriven.To
	}
	if !f.Timestamp.IsZero() {
		at := dlq.FormatTimestamp(f.Timestamp) // time.Time's JSON has no year past 9999
		j.Timestamp = &at
	}
	j.Reduced, j.ValueSize = f.Dropped()
	j.Key, j.KeyEncoding = encodeBytes(f.Key)
	j.Value, j.ValueEncoding = encodeBytes(f.Value)
	for _, h := range f.Headers {
		jh := jsonHeader{Key: string(h.Key)}
		jh.Value, jh.ValueEncoding = encodeBytes(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	return j
}
