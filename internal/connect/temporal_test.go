package bridge

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
)

func TestClientOptionsCarryTheAPIKeyTLSAndCodec(t *testing.T) {
	t.Setenv("SAGABRIDGE_TEST_API_KEY", "key-from-env")
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "codec.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600))

	o, err := TemporalConfig{Address: "t:7233", Namespace: "ns", TLS: TLSConfig{Enabled: true, ServerName: "t"},
		APIKeyEnv: "SAGABRIDGE_TEST_API_KEY", Codec: CodecConfig{KeyFile: keyFile}}.ClientOptions(nil)
	require.NoError(t, err)
	assert.Equal(t, "t:7233", o.HostPort)
	assert.Equal(t, "ns", o.Namespace)
	require.NotNil(t, o.ConnectionOptions.TLS)
	assert.Equal(t, "t", o.ConnectionOptions.TLS.ServerName)
	assert.NotNil(t, o.Credentials, "the API key is sent")
	p, err := o.DataConverter.ToPayload("secret saga state")
	require.NoError(t, err)
	assert.Equal(t, "binary/encrypted", string(p.Metadata[converter.MetadataEncoding]))

	plain, err := TemporalConfig{Address: "t:7233"}.ClientOptions(nil)
	require.NoError(t, err)
	assert.Nil(t, plain.Credentials)
	assert.Nil(t, plain.ConnectionOptions.TLS)
	p, err = plain.DataConverter.ToPayload("state")
	require.NoError(t, err)
	assert.Equal(t, "json/plain", string(p.Metadata[converter.MetadataEncoding]))
}

func TestLoadConnectionsNeedsOnlyKafkaAndTemporal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte("kafka: {brokers: [b:9092]}\ntemporal: {namespace: ns}\n"), 0o600))
	c, err := LoadConnections(path)
	require.NoError(t, err, "no group and no routes are needed")
	assert.Equal(t, []string{"b:9092"}, c.Kafka.Brokers)
	assert.Equal(t, "ns", c.Temporal.Namespace)
	assert.Equal(t, "3.6.0", c.Kafka.Version, "defaults applied")

	require.NoError(t, os.WriteFile(path, []byte("kafka: {brokers: ['']}\ntemporal: {api_key_file: /x}\n"), 0o600))
	_, err = LoadConnections(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "config "+path+": ")
	assert.Contains(t, err.Error(), "kafka.brokers[0]: must not be empty")
	assert.Contains(t, err.Error(), "temporal.tls.enabled: an API key is sent only over TLS")

	c, err = LoadConnections("", func(c *Config) { c.Kafka.Brokers = []string{"flag:9092"} })
	require.NoError(t, err, "flags alone")
	assert.Equal(t, []string{"flag:9092"}, c.Kafka.Brokers)
	_, err = LoadConnections("")
	require.ErrorContains(t, err, "config flags: kafka.brokers: at least one broker is required")
}

func TestCodecDecryptKeysRotateAndBadOnesNameTheField(t *testing.T) {
	dir := t.TempDir()
	writeKey := func(name string) string {
		key := make([]byte, 32)
		_, err := rand.Read(key)
		require.NoError(t, err)
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)), 0o600))
		return path
	}
	oldFile, newFile := writeKey("old.key"), writeKey("new.key")
	old, err := TemporalConfig{Codec: CodecConfig{KeyFile: oldFile, KeyID: "old"}}.DataConverter()
	require.NoError(t, err)
	written, err := old.ToPayload("before")
	require.NoError(t, err)

	rotated := TemporalConfig{Codec: CodecConfig{KeyFile: newFile, KeyID: "new", DecryptKeys: []string{"old=file:" + oldFile}}}
	dc, err := rotated.DataConverter()
	require.NoError(t, err)
	var got string
	require.NoError(t, dc.FromPayload(written, &got))
	assert.Equal(t, "before", got)

	for spec, want := range map[string]string{
		"old":                        "want ID=file:PATH or ID=env:VARIABLE",
		"old=disk:" + oldFile:        "want ID=file:PATH or ID=env:VARIABLE",
		"old=file:" + dir + "/none":  "no such file",
		"old=env:SAGABRIDGE_NO_SUCH": "SAGABRIDGE_NO_SUCH is not set",
		"new=file:" + oldFile:        `key ID "new" is given twice`,
	} {
		var problems []string
		rotated.Codec.DecryptKeys = []string{spec}
		rotated.validate(func(field, format string, args ...any) {
			problems = append(problems, field+": "+fmt.Sprintf(format, args...))
		})
		require.Len(t, problems, 1, spec)
		assert.Contains(t, problems[0], "temporal.codec.decrypt_keys[0]: ", spec)
		assert.Contains(t, problems[0], want, spec)
	}
}
