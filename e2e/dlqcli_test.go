package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/committed"
)

// dlqcliRun runs `bridge dlq args...` and returns its exit status and output.
func dlqcliRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return bridgeRun(t, 60*time.Second, "dlq", args...)
}

// bridgeRun runs `bridge sub args...` within timeout and returns its exit
// status and output, which it also logs.
func bridgeRun(t *testing.T, timeout time.Duration, sub string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bridgeBin, append([]string{sub}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err, "run bridge %s %v", sub, args)
	}
	require.NoError(t, ctx.Err(), "bridge %s %v did not finish in time; stderr:\n%s", sub, args, errOut.String())
	t.Logf("bridge %s %s -> %d\nstdout:\n%s\nstderr:\n%s", sub, strings.Join(args, " "), cmd.ProcessState.ExitCode(), out.String(), errOut.String())
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// dlqcliRows returns the table rows of `list` output (the header dropped).
func dlqcliRows(t *testing.T, stdout string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	require.True(t, strings.HasPrefix(lines[0], "DLQ "), "table header: %q", lines[0])
	return lines[1:]
}

// dlqcliReadSource reads topic's partition 0 from the oldest offset,
// read_committed as the bridge does, until nothing it could deliver is left
// below the high-water mark captured when called (a redrive writes in a
// transaction, whose commit marker is the partition's last offset and is
// never delivered), failing the test if that takes longer than 20 s.
func dlqcliReadSource(t *testing.T, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	return readCommitted(t, stack.Kafka.Brokers, saga.ProducerConfig(), topic)
}

// readCommitted reads every partition of topic from the oldest offset with
// a read_committed consumer of cfg until nothing deliverable is left below
// each partition's high-water mark as it was when called, failing the test
// if that takes longer than 20 s.
func readCommitted(t *testing.T, brokers []string, cfg *sarama.Config, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	c := *cfg
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	client, err := sarama.NewClient(brokers, &c)
	require.NoError(t, err)
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	require.NoError(t, err)
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	require.NoError(t, err)
	var got []*sarama.ConsumerMessage
	deadline := time.After(20 * time.Second)
	for _, part := range parts {
		end, err := client.GetOffset(topic, part, sarama.OffsetNewest)
		require.NoError(t, err)
		next := int64(0)
		left := func() bool {
			more, err := committed.Deliverable(client, topic, part, next, end)
			return err != nil || more
		}
		if !left() {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, part, sarama.OffsetOldest)
		require.NoError(t, err)
		check := time.NewTicker(100 * time.Millisecond)
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				if m.Offset < end {
					got = append(got, m)
				}
				next = m.Offset + 1
				done = !left()
			case <-check.C: // the rest may be markers, which never come
				done = !left()
			case <-deadline:
				t.Fatalf("read %s/%d: %d records by the deadline, not at offset %d", topic, part, len(got), end)
			}
		}
		check.Stop()
		_ = pc.Close()
	}
	return got
}

