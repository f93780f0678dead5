package connect

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/config"
)

// writeCodecKey writes a random 32-byte codec key, base64 as the codec
// reads it, to dir/name and returns its path.
func writeCodecKey(t *testing.T, dir, name string) string {
	t.Helper()
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)), 0o600))
	return path
}

func TestClientOptionsCarryTheAPIKeyTLSAndCodec(t *testing.T) {
	t.Setenv("SAGABRIDGE_TEST_API_KEY", "key-from-env")
	keyFile := writeCodecKey(t, t.TempDir(), "codec.key")

	o, err := ClientOptions(config.Temporal{Address: "t:7233", Namespace: "ns", TLS: config.TLS{Enabled: true, ServerName: "t"},
		APIKeyEnv: "SAGABRIDGE_TEST_API_KEY", Codec: config.Codec{KeyFile: keyFile}}, nil)
	require.NoError(t, err)
	assert.Equal(t, "t:7233", o.HostPort)
	assert.Equal(t, "ns", o.Namespace)
	require.NotNil(t, o.ConnectionOptions.TLS)
	assert.Equal(t, "t", o.ConnectionOptions.TLS.ServerName)
	assert.NotNil(t, o.Credentials, "the API key is sent")
	p, err := o.DataConverter.ToPayload("secret saga state")
	require.NoError(t, err)
	assert.Equal(t, "binary/encrypted", string(p.Metadata[converter.MetadataEncoding]))

	plain, err := ClientOptions(config.Temporal{Address: "t:7233"}, nil)
	require.NoError(t, err)
	assert.Nil(t, plain.Credentials)
	assert.Nil(t, plain.ConnectionOptions.TLS)
	p, err = plain.DataConverter.ToPayload("state")
	require.NoError(t, err)
	assert.Equal(t, "json/plain", string(p.Metadata[converter.MetadataEncoding]))
}

func TestCodecDecryptKeysReadPayloadsOfOlderKeys(t *testing.T) {
	dir := t.TempDir()
	oldFile, newFile := writeCodecKey(t, dir, "old.key"), writeCodecKey(t, dir, "new.key")
	old, err := DataConverter(config.Temporal{Codec: config.Codec{KeyFile: oldFile, KeyID: "old"}})
	require.NoError(t, err)
	written, err := old.ToPayload("before")
	require.NoError(t, err)

	rotated := config.Temporal{Codec: config.Codec{KeyFile: newFile, KeyID: "new", DecryptKeys: []string{"old=file:" + oldFile}}}
	dc, err := DataConverter(rotated)
	require.NoError(t, err)
	var got string
	require.NoError(t, dc.FromPayload(written, &got))
	assert.Equal(t, "before", got)
}

func TestClientOptionsCompressRequestsAsConfigured(t *testing.T) {
	none, gzip := &client.GrpcCompressionNone{}, &client.GrpcCompressionGzip{}
	cases := []struct {
		name string
		t    config.Temporal
		want client.GrpcCompression
	}{
		{"unset, plaintext", config.Temporal{}, none},
		{"auto, plaintext", config.Temporal{GRPCCompression: "auto"}, none},
		{"auto, TLS", config.Temporal{GRPCCompression: "auto", TLS: config.TLS{Enabled: true}}, gzip},
		{"unset, TLS", config.Temporal{TLS: config.TLS{Enabled: true}}, gzip},
		{"gzip, plaintext", config.Temporal{GRPCCompression: "gzip"}, gzip},
		{"none, TLS", config.Temporal{GRPCCompression: "none", TLS: config.TLS{Enabled: true}}, none},
	}
	for _, c := range cases {
		c.t.Address = "t:7233"
		o, err := ClientOptions(c.t, nil)
		require.NoError(t, err, c.name)
		assert.Equal(t, c.want, o.ConnectionOptions.GrpcCompression, c.name)
	}

	_, err := ClientOptions(config.Temporal{Address: "t:7233", GRPCCompression: "zstd"}, nil)
	require.ErrorContains(t, err, "temporal.grpc_compression")
	require.ErrorContains(t, err, `"zstd"`)
}

// A worker on ClientOptions decodes signals in workflow code, megabytes at
// a time on a hot entity; its converter must pause the SDK's deadlock
// detector while it does (sagaworker.TestDataConverterLetsAnEntityDecodeSlowSignals
// shows why), with or without a codec.
func TestClientOptionsConverterPausesTheDeadlockDetector(t *testing.T) {
	keyFile := writeCodecKey(t, t.TempDir(), "codec.key")
	wrapped := workflow.DataConverterWithoutDeadlockDetection(converter.GetDefaultDataConverter())

	for name, tc := range map[string]config.Temporal{
		"plain": {Address: "t:7233"},
		"codec": {Address: "t:7233", Codec: config.Codec{KeyFile: keyFile}},
	} {
		o, err := ClientOptions(tc, nil)
		require.NoError(t, err, name)
		assert.IsType(t, wrapped, o.DataConverter, "%s: the converter is not wrapped in workflow.DataConverterWithoutDeadlockDetection", name)
	}
}

