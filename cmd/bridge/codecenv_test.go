package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// `bridge codec-server` reads the SAGABRIDGE_* variables as the bridge
// does: a deployment configured through the environment gets the
// namespace and the key it gives, not the file's. (It read the file alone:
// it refused to start without kafka.brokers in the file, and served the
// file's namespace, so the UI's requests for the environment's were 403.)
func TestTheCodecServerReadsTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "codec.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
	path := filepath.Join(dir, "bridge.yaml")
	// The bridge's own secrets (its Kafka password, its Temporal API key)
	// are not set where an operator runs the codec server, which uses
	// neither. (It refused to start: "kafka.sasl.password_env: the
	// environment variable ... is not set".)
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`kafka: {sasl: {mechanism: SCRAM-SHA-512, username: u, password_env: SAGABRIDGE_TEST_UNSET_PASSWORD}}
temporal: {namespace: file-ns, api_key_env: SAGABRIDGE_TEST_UNSET_API_KEY, tls: {enabled: true}, codec: {key_file: %q, key_id: k}}
routes: [{topic: orders, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]
`, keyFile)), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	cmd, stderr, serving, exited := startMain(t, "serving",
		[]string{"SAGABRIDGE_KAFKA_BROKERS=env:9092", "SAGABRIDGE_TEMPORAL_NAMESPACE=env-ns"}, "codec-server", "-config", path, "-listen", addr)
	select {
	case <-serving:
	case err := <-exited:
		exited <- err
		t.Fatalf("the codec server exited (%v); stderr:\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the codec server did not start; stderr:\n%s", stderr.String())
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/decode", strings.NewReader(`{"payloads":[]}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "env-ns")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the environment's namespace is served")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		exited <- err
		assert.NoError(t, err, "stderr:\n%s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("the codec server did not stop on SIGTERM")
	}
}