func TestDLQCLI(t *testing.T) {
	id := uuid.NewString()[:8]
	source := "dlqcli-" + id
	dlqTopic := dlq.TopicFor(source, dlq.DefaultSuffix)
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(source, 1, nil))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(dlqTopic, 1, nil))
	brokers := strings.Join(stack.Kafka.Brokers, ",")

	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	w := dlq.ProducerWriter{Producer: p, Suffix: dlq.DefaultSuffix}
	ctx := context.Background()

	at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	binary := []byte{0x00, 0xff, 0x10, 0x80, 'x', 0xc3}
	longErr := "ChargePayment: card declined by the issuer" + strings.Repeat(" after many retries", 8)
	failures := []dlq.Failure{{
		Topic: source, Partition: 0, Offset: 10, Key: []byte("order-1"), Value: []byte("{not json"),
		Headers: []sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte("OrderPlaced")}},
		Class:   dlq.ClassDecode, Err: "invalid character 'n' looking for beginning of object key string", FailedAt: at, Attempts: 1,
	}, {
		Topic: source, Partition: 0, Offset: 11, Key: []byte("order-42"), Value: []byte(`{"order_id":"order-42","amount":1200}`),
		Headers: []sarama.RecordHeader{{Key: []byte("event-type"), Value: []byte("PaymentRequested")}},
		Class:   dlq.ClassActivity, Err: longErr, FailedAt: at.Add(time.Second), Attempts: 5,
		WorkflowID: "order-order-42", RunID: "run-" + id, ActivityType: "ChargePayment",
	}, {
		Topic: source, Partition: 0, Offset: 12, Key: []byte("order-7"), Value: binary,
		Headers: []sarama.RecordHeader{{Key: []byte("trace-id"), Value: []byte("t-7")}},
		Class:   dlq.ClassRoute, Err: "no route for record", FailedAt: at.Add(2 * time.Second), Attempts: 1,
	}}
	for _, f := range failures {
		require.NoError(t, w.Write(ctx, f))
	}

	// An aborted transaction's record must never be listed. It leaves the
	// DLQ ending with an abort marker, which the reader must not wait for.
	txCfg := saga.ProducerConfig()
	txCfg.Producer.Transaction.ID = "dlqcli-" + id
	txp, err := sarama.NewSyncProducer(stack.Kafka.Brokers, txCfg)
	require.NoError(t, err)
	require.NoError(t, txp.BeginTxn())
	_, _, err = txp.SendMessage(dlq.Failure{
		Topic: source, Partition: 0, Offset: 13, Key: []byte("aborted"), Value: []byte("x"),
		Class: dlq.ClassProcess, Err: "aborted", FailedAt: at, Attempts: 1,
	}.Message(dlq.DefaultSuffix))
	require.NoError(t, err)
	require.NoError(t, txp.AbortTxn())
	require.NoError(t, txp.Close())

	// list: all three, in DLQ offset order, the aborted one absent.
	code, stdout, stderr := dlqcliRun(t, "list", "-brokers", brokers, "-source", source)
	require.Equal(t, 0, code, stderr)
	rows := dlqcliRows(t, stdout)
	require.Len(t, rows, 3, stdout)
	for i, f := range failures {
		fields := strings.Fields(rows[i])
		require.GreaterOrEqual(t, len(fields), 10, rows[i])
		assert.Equal(t, fmt.Sprintf("0@%d", i), fields[0], "DLQ position")
		assert.Equal(t, fmt.Sprintf("%s/%d@%d", f.Topic, f.Partition, f.Offset), fields[1], "original position")
		assert.Equal(t, string(f.Class), fields[2])
		assert.Equal(t, f.FailedAt.Format("2006-01-02T15:04:05.000Z"), fields[3])
		assert.Equal(t, strconv.Itoa(f.Attempts), fields[4], "attempts")
		assert.Equal(t, "0", fields[5], "redrives")
	}
	assert.Contains(t, rows[1], "order-order-42")
	assert.Contains(t, rows[1], "run-"+id)
	assert.Contains(t, rows[1], "ChargePayment")
	assert.Contains(t, rows[1], "…", "a long error is truncated in the table")
	assert.NotContains(t, rows[1], longErr)
	assert.NotContains(t, stdout, "aborted")
	assert.Contains(t, stderr, "3 matching entries")

	// list -class: just the activity failure.
	code, stdout, stderr = dlqcliRun(t, "list", "-brokers", brokers, "-topic", dlqTopic, "-class", "activity")
	require.Equal(t, 0, code, stderr)
	rows = dlqcliRows(t, stdout)
	require.Len(t, rows, 1, stdout)
	assert.True(t, strings.HasPrefix(rows[0], "0@1 "), rows[0])

	// list -workflow-id and a time window.
	code, stdout, stderr = dlqcliRun(t, "list", "-brokers", brokers, "-topic", dlqTopic,
		"-since", at.Add(time.Second).Format(time.RFC3339Nano), "-until", at.Add(2*time.Second).Format(time.RFC3339Nano), "-workflow-id", "order-order-42")
	require.Equal(t, 0, code, stderr)
	require.Len(t, dlqcliRows(t, stdout), 1, stdout)

	// list -json round-trips every field.
	code, stdout, stderr = dlqcliRun(t, "list", "-brokers", brokers, "-topic", dlqTopic, "-json")
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	require.Len(t, lines, 3, stdout)
	for i, f := range failures {
		var got struct {
			DLQTopic      string `json:"dlq_topic"`
			DLQPartition  int32  `json:"dlq_partition"`
			DLQOffset     int64  `json:"dlq_offset"`
			Topic         string `json:"topic"`
			Partition     int32  `json:"partition"`
			Offset        int64  `json:"offset"`
			Class         string `json:"class"`
			Error         string `json:"error"`
			FailedAt      string `json:"failed_at"`
			Attempts      int    `json:"attempts"`
			Redrives      int    `json:"redrives"`
			WorkflowID    string `json:"workflow_id"`
			RunID         string `json:"run_id"`
			Activity      string `json:"activity"`
			Key           string `json:"key"`
			KeyEncoding   string `json:"key_encoding"`
			Value         string `json:"value"`
			ValueEncoding string `json:"value_encoding"`
			Headers       []struct {
				Key           string `json:"key"`
				Value         string `json:"value"`
				ValueEncoding string `json:"value_encoding"`
			} `json:"headers"`
		}
		dec := json.NewDecoder(strings.NewReader(lines[i]))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&got), lines[i])
		assert.Equal(t, dlqTopic, got.DLQTopic)
		assert.Equal(t, int32(0), got.DLQPartition)
		assert.Equal(t, int64(i), got.DLQOffset)
		assert.Equal(t, f.Topic, got.Topic)
		assert.Equal(t, f.Partition, got.Partition)
		assert.Equal(t, f.Offset, got.Offset)
		assert.Equal(t, string(f.Class), got.Class)
		assert.Equal(t, f.Err, got.Error, "the full error")
		failedAt, err := time.Parse(time.RFC3339Nano, got.FailedAt)
		require.NoError(t, err)
		assert.True(t, f.FailedAt.Equal(failedAt), "failed_at %s, want %s", got.FailedAt, f.FailedAt)
		assert.Equal(t, f.Attempts, got.Attempts)
		assert.Equal(t, 0, got.Redrives)
		assert.Equal(t, f.WorkflowID, got.WorkflowID)
		assert.Equal(t, f.RunID, got.RunID)
		assert.Equal(t, f.ActivityType, got.Activity)
		assert.Equal(t, "utf8", got.KeyEncoding)
		assert.Equal(t, string(f.Key), got.Key)
		value := []byte(got.Value)
		if got.ValueEncoding == "base64" {
			value, err = base64.StdEncoding.DecodeString(got.Value)
			require.NoError(t, err)
		}
		assert.Equal(t, f.Value, value)
		require.Len(t, got.Headers, 1)
		assert.Equal(t, string(f.Headers[0].Key), got.Headers[0].Key)
		assert.Equal(t, string(f.Headers[0].Value), got.Headers[0].Value)
	}
	assert.Contains(t, lines[2], `"value_encoding":"base64"`, "a binary value is base64")
	assert.Contains(t, lines[1], `"value_encoding":"utf8"`)

	// show: every header and the payload.
	code, stdout, stderr = dlqcliRun(t, "show", "-brokers", brokers, "-topic", dlqTopic, "-partition", "0", "-offset", "1")
	require.Equal(t, 0, code, stderr)
	for _, want := range []string{
		"event-type: PaymentRequested",
		dlq.HeaderTopic + ": " + source,
		dlq.HeaderPartition + ": 0",
		dlq.HeaderOffset + ": 11",
		dlq.HeaderErrorClass + ": activity",
		dlq.HeaderError + ": " + longErr,
		dlq.HeaderFailedAt + ": " + at.Add(time.Second).Format(time.RFC3339Nano),
		dlq.HeaderAttempts + ": 5",
		dlq.HeaderWorkflowID + ": order-order-42",
		dlq.HeaderRunID + ": run-" + id,
		dlq.HeaderActivity + ": ChargePayment",
		"order-42",
		"Payload (json",
		"{\n  \"order_id\": \"order-42\",\n  \"amount\": 1200\n}",
	} {
		assert.Contains(t, stdout, want)
	}
	code, stdout, stderr = dlqcliRun(t, "show", "-brokers", brokers, "-source", source, "-partition", "0", "-offset", "2")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "trace-id: t-7")
	assert.Contains(t, stdout, "binary")
	assert.Contains(t, stdout, "00 ff 10 80 78 c3")

	// redrive -dry-run produces nothing.
	code, stdout, stderr = dlqcliRun(t, "redrive", "-brokers", brokers, "-topic", dlqTopic, "-partition", "0", "-offset", "2", "-dry-run")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "would redrive")
	assert.Contains(t, stdout, dlq.HeaderRedriveCount+"=1")
	assert.Contains(t, stdout, "nothing was produced")
	assert.Empty(t, dlqcliReadSource(t, source), "a dry run produces nothing")

	// redrive: exactly one record, byte for byte, with the count.
	code, stdout, stderr = dlqcliRun(t, "redrive", "-brokers", brokers, "-topic", dlqTopic, "-partition", "0", "-offset", "2")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "redriven")
	assert.Contains(t, stdout, "-> "+source+"/0@0")
	assert.Contains(t, stdout, dlq.HeaderRedriveCount+"=1")
	got := dlqcliReadSource(t, source)
	require.Len(t, got, 1)
	assert.Equal(t, []byte("order-7"), got[0].Key)
	assert.Equal(t, binary, got[0].Value)
	headers := map[string]string{}
	for _, h := range got[0].Headers {
		k := string(h.Key)
		assert.False(t, strings.HasPrefix(k, dlq.HeaderPrefix), "DLQ header %s on the redriven record", k)
		headers[k] = string(h.Value)
	}
	assert.Equal(t, map[string]string{"trace-id": "t-7", dlq.HeaderRedriveCount: "1"}, headers)

	// The same entry again: refused, because the redrive was recorded in
	// <dlq>.redrives (the DLQ entry itself is unchanged); -force redrives it.
	code, stdout, stderr = dlqcliRun(t, "redrive", "-brokers", brokers, "-topic", dlqTopic, "-partition", "0", "-offset", "2")
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "refused        0@2")
	assert.Contains(t, stdout, "already redriven at")
	assert.Contains(t, stdout, "to "+source+"/0@0")
	assert.Contains(t, stderr, "-force")
	require.Len(t, dlqcliReadSource(t, source), 1, "a second redrive produced nothing")
	code, stdout, stderr = dlqcliRun(t, "redrive", "-brokers", brokers, "-topic", dlqTopic, "-partition", "0", "-offset", "2", "-force")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "-> "+source+"/0@2", "after the first redrive's record and its transaction's commit marker")
	require.Len(t, dlqcliReadSource(t, source), 2, "-force redrove it again")

	// An entry already redriven max times is refused.
	tired := failures[0]
	tired.Offset, tired.Class, tired.Err = 14, dlq.ClassRejected, "workflow rejected the signal"
	tired.Headers = []sarama.RecordHeader{{Key: []byte(dlq.HeaderRedriveCount), Value: []byte("3")}}
	require.NoError(t, w.Write(ctx, tired))
	code, stdout, stderr = dlqcliRun(t, "list", "-brokers", brokers, "-topic", dlqTopic, "-class", string(dlq.ClassRejected), "-json")
	require.Equal(t, 0, code, stderr)
	var tiredEntry struct {
		DLQOffset int64 `json:"dlq_offset"`
		Redrives  int   `json:"redrives"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &tiredEntry), stdout)
	assert.Equal(t, 3, tiredEntry.Redrives)
	assert.Greater(t, tiredEntry.DLQOffset, int64(3), "after the aborted transaction")
	offset := func(o int64) string { return strconv.FormatInt(o, 10) }
	code, stdout, stderr = dlqcliRun(t, "redrive", "-brokers", brokers, "-topic", dlqTopic,
		"-partition", "0", "-offset", offset(tiredEntry.DLQOffset), "-max-redrives", "3")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stdout, "refused        0@"+offset(tiredEntry.DLQOffset))
	assert.Contains(t, stdout, "already redriven 3 times, the maximum is 3")
	assert.Contains(t, stdout, "0 redriven, 1 refused")
	assert.Contains(t, stderr, "1 entries refused")
	// The same through a filter, together with an entry that is redriven.
	code, stdout, _ = dlqcliRun(t, "redrive", "-brokers", brokers, "-source", source, "-since", at.Format(time.RFC3339Nano),
		"-until", at.Add(time.Nanosecond).Format(time.RFC3339Nano), "-max-redrives", "3", "-dry-run")
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "would redrive  0@0")
	assert.Contains(t, stdout, "refused        0@"+offset(tiredEntry.DLQOffset))
	assert.Contains(t, stdout, "1 would be redriven, 1 refused")
	require.Len(t, dlqcliReadSource(t, source), 2, "nothing more was produced")

	// No selection and no -all: a usage error.
	code, _, stderr = dlqcliRun(t, "redrive", "-brokers", brokers, "-topic", dlqTopic)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "-all")
	require.Len(t, dlqcliReadSource(t, source), 2, "nothing more was produced")

	// show of the aborted record's offset finds nothing.
	code, _, stderr = dlqcliRun(t, "show", "-brokers", brokers, "-topic", dlqTopic, "-partition", "0", "-offset", "3")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no record at offset 3")

	// A DLQ topic that does not exist is an error, and is not created.
	missing := dlqTopic + "-missing"
	code, _, stderr = dlqcliRun(t, "list", "-brokers", brokers, "-topic", missing)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, missing)
	admin, err := sarama.NewClusterAdmin(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	topics, err := admin.ListTopics()
	require.NoError(t, err)
	_ = admin.Close()
	assert.NotContains(t, topics, missing, "listing a mistyped topic must not create it")
	assert.Contains(t, topics, dlqTopic)

	// A record that is not a DLQ record is reported by position; the
	// listing goes on.
	bp, bo, err := p.SendMessage(&sarama.ProducerMessage{Topic: dlqTopic, Value: sarama.StringEncoder("stray")})
	require.NoError(t, err)
	code, stdout, stderr = dlqcliRun(t, "list", "-brokers", brokers, "-topic", dlqTopic)
	assert.Equal(t, 1, code)
	assert.Len(t, dlqcliRows(t, stdout), 4, stdout)
	assert.Contains(t, stderr, fmt.Sprintf("DLQ record %d@%d is not a valid DLQ record", bp, bo))
	assert.Contains(t, stderr, dlq.HeaderTopic+" missing")
}

func TestDLQCLIListsEveryPartition(t *testing.T) {
	source := "dlqcli-parts-" + uuid.NewString()[:8]
	dlqTopic := dlq.TopicFor(source, ".dead")
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(dlqTopic, 4, nil))
	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	at := time.Now().UTC()
	want := map[string]bool{}
	for i := range 6 {
		f := dlq.Failure{Topic: source, Partition: int32(i % 2), Offset: int64(i), Key: fmt.Appendf(nil, "key-%d", i),
			Value: []byte("{}"), Class: dlq.ClassWorkflowClosed, Err: "closed", FailedAt: at, Attempts: 1}
		part, off, err := p.SendMessage(f.Message(".dead"))
		require.NoError(t, err)
		want[fmt.Sprintf("%d@%d", part, off)] = true
	}
	brokers := strings.Join(stack.Kafka.Brokers, ",")
	code, stdout, stderr := dlqcliRun(t, "list", "-brokers", brokers, "-source", source, "-suffix", ".dead", "-since", "1h")
	require.Equal(t, 0, code, stderr)
	rows := dlqcliRows(t, stdout)
	require.Len(t, rows, len(want), stdout)
	got := map[string]bool{}
	var prev [2]int64
	for i, r := range rows {
		pos := strings.Fields(r)[0]
		got[pos] = true
		var part, off int64
		_, err := fmt.Sscanf(pos, "%d@%d", &part, &off)
		require.NoError(t, err)
		if i > 0 {
			assert.True(t, part > prev[0] || (part == prev[0] && off > prev[1]), "rows in partition, offset order: %s", stdout)
		}
		prev = [2]int64{part, off}
	}
	assert.Equal(t, want, got)

	code, stdout, stderr = dlqcliRun(t, "list", "-brokers", brokers, "-topic", dlqTopic, "-until", "1h")
	require.Equal(t, 0, code, stderr)
	assert.Empty(t, stdout, "nothing failed more than an hour ago")
	assert.Contains(t, stderr, "0 matching entries")
}

// A producer that puts the DLQ's own headers on an ordinary record cannot
// mislead the DLQ tool once the record is dead-lettered: the bridge renames
// them (original.sagabridge.dlq.*), so `dlq list -workflow-id` does not
// find the forged ID and the entry shows the bridge's context only.
func TestForgedDLQHeadersDoNotMisleadTheDLQTool(t *testing.T) {
	e := newEnv(t, 1)
	_, stop := e.runBridge(e.topic)
	defer stop()
	_, _, err := e.producer.SendMessage(&sarama.ProducerMessage{
		Topic: e.topic, Key: sarama.StringEncoder("o-1"), Value: sarama.StringEncoder("{not json"),
		Headers: []sarama.RecordHeader{
			{Key: []byte("event-type"), Value: []byte("OrderPlaced")},
			{Key: []byte(dlq.HeaderWorkflowID), Value: []byte("victim-" + e.id)},
			{Key: []byte(dlq.HeaderErrorClass), Value: []byte(dlq.ClassActivity)},
		},
	})
	require.NoError(t, err)
	dlqTopic := dlq.TopicFor(e.topic, dlq.DefaultSuffix)
	require.Len(t, readAll(t, dlqTopic, 1, 30*time.Second), 1)

	brokers := strings.Join(stack.Kafka.Brokers, ",")
	code, stdout, stderr := dlqcliRun(t, "list", "-brokers", brokers, "-topic", dlqTopic, "-workflow-id", "victim-"+e.id)
	require.Equal(t, 0, code, stderr)
	assert.Empty(t, dlqcliRows(t, stdout), "the forged workflow ID selected the entry")
	code, stdout, stderr = dlqcliRun(t, "list", "-brokers", brokers, "-topic", dlqTopic, "-json")
	require.Equal(t, 0, code, stderr)
	var entry struct {
		Class      string `json:"class"`
		WorkflowID string `json:"workflow_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(stdout)), &entry), stdout)
	assert.Equal(t, string(dlq.ClassDecode), entry.Class, "the bridge's class, not the forged one")
	assert.Empty(t, entry.WorkflowID)
	code, stdout, stderr = dlqcliRun(t, "show", "-brokers", brokers, "-topic", dlqTopic, "-partition", "0", "-offset", "0")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "original."+dlq.HeaderWorkflowID+": victim-"+e.id, "kept, under its own name")
}

