package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/connect"
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
	connect := func(k config.Kafka) error {
		k.Brokers, k.Version = brokers, "3.6.0"
		c, err := connect.SaramaConfig(k)
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
			tlsCfg := config.TLS{Enabled: true, CAFile: caFile}
			require.NoError(t, connect(config.Kafka{TLS: tlsCfg, SASL: config.SASL{Mechanism: mech, Username: user, Password: securePassword}}))

			start := time.Now()
			err := connect(config.Kafka{TLS: tlsCfg, SASL: config.SASL{Mechanism: mech, Username: user, Password: wrongPassword}})
			require.Error(t, err, "a wrong password must not connect")
			assert.Less(t, time.Since(start), 15*time.Second, "fails fast")
			assert.NotContains(t, err.Error(), wrongPassword)
			assert.NotContains(t, err.Error(), securePassword)
			t.Logf("wrong password: %v", err)
		})
	}
	t.Run("no TLS", func(t *testing.T) {
		err := connect(config.Kafka{SASL: config.SASL{Mechanism: "SCRAM-SHA-512", Username: "bridge", Password: securePassword}})
		require.Error(t, err)
	})
	t.Run("untrusted CA", func(t *testing.T) {
		otherCA := newPKI(t).caFile
		err := connect(config.Kafka{TLS: config.TLS{Enabled: true, CAFile: otherCA},
			SASL: config.SASL{Mechanism: "SCRAM-SHA-512", Username: "bridge", Password: securePassword}})
		require.Error(t, err)
	})
}

// The bridge binary against a TLS + SCRAM-SHA-512 broker: it delivers every
// record; with a wrong password it exits at once with an error that names
// the problem; neither password appears anywhere in its output.
func TestBridgeOverTLSAndSCRAMDeliversAndKeepsSecretsOutOfLogs(t *testing.T) {
	e := newEnv(t, 2)
	brokers, caFile := secureKafka(t, e.topic, dlq.TopicFor(e.topic, dlq.DefaultSuffix), e.ledgerTopic, dlq.TopicFor(e.ledgerTopic, dlq.DefaultSuffix))
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
	pc, err := connect.DLQProducerConfig(config.Kafka{Version: "3.6.0", ClientID: "e2e",
		TLS:  config.TLS{Enabled: true, CAFile: caFile},
		SASL: config.SASL{Mechanism: "SCRAM-SHA-512", Username: "bridge", PasswordFile: goodFile}}, 0)
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

// The DLQ tool reads and redrives a DLQ on a TLS + SCRAM-SHA-512 broker with
// the bridge's own configuration file (-config). Without it (-brokers only)
// it cannot reach the broker, and with a wrong password it says what failed
// without printing either password.
func TestDLQToolOverTLSAndSCRAMWithTheBridgeConfig(t *testing.T) {
	source := "secure-orders"
	dlqTopic := dlq.TopicFor(source, dlq.DefaultSuffix)
	brokers, caFile := secureKafka(t, source, dlqTopic)
	dir := t.TempDir()
	writeConfig := func(name, password string) string {
		pw := filepath.Join(dir, name+".password")
		require.NoError(t, os.WriteFile(pw, []byte(password+"\n"), 0o600))
		path := filepath.Join(dir, name+".yaml")
		yaml := "kafka:\n  brokers: [" + strings.Join(brokers, ", ") + "]\n" +
			"  tls: {enabled: true, ca_file: " + caFile + "}\n" +
			"  sasl: {mechanism: SCRAM-SHA-512, username: bridge, password_file: " + pw + "}\n"
		require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
		return path
	}
	good, bad := writeConfig("good", securePassword), writeConfig("bad", wrongPassword)

	secure := config.Kafka{Version: "3.6.0", ClientID: "e2e", TLS: config.TLS{Enabled: true, CAFile: caFile},
		SASL: config.SASL{Mechanism: "SCRAM-SHA-512", Username: "bridge", Password: securePassword}}
	pc, err := connect.DLQProducerConfig(secure, 0)
	require.NoError(t, err)
	p, err := sarama.NewSyncProducer(brokers, pc)
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, dlq.ProducerWriter{Producer: p, Suffix: dlq.DefaultSuffix}.Write(t.Context(), dlq.Failure{
		Topic: source, Partition: 1, Offset: 7, Key: []byte("order-7"), Value: []byte(`{"sku":"A1"}`),
		Class: dlq.ClassDecode, Err: "wrong shape", FailedAt: time.Now(), Attempts: 1,
	}))

	tool := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bridgeBin, append([]string{"dlq"}, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := tool("list", "-config", good, "-topic", dlqTopic, "-json")
	require.NoError(t, err, "dlq list: %s", out)
	assert.Contains(t, out, `"offset":7`)
	assert.Contains(t, out, "wrong shape")

	out, err = tool("list", "-brokers", strings.Join(brokers, ","), "-topic", dlqTopic)
	require.Error(t, err, "plaintext without SASL must not reach the broker: %s", out)

	out, err = tool("list", "-config", bad, "-topic", dlqTopic)
	require.Error(t, err, "a wrong password must fail: %s", out)
	assert.Contains(t, out, `SASL SCRAM-SHA-512 user "bridge"`)
	assert.NotContains(t, out, wrongPassword)
	assert.NotContains(t, out, securePassword)

	dead := readSecure(t, brokers, secure, dlqTopic, 1)
	out, err = tool("redrive", "-config", good, "-topic", dlqTopic, "-partition", strconv.Itoa(int(dead[0].Partition)), "-offset", strconv.FormatInt(dead[0].Offset, 10))
	require.NoError(t, err, "dlq redrive: %s", out)
	assert.Contains(t, out, "redriven")
	back := readSecure(t, brokers, secure, source, 1)
	assert.Equal(t, "order-7", string(back[0].Key))
	assert.JSONEq(t, `{"sku":"A1"}`, string(back[0].Value))
}

// readSecure reads n records from topic over the secured connection k.
func readSecure(t *testing.T, brokers []string, k config.Kafka, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := connect.SaramaConfig(k)
	require.NoError(t, err)
	got := readCommitted(t, brokers, c, topic)
	require.Len(t, got, n, "records in %s", topic)
	return got
}
