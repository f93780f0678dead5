package dlqcli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/dlq"
)

// show is `bridge dlq show`.
func (c *command) show(ctx context.Context, args []string) int {
	t := c.flags("-brokers h:p[,h:p] (-topic T | -source S [-suffix .dlq]) -partition P -offset O")
	partition, offset := c.position(" (required)")
	if code, ok := c.Parse(args); !ok {
		return code
	}
	set := c.Set()
	if err := t.resolve(set); err != nil {
		return c.UsageError("%v", err)
	}
	if err := checkPosition(set, *partition, *offset, true); err != nil {
		return c.UsageError("%v", err)
	}
	client, err := t.connect(ctx, nil)
	if err != nil {
		return c.Fail(err)
	}
	defer func() { _ = client.Close() }()
	msg, err := dlq.ReadRecord(ctx, client, t.dlqTopic, int32(*partition), *offset)
	if err != nil {
		return c.Fail(err)
	}
	writeRecord(c.stdout, msg)
	if _, err := dlq.EntryOf(msg); err != nil {
		return c.Fail(err)
	}
	return exitOK
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
