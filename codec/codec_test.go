package codec

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func TestRoundTripThroughTheDataConverter(t *testing.T) {
	c, err := NewAESGCM(newKey(t), "k1")
	require.NoError(t, err)
	dc := DataConverter(c)
	type state struct {
		Status string `json:"status"`
		Cents  int64  `json:"cents"`
	}
	in := state{Status: "compensated", Cents: 4200}
	p, err := dc.ToPayload(in)
	require.NoError(t, err)
	assert.Equal(t, EncodingEncrypted, string(p.Metadata[MetadataEncoding]))
	assert.Equal(t, "k1", string(p.Metadata[MetadataKeyID]))
	assert.False(t, bytes.Contains(p.Data, []byte("compensated")), "the payload is encrypted")
	var out state
	require.NoError(t, dc.FromPayload(p, &out))
	assert.Equal(t, in, out)
}

func TestEachEncodingUsesAFreshNonce(t *testing.T) {
	c, err := NewAESGCM(newKey(t), "k1")
	require.NoError(t, err)
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}
	a, err := c.Encode([]*commonpb.Payload{p})
	require.NoError(t, err)
	b, err := c.Encode([]*commonpb.Payload{p})
	require.NoError(t, err)
	assert.NotEqual(t, a[0].Data, b[0].Data)
}

func TestDecodeRejectsAnotherKeyAndTampering(t *testing.T) {
	c1, err := NewAESGCM(newKey(t), "k1")
	require.NoError(t, err)
	c2, err := NewAESGCM(newKey(t), "k1")
	require.NoError(t, err)
	enc, err := c1.Encode([]*commonpb.Payload{{Data: []byte("secret")}})
	require.NoError(t, err)
	_, err = c2.Decode(enc)
	require.ErrorContains(t, err, "decrypt with key \"k1\"")

	other, err := NewAESGCM(newKey(t), "k2")
	require.NoError(t, err)
	_, err = other.Decode(enc)
	require.ErrorContains(t, err, `encrypted with key "k1", this codec holds "k2"`)

	tampered := proto.Clone(enc[0]).(*commonpb.Payload)
	tampered.Data[len(tampered.Data)-1] ^= 1
	_, err = c1.Decode([]*commonpb.Payload{tampered})
	require.Error(t, err)
}

func TestPlainPayloadsPassThrough(t *testing.T) {
	c, err := NewAESGCM(newKey(t), "k1")
	require.NoError(t, err)
	plain := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`{"a":1}`)}
	out, err := c.Decode([]*commonpb.Payload{plain})
	require.NoError(t, err)
	assert.True(t, proto.Equal(plain, out[0]), "histories from before encryption still read")
}

func TestKeysAreCheckedAndNamed(t *testing.T) {
	_, err := NewAESGCM(make([]byte, 16), "k")
	require.ErrorContains(t, err, "must be 32 bytes")
	_, err = ParseKey("not base64!")
	require.ErrorContains(t, err, "not base64")
	_, err = ParseKey(base64.StdEncoding.EncodeToString(make([]byte, 16)))
	require.ErrorContains(t, err, "must decode to 32 bytes, got 16")
	k, err := ParseKey(base64.StdEncoding.EncodeToString(newKey(t)) + "\n")
	require.NoError(t, err)
	assert.Len(t, k, 32)
	t.Setenv("SAGABRIDGE_TEST_CODEC_KEY", base64.StdEncoding.EncodeToString(k))
	got, err := LoadKey("SAGABRIDGE_TEST_CODEC_KEY", "")
	require.NoError(t, err)
	assert.Equal(t, k, got)
	_, err = LoadKey("SAGABRIDGE_TEST_UNSET_KEY", "")
	require.ErrorContains(t, err, "SAGABRIDGE_TEST_UNSET_KEY is not set")
}

func TestRotationDecryptsWithOlderKeysAndEncryptsWithTheNewOne(t *testing.T) {
	oldKey, rotatedKey := newKey(t), newKey(t)
	old, err := NewAESGCM(oldKey, "2025-q4")
	require.NoError(t, err)
	written, err := DataConverter(old).ToPayload("state written before the rotation")
	require.NoError(t, err)

	rotated, err := NewAESGCM(rotatedKey, "2026-q1")
	require.NoError(t, err)
	_, err = rotated.WithDecryptKey(oldKey, "2025-q4")
	require.NoError(t, err)
	var got string
	require.NoError(t, DataConverter(rotated).FromPayload(written, &got), "an older key still decrypts")
	assert.Equal(t, "state written before the rotation", got)
	fresh, err := DataConverter(rotated).ToPayload("new state")
	require.NoError(t, err)
	assert.Equal(t, "2026-q1", string(fresh.Metadata[MetadataKeyID]), "the new key encrypts")

	onlyNew, err := NewAESGCM(rotatedKey, "2026-q1")
	require.NoError(t, err)
	err = DataConverter(onlyNew).FromPayload(written, &got)
	require.Error(t, err, "without the old key the old payload cannot be read")
	assert.Contains(t, err.Error(), `encrypted with key "2025-q4", this codec holds "2026-q1"`)

	_, err = rotated.WithDecryptKey(newKey(t), "2025-q4")
	assert.ErrorContains(t, err, "given twice")
	wrong, err := NewAESGCM(rotatedKey, "2026-q1")
	require.NoError(t, err)
	_, err = wrong.WithDecryptKey(newKey(t), "2025-q4") // the right ID, the wrong key
	require.NoError(t, err)
	err = DataConverter(wrong).FromPayload(written, &got)
	assert.ErrorContains(t, err, `decrypt with key "2025-q4"`)
}

// A decrypt_keys entry written as the key itself (ID=<base64 key>, next to
// key_id a natural guess, or the key alone) is refused without echoing any
// of it, its would-be ID included (a key alone ends in "=", so what comes
// before it is the key): the error reaches the log, and a key is only ever
// read from a file or a variable. The caller names the entry by its index.
// (The error quoted the whole entry, key included.)
func TestAMistypedKeySpecIsNotEchoed(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(newKey(t))
	for _, spec := range []string{"k1=" + key, key, "=" + key, "k1=file:", "k1=env:"} {
		_, _, err := ParseKeySpec(spec)
		require.Error(t, err, spec)
		assert.NotContains(t, err.Error(), key[:12], spec)
		assert.Contains(t, err.Error(), "want ID=file:PATH or ID=env:VARIABLE", spec)
	}
}

// A secret written where the name of its variable or file goes
// (key_env: <the key>, decrypt_keys "old=env:<the key>", password_env:
// <the password>) is not echoed by the error that says it names nothing:
// a variable name has only letters, digits and '_', and a key file is not
// named like a key. (The errors read "the environment variable <key> is
// not set" and "open <key>: no such file".)
func TestASecretInPlaceOfItsSourceIsNotEchoed(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(newKey(t))
	for _, c := range []struct{ env, file string }{{key, ""}, {"", key}} {
		_, err := LoadKey(c.env, c.file)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), key[:12])
	}
	for _, spec := range []string{"old=env:" + key, "old=file:" + key} {
		_, _, err := ParseKeySpec(spec)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), key[:12], spec)
	}
	_, err := LoadKey("SAGABRIDGE_TEST_UNSET_KEY", "")
	assert.ErrorContains(t, err, "SAGABRIDGE_TEST_UNSET_KEY is not set", "a real variable name is still named")
}