// With the codec on, failure messages and stack traces reach Temporal's
// history encrypted too (EncodeCommonAttributes): an activity's error
// ("payment declined: insufficient funds") is business data, and the
// SDK's default failure converter keeps them in clear. Without the codec
// they stay readable. (Both were in clear.)
func TestTheCodecEncryptsFailureMessages(t *testing.T) {
	keyFile := writeCodecKey(t, t.TempDir(), "codec.key")
	o, err := ClientOptions(config.Temporal{Address: "t:7233", Codec: config.Codec{KeyFile: keyFile}}, nil)
	require.NoError(t, err)
	require.NotNil(t, o.FailureConverter)
	f := o.FailureConverter.ErrorToFailure(temporal.NewApplicationError("payment declined: insufficient funds", "Declined"))
	assert.NotContains(t, f.GetMessage(), "insufficient funds")
	require.NotNil(t, f.GetEncodedAttributes())
	back := o.FailureConverter.FailureToError(f)
	assert.Contains(t, back.Error(), "insufficient funds", "decoded by a client with the key")
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, back, &appErr)
	assert.Equal(t, "Declined", appErr.Type(), "the type stays readable, for retry policies")

	plain, err := ClientOptions(config.Temporal{Address: "t:7233"}, nil)
	require.NoError(t, err)
	if plain.FailureConverter != nil {
		assert.Contains(t, plain.FailureConverter.ErrorToFailure(errors.New("readable")).GetMessage(), "readable")
	}
}

// An empty API key is refused at start, from a file or a variable (the SDK
// sent no key, and every call was refused as unauthenticated, naming
// nothing), and a key file emptied while a new key is being written keeps
// the last key, as a missing one does (it became the empty key).
func TestAnEmptyAPIKeyIsRefusedAndAnEmptiedFileKeepsTheLastKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.key")
	require.NoError(t, os.WriteFile(path, []byte("\n"), 0o600))
	_, err := ClientOptions(config.Temporal{Address: "t:7233", TLS: config.TLS{Enabled: true}, APIKeyFile: path}, nil)
	assert.EqualError(t, err, "temporal.api_key_file: the file is empty")
	t.Setenv("SAGABRIDGE_TEST_EMPTY_KEY", " ")
	_, err = ClientOptions(config.Temporal{Address: "t:7233", TLS: config.TLS{Enabled: true}, APIKeyEnv: "SAGABRIDGE_TEST_EMPTY_KEY"}, nil)
	assert.EqualError(t, err, "temporal.api_key_env: the variable is set but empty")

	require.NoError(t, os.WriteFile(path, []byte("key-1\n"), 0o600))
	k := &fileKey{path: path}
	got, err := k.read()
	require.NoError(t, err)
	require.Equal(t, "key-1", got)
	require.NoError(t, os.WriteFile(path, nil, 0o600)) // truncated, the new key not written yet
	k.readAt = time.Time{}                             // due to be read again
	got, err = k.read()
	require.NoError(t, err)
	assert.Equal(t, "key-1", got)
}

// A key file that disappears (a secret unmounted, say) is reported once,
// naming the field, while the last key stays in use, and is looked at again
// on keyReread's interval rather than on every call; its return is reported
// too. Before, nothing was logged until the key expired and every call
// was refused, and the missing file was read again on every call.
func TestAVanishedAPIKeyFileIsReportedOnceAndLookedAtOnItsInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.key")
	require.NoError(t, os.WriteFile(path, []byte("key-1\n"), 0o600))
	var logs bytes.Buffer
	k := &fileKey{path: path, log: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(&logs, nil)))}
	_, err := k.read()
	require.NoError(t, err)

	require.NoError(t, os.Remove(path))
	for range 3 {
		k.readAt = time.Time{} // due to be read again
		got, err := k.read()
		require.NoError(t, err)
		assert.Equal(t, "key-1", got)
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "temporal.api_key_file"), "reported once: %s", logs.String())
	assert.Contains(t, logs.String(), "level=WARN")
	assert.NotContains(t, logs.String(), path, "the file's path is not logged (secretname.FileError)")

	require.NoError(t, os.WriteFile(path, []byte("key-2\n"), 0o600))
	got, err := k.read()
	require.NoError(t, err)
	assert.Equal(t, "key-1", got, "the file was read again at once after a failed read")
	k.readAt = time.Time{}
	got, err = k.read()
	require.NoError(t, err)
	assert.Equal(t, "key-2", got)
	assert.Contains(t, logs.String(), "read again")
}
