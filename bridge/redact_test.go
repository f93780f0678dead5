package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

func TestKeyHashIsShortStableAndDistinct(t *testing.T) {
	assert.Equal(t, "sha256:2cf24dba5fb0", KeyHash("hello"), "the first 12 hex digits of SHA-256(hello), unsalted")
	assert.Equal(t, KeyHash("order-1"), KeyHash("order-1"))
	assert.NotEqual(t, KeyHash("order-1"), KeyHash("order-2"))
	assert.Len(t, KeyHash("x"), len("sha256:")+12)
}

// Every place a workflow ID or key can sit in a line is redacted: the
// attributes, groups, attributes added with With, and an error or message
// that repeats the value; other attributes are untouched.
func TestRedactKeysHashesEveryWorkflowIDAndKeyOfALine(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(RedactKeys(slog.NewJSONHandler(&buf, nil)))
	log = slog.New(RedactKeys(log.Handler()))       // wrapping twice hashes once
	id, key := "order-kx47q-secret", "kx47q-secret" // letters: a timestamp's digits cannot hold them
	log.With("key", key).WithGroup("call").Warn("failed for "+id,
		"workflow_id", id, "err", fmt.Errorf("query sagabridge.applied of %s: %w", id, errors.New("timeout")),
		"topic", "orders", "partition", 3, slog.Group("target", "WorkflowID", id))
	line := buf.String()
	assert.NotContains(t, line, "kx47q", "the key or an ID made from it is in the line: %s", line)
	assert.Equal(t, 4, strings.Count(line, KeyHash(id)), "message, workflow_id, err and the group's WorkflowID: %s", line)
	assert.Contains(t, line, `"key":"`+KeyHash(key)+`"`)
	assert.Contains(t, line, `"topic":"orders"`)
	assert.Contains(t, line, `"partition":3`)
	assert.Contains(t, line, `timeout`)
}

// redactedBridge runs a key through a retry and a closed workflow (whose
// dead letter's error names the workflow) and returns what the bridge
// logged and the dead letters.
func redactedBridge(t *testing.T, redact bool) (string, []dlq.Failure) {
	t.Helper()
	var buf syncWriter
	tc := &fakeTemporal{
		script: []error{serviceerror.NewUnavailable("busy"), fmtClosed("order-secret-42")},
		closed: event.Watermarks{"orders/0": 5},
	}
	dl := &fakeDLQ{}
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Log:      config.Log{RedactKeys: redact},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: tc, DeadLetters: dl, Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	consume(t, b, context.Background(), msg(5, "secret-42", `{}`), msg(6, "secret-42", `{}`))
	require.Len(t, dl.failures, 1)
	return buf.String(), dl.failures
}

// With log.redact_keys the bridge's lines show the hash of the workflow ID
// and never the key; without it they show the ID. The DLQ is unchanged.
func TestLogRedactKeysKeepsKeysOutOfTheBridgesLogs(t *testing.T) {
	logged, dead := redactedBridge(t, true)
	assert.NotContains(t, logged, "secret-42", "a key in the logs with log.redact_keys on:\n%s", logged)
	for _, msg := range []string{"temporal call failed; retrying", "record dead-lettered"} {
		line := lineWith(logged, msg)
		require.NotEmpty(t, line, "no %q line in:\n%s", msg, logged)
		assert.Contains(t, line, `"workflow_id":"`+KeyHash("order-secret-42")+`"`, "line: %s", line)
	}
	assert.Contains(t, lineWith(logged, "record dead-lettered"), "workflow "+KeyHash("order-secret-42")+" has closed",
		"the error of the line names the hash too")
	assert.Equal(t, "order-secret-42", dead[0].WorkflowID, "the DLQ record keeps the workflow ID")

	logged, _ = redactedBridge(t, false)
	assert.Contains(t, lineWith(logged, "temporal call failed; retrying"), `"workflow_id":"order-secret-42"`)
	assert.Contains(t, lineWith(logged, "record dead-lettered"), `"workflow_id":"order-secret-42"`)
	assert.NotContains(t, logged, KeyHash("order-secret-42"))
}

// syncWriter is a buffer the bridge's goroutines may log into while the
// test reads it.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// lineWith returns the first line of logged holding msg.
func lineWith(logged, msg string) string {
	for line := range strings.SplitSeq(logged, "\n") {
		if strings.Contains(line, msg) {
			return line
		}
	}
	return ""
}

// unreachableQuery fails every question of what a workflow applied, as
// the Temporal seam does: its error names the workflow.
type unreachableQuery struct{ fakeTemporal }

func (*unreachableQuery) AppliedWatermarks(_ context.Context, id string) (event.Watermarks, error) {
	return nil, fmt.Errorf("query %s of %s: %w", event.AppliedQuery, id, serviceerror.NewUnavailable("connection refused"))
}

// The debug line of a question that failed logged its error, which names
// the workflow, without the workflow_id attribute the redactor learns IDs
// from: with log.redact_keys on, the key was in clear.
func TestAFailedQuestionsLogKeepsTheKeyOut(t *testing.T) {
	var w syncWriter
	b, err := New(config.Config{
		Kafka:    config.Kafka{Brokers: []string{"b:9092"}, Group: "g"},
		Dispatch: config.Dispatch{WorkflowWindowRecords: 10, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Log:      config.Log{RedactKeys: true},
		Routes:   []config.Route{{Topic: "orders", TypeHeader: "event-type", WorkflowType: "O", WorkflowID: "order-{key}", TaskQueue: "q"}},
	}, Deps{Temporal: &unreachableQuery{}, DeadLetters: &fakeDLQ{},
		Logger: slog.New(slog.NewJSONHandler(&w, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	_, _, qerr := b.queryApplied(context.Background(), Target{WorkflowID: "order-secret-42", WorkflowType: "O", TaskQueue: "q"})
	require.Error(t, qerr)
	logged := w.String()
	require.Contains(t, logged, "cannot ask a workflow what it applied")
	assert.NotContains(t, logged, "secret-42")
}
