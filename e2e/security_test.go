package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/ledger"
)

const (
	securePassword = "correct-horse-battery-staple-7Q"
	wrongPassword  = "not-the-password-9Z"
)

// secureKafka starts a kfake broker that speaks only TLS and requires SASL,
// with one user per mechanism, all with securePassword.
func secureKafka(t *testing.T, topics ...string) (brokers []string, caFile string) {
	t.Helper()
	p := newPKI(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(p.serverTLS(false)), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "bridge", securePassword),
		kfake.Superuser("SCRAM-SHA-256", "bridge256", securePassword),
		kfake.Superuser("PLAIN", "plainuser", securePassword),
		kfake.SeedTopics(2, topics...))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c.ListenAddrs(), p.caFile
}

// Every mechanism works over TLS with the right password and fails, fast
// and without the password in the error, with a wrong one; without TLS the
// broker cannot be reached at all.
func TestKafkaSASLMechanismsOverTLS(t *testing.T) {
	brokers, caFile := secureKafka(t, "probe")
	users := map[string]string{"SCRAM-SHA-512": "bridge", "SCRAM-SHA-256": "bridge256", "PLAIN": "plainuser"}
	connect := func(k bridge.KafkaConfig) error {
		k.Brokers, k.Version = brokers, "3.6.0"
		c, err := bridge.SaramaConfig(k)
		require.NoError(t, err)
		c.Metadata.Retry.Max = 1
		c.Net.DialTimeout = 3 * time.Second
		client, err := sarama.NewClient(brokers, c)
		if err == nil {
			_, err = client.Topics()
			client.Close()
		}
		return err
	}
	for mech, user := range users {
		t.Run(mech, func(t *testing.T) {
			tlsCfg := bridge.TLSConfig{Enabled: true, CAFile: caFile}
			require.NoError(t, connect(bridge.KafkaConfig{TLS: tlsCfg, SASL: bridge.KafkaSASLConfig{Mechanism: mech, Username: user, Password: securePassword}}))

			start := time.Now()
			err := connect(bridge.KafkaConfig{TLS: tlsCfg, SASL: bridge.KafkaSASLConfig{Mechanism: mech, Username: user, Password: wrongPassword}})
			require.Error(t, err, "a wrong password must not connect")
			assert.Less(t, time.Since(start), 15*time.Second, "fails fast")
			assert.NotContains(t, err.Error(), wrongPassword)
			assert.NotContains(t, err.Error(), securePassword)
			t.Logf("wrong password: %v", err)
		})
	}
	t.Run("no TLS", func(t *testing.T) {
		err := connect(bridge.KafkaConfig{SASL: bridge.KafkaSASLConfig{Mechanism: "SCRAM-SHA-512", Username: "bridge", Password: securePassword}})
		require.Error(t, err)
	})
	t.Run("untrusted CA", func(t *testing.T) {
		otherCA := newPKI(t).caFile
		err := connect(bridge.KafkaConfig{TLS: bridge.TLSConfig{Enabled: true, CAFile: otherCA},
			SASL: bridge.KafkaSASLConfig{Mechanism: "SCRAM-SHA-512", Username: "bridge", Password: securePassword}})
		require.Error(t, err)
	})
}

// The bridge binary against a TLS + SCRAM-SHA-512 broker: it delivers every
// record; with a wrong password it exits at once with an error that names
// the problem; neither password appears anywhere in its output.
func TestBridgeOverTLSAndSCRAMDeliversAndKeepsSecretsOutOfLogs(t *testing.T) {
	e := newEnv(t, 2)
	brokers, caFile := secureKafka(t, e.topic, e.ledgerTopic, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix))
	dir := t.TempDir()
	goodFile, badFile := filepath.Join(dir, "password"), filepath.Join(dir, "wrong")
	require.NoError(t, os.WriteFile(goodFile, []byte(securePassword+"\n"), 0o600))
	require.NoError(t, os.WriteFile(badFile, []byte(wrongPassword+"\n"), 0o600))
	kafkaFor := func(passwordFile string) map[string]any {
		return map[string]any{"kafka": map[string]any{
			"brokers": brokers, "group": e.topic,
			"tls":  map[string]any{"enabled": true, "ca_file": caFile},
			"sasl": map[string]any{"mechanism": "SCRAM-SHA-512", "username": "bridge", "password_file": passwordFile},
		}}
	}

	// Produce over the same secured connection.
	pc, err := bridge.DLQProducerConfig(bridge.KafkaConfig{Version: "3.6.0", ClientID: "e2e",
		TLS:  bridge.TLSConfig{Enabled: true, CAFile: caFile},
		SASL: bridge.KafkaSASLConfig{Mechanism: "SCRAM-SHA-512", Username: "bridge", PasswordFile: goodFile}})
	require.NoError(t, err)
	p, err := sarama.NewSyncProducer(brokers, pc)
	require.NoError(t, err)
	defer p.Close()
	at, err := ledger.Produce(p, e.ledgerTopic, ledger.Stream(e.id+"-", 20, 400, 1.1, 71))
	require.NoError(t, err)

	var out syncBuffer
	proc := e.startBridgeProcessWith(e.topic, e.temporal, kafkaFor(goodFile), &out)
	e.assertLedgers(at, 2*time.Minute)
	require.NoError(t, proc.Stop(20*time.Second), "bridge output:\n%s", lastLines(out.String(), 30))

	var bad syncBuffer
	start := time.Now()
	badProc := e.startBridgeProcessWith(e.topic+"-bad", e.temporal, kafkaFor(badFile), &bad)
	select {
	case <-badProc.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("the bridge with a wrong password did not exit; output:\n%s", bad.String())
	}
	require.Error(t, badProc.Err(), "exit status with a wrong password")
	t.Logf("wrong password: exited after %s: %s", time.Since(start).Round(time.Millisecond), lastLines(bad.String(), 2))
	assert.Contains(t, strings.ToLower(bad.String()), "sasl", "the error says what failed")

	for name, log := range map[string]string{"good run": out.String(), "wrong-password run": bad.String()} {
		assert.NotContains(t, log, securePassword, "%s: the password is in the output", name)
		assert.NotContains(t, log, wrongPassword, "%s: the wrong password is in the output", name)
	}
}
