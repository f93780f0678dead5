package dlqcli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/sagabridge/sagabridge/dlq"
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
	client, err := t.connect(nil)
	if err != nil {
		return c.Fail(err)
	}
	defer func() { _ = client.Close() }()
	entries, err := dlq.Read(ctx, client, t.dlqTopic, f)
	bad := dlq.BadRecords(err)
	if err != nil && len(bad) == 0 {
		return c.Fail(fmt.Errorf("read %s: %w", t.dlqTopic, err))
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetEscapeHTML(false)
		for _, e := range entries {
			if err := enc.Encode(toJSON(t.dlqTopic, e)); err != nil {
				return c.Fail(err)
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
			orDash(f.WorkflowID), orDash(f.RunID), orDash(f.ActivityType), orDash(truncate(reducedMark(f)+oneLine(f.Err), errWidth)))
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
	Timestamp     *string      `json:"timestamp,omitempty"` // the original record's, when kept (as dlq.FormatTimestamp writes it)
	Attempts      int          `json:"attempts"`
	Redrives      int          `json:"redrives"`
	WorkflowID    string       `json:"workflow_id"`
	RunID         string       `json:"run_id"`
	Activity      string       `json:"activity"`
	EventID       string       `json:"event_id,omitempty"`
	Key           *string      `json:"key"`
	KeyEncoding   string       `json:"key_encoding"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding"`
	Headers       []jsonHeader `json:"headers"`
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

// toJSON is e, read from topic, as a line of `list -json`.
func toJSON(topic string, e dlq.Entry) jsonEntry {
	f := e.Failure
	j := jsonEntry{
		DLQTopic: topic, DLQPartition: e.Partition, DLQOffset: e.Offset,
		Topic: f.Topic, Partition: f.Partition, Offset: f.Offset,
		Class: string(f.Class), Error: f.Err, FailedAt: f.FailedAt.UTC(), Attempts: f.Attempts, Redrives: e.Redrives,
		WorkflowID: f.WorkflowID, RunID: f.RunID, Activity: f.ActivityType, EventID: f.EventID,
		Headers: make([]jsonHeader, 0, len(f.Headers)),
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
