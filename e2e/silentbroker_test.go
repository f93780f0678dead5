package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sagabridge/sagabridge/internal/devstack"
)

// silentBroker accepts TCP connections and never answers, as a broker
// behind a dead proxy or a wrong port can; it stops with the test.
func silentBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read from
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// Nothing hangs in silence: against a broker that accepts connections and
// never answers, the bridge and `bridge dlq list` give up within
// kafka.connect_timeout with an error that names the broker (they used to
// print nothing for more than five minutes).
func TestASilentBrokerFailsTheStartWithinTheConnectTimeout(t *testing.T) {
	addr := silentBroker(t)
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	data, err := yaml.Marshal(map[string]any{
		"kafka":  map[string]any{"brokers": []string{addr}, "group": "g", "connect_timeout": "3s"},
		"routes": []map[string]any{{"topic": "t", "workflow_type": "W", "workflow_id": "w-{key}", "task_queue": "q"}},
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))

	for name, args := range map[string][]string{
		"bridge":          {"-config", path},
		"bridge dlq list": {"dlq", "list", "-config", path, "-source", "t"},
	} {
		var out syncBuffer
		start := time.Now()
		p, err := devstack.StartProcess(&out, bridgeBin, args...)
		require.NoError(t, err)
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			p.Kill()
			t.Fatalf("%s still waits after 30 s; output:\n%s", name, out.String())
		}
		took := time.Since(start)
		t.Logf("%s gave up after %s: %s", name, took.Round(100*time.Millisecond), strings.TrimSpace(lastLines(out.String(), 2)))
		assert.Error(t, p.Err(), "%s exits with an error", name)
		assert.Less(t, took, 15*time.Second, name)
		assert.Contains(t, out.String(), addr, "%s names the broker", name)
		assert.Contains(t, out.String(), "kafka.connect_timeout", name)
	}
}