// A dead letter written in reduced form (its value dropped because the
// whole did not fit the DLQ topic) is not redriven: that would write a null
// value, on a compacted topic the key's deletion. The tool refuses it,
// says what was dropped and where the original is, exits 1 and produces
// nothing.
func TestDLQCLIRefusesToRedriveAReducedDeadLetter(t *testing.T) {
	source := "dlqcli-reduced-" + uuid.NewString()[:8]
	dlqTopic := dlq.TopicFor(source, dlq.DefaultSuffix)
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(source, 1, nil))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(dlqTopic, 1, nil))
	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, saga.ProducerConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	big := dlq.Failure{Topic: source, Partition: 0, Offset: 7, Key: []byte("order-9"), Value: make([]byte, 2<<20),
		Class: dlq.ClassRejected, Err: "payload too large", FailedAt: time.Now().UTC(), Attempts: 1}
	require.NoError(t, dlq.ProducerWriter{Producer: p, Suffix: dlq.DefaultSuffix}.Write(context.Background(), big.Reduced()))

	code, stdout, stderr := dlqcliRun(t, "redrive", "-brokers", strings.Join(stack.Kafka.Brokers, ","), "-topic", dlqTopic, "-all")
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "refused        0@0        written in reduced form (dropped: value (2097152 bytes)); original "+source+"/0@7")
	assert.Contains(t, stdout, "0 redriven, 1 refused")
	assert.Contains(t, stderr, "1 entries refused: written in reduced form")
	assert.Empty(t, dlqcliReadSource(t, source), "a reduced dead letter was redriven")
}
