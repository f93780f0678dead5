// Package codec encrypts Temporal payloads (workflow inputs, signals,
// results, memos, query answers) with AES-256-GCM, so the events the bridge
// delivers and the state sagas keep are encrypted at rest in Temporal.
//
// Use the same key in every process that reads or writes those payloads:
// the bridge (it sends the signals and reads the memo of closed workflows),
// the workers, and the codec server that lets an operator holding the key
// read them with the Temporal CLI (`temporal ... --codec-endpoint`) or UI.
//
// An encrypted payload has metadata encoding "binary/encrypted" and
// "encryption-key-id"; its data is nonce || ciphertext of the original
// payload (serialised). Payloads without that encoding pass through Decode
// unchanged, so histories written before encryption was turned on still
// read. Search attributes are not payloads of the data converter and stay
// in clear text.
//
// The codec is a leaf: it must not import any other sagabridge package.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/sagabridge/sagabridge/internal/secretname"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// Metadata keys and values of an encrypted payload.
const (
	MetadataEncoding  = converter.MetadataEncoding
	EncodingEncrypted = "binary/encrypted"
	MetadataKeyID     = "encryption-key-id"
)

// AESGCM is a converter.PayloadCodec. Safe for concurrent use once built.
//
// It encrypts with one key and decrypts with that key or any older key
// added with WithDecryptKey, chosen by the payload's key ID. To rotate:
// give every process the new key as the key and the old one as a decrypt
// key, and drop the old key once no workflow or history still holding
// payloads it encrypted is kept (the namespace's retention).
type AESGCM struct {
	keyID string
	aead  cipher.AEAD
	older map[string]cipher.AEAD // decrypt-only keys, by key ID
}

// NewAESGCM returns a codec with a 32-byte key; keyID names the key in each
// payload, for rotation.
func NewAESGCM(key []byte, keyID string) (*AESGCM, error) {
	aead, err := newAEAD(key, keyID)
	if err != nil {
		return nil, err
	}
	return &AESGCM{keyID: keyID, aead: aead, older: map[string]cipher.AEAD{}}, nil
}

// WithDecryptKey adds an older key that decrypts payloads carrying keyID
// but never encrypts. Call it before the codec is used.
func (c *AESGCM) WithDecryptKey(key []byte, keyID string) (*AESGCM, error) {
	if _, dup := c.older[keyID]; dup || keyID == c.keyID {
		return nil, fmt.Errorf("codec: key ID %q is given twice", keyID)
	}
	aead, err := newAEAD(key, keyID)
	if err != nil {
		return nil, err
	}
	c.older[keyID] = aead
	return c, nil
}

// newAEAD checks a key and its ID and returns its AES-256-GCM.
func newAEAD(key []byte, keyID string) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("codec: the key %q must be 32 bytes (AES-256), got %d", keyID, len(key))
	}
	if keyID == "" {
		return nil, fmt.Errorf("codec: the key ID is empty")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("codec: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("codec: %w", err)
	}
	return aead, nil
}

// ParseKey decodes a key written as standard base64 (44 characters for 32
// bytes), as `head -c 32 /dev/urandom | base64` prints it.
func ParseKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("codec: the key is not base64: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("codec: the key must decode to 32 bytes, got %d", len(key))
	}
	return key, nil
}

// LoadKey reads a base64 key from the environment variable env, or from
// file when env is empty.
func LoadKey(env, file string) ([]byte, error) {
	if env != "" {
		v, err := secretname.LookupEnv(env)
		if err != nil {
			return nil, fmt.Errorf("codec: the key's variable: %w", err)
		}
		return ParseKey(v)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("codec: the key file: %w", secretname.FileError(err))
	}
	return ParseKey(string(b))
}

// ParseKeySpec reads a key given as "ID=file:PATH" or "ID=env:VARIABLE"
// (temporal.codec.decrypt_keys): its ID and the key, loaded as LoadKey does.
func ParseKeySpec(spec string) (id string, key []byte, err error) {
	// Not echoed when malformed: a key written in place of its source
	// would reach the log.
	malformed := errors.New("want ID=file:PATH or ID=env:VARIABLE (the entry is not shown: it may hold a key)")
	id, source, ok := strings.Cut(spec, "=")
	if !ok || id == "" {
		return "", nil, malformed
	}
	switch kind, where, _ := strings.Cut(source, ":"); {
	case kind == "file" && where != "":
		key, err = LoadKey("", where)
	case kind == "env" && where != "":
		key, err = LoadKey(where, "")
	default:
		return "", nil, malformed
	}
	return id, key, err
}

// Encode encrypts each payload.
func (c *AESGCM) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("codec: serialise payload: %w", err)
		}
		nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plain)+c.aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("codec: nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{MetadataEncoding: []byte(EncodingEncrypted), MetadataKeyID: []byte(c.keyID)},
			Data:     c.aead.Seal(nonce, nonce, plain, []byte(c.keyID)),
		}
	}
	return out, nil
}

// Decode decrypts each encrypted payload and passes others through.
func (c *AESGCM) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead := c.aead
		if id != c.keyID {
			older, ok := c.older[id]
			if !ok {
				return nil, fmt.Errorf("codec: payload encrypted with key %q, this codec holds %s", id, c.heldKeys())
			}
			aead = older
		}
		n := aead.NonceSize()
		if len(p.GetData()) < n {
			return nil, fmt.Errorf("codec: encrypted payload too short")
		}
		plain, err := aead.Open(nil, p.Data[:n], p.Data[n:], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("codec: decrypt with key %q: %w", id, err)
		}
		var orig commonpb.Payload
		if err := proto.Unmarshal(plain, &orig); err != nil {
			return nil, fmt.Errorf("codec: decrypted payload: %w", err)
		}
		out[i] = &orig
	}
	return out, nil
}

// DataConverter is Temporal's default data converter with c applied.
func DataConverter(c converter.PayloadCodec) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// heldKeys names the keys the codec decrypts with, for errors.
func (c *AESGCM) heldKeys() string {
	ids := []string{fmt.Sprintf("%q", c.keyID)}
	for _, id := range slices.Sorted(maps.Keys(c.older)) {
		ids = append(ids, fmt.Sprintf("%q", id))
	}
	return strings.Join(ids, ", ")
}
