package bridge

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"

	"github.com/sagabridge/sagabridge/codec"
)

// validate checks the temporal section's security settings.
func (t TemporalConfig) validate(bad func(field, format string, args ...any)) {
	t.TLS.validate("temporal.tls", bad)
	if t.APIKeyEnv != "" && t.APIKeyFile != "" {
		bad("temporal.api_key_env", "give at most one of api_key_env and api_key_file")
	}
	if (t.APIKeyEnv != "" || t.APIKeyFile != "") && !t.TLS.Enabled {
		bad("temporal.tls.enabled", "an API key is sent only over TLS; enable temporal.tls")
	}
	if t.APIKeyEnv != "" {
		if _, ok := os.LookupEnv(t.APIKeyEnv); !ok {
			bad("temporal.api_key_env", "the environment variable %s is not set", t.APIKeyEnv)
		}
	}
	if t.APIKeyFile != "" {
		if _, err := os.Stat(t.APIKeyFile); err != nil {
			bad("temporal.api_key_file", "%v", err)
		}
	}
	c := t.Codec
	switch {
	case c.KeyEnv != "" && c.KeyFile != "":
		bad("temporal.codec.key_env", "give at most one of key_env and key_file")
	case c.KeyEnv != "" || c.KeyFile != "":
		if _, err := codec.LoadKey(c.KeyEnv, c.KeyFile); err != nil {
			field := "temporal.codec.key_file"
			if c.KeyEnv != "" {
				field = "temporal.codec.key_env"
			}
			bad(field, "%v", err)
		}
	case c.KeyID != "":
		bad("temporal.codec.key_id", "is set but neither key_env nor key_file is")
	}
	if len(c.DecryptKeys) > 0 && c.KeyEnv == "" && c.KeyFile == "" {
		bad("temporal.codec.decrypt_keys", "is set but neither key_env nor key_file is")
	}
	seen := map[string]bool{cmp.Or(c.KeyID, defaultKeyID): true}
	for i, spec := range c.DecryptKeys {
		field := fmt.Sprintf("temporal.codec.decrypt_keys[%d]", i)
		id, _, err := loadDecryptKey(spec)
		switch {
		case err != nil:
			bad(field, "%v", err)
		case seen[id]:
			bad(field, "key ID %q is given twice", id)
		}
		seen[id] = true
	}
}

// defaultKeyID names the key when temporal.codec.key_id is empty.
const defaultKeyID = "default"

// loadDecryptKey reads one temporal.codec.decrypt_keys entry,
// "ID=file:PATH" or "ID=env:VARIABLE".
func loadDecryptKey(spec string) (id string, key []byte, err error) {
	id, source, ok := strings.Cut(spec, "=")
	if !ok || id == "" {
		return "", nil, fmt.Errorf("%q: want ID=file:PATH or ID=env:VARIABLE", spec)
	}
	switch kind, where, _ := strings.Cut(source, ":"); {
	case kind == "file" && where != "":
		key, err = codec.LoadKey("", where)
	case kind == "env" && where != "":
		key, err = codec.LoadKey(where, "")
	default:
		return id, nil, fmt.Errorf("%q: want ID=file:PATH or ID=env:VARIABLE", spec)
	}
	return id, key, err
}

// DataConverter is the payload converter the configuration asks for: the
// default one, with AES-256-GCM encryption when temporal.codec has a key.
func (t TemporalConfig) DataConverter() (converter.DataConverter, error) {
	c, err := t.PayloadCodec()
	if err != nil || c == nil {
		return converter.GetDefaultDataConverter(), err
	}
	return codec.DataConverter(c), nil
}

// PayloadCodec is the temporal.codec encryption, or nil when it is off.
func (t TemporalConfig) PayloadCodec() (converter.PayloadCodec, error) {
	if t.Codec.KeyEnv == "" && t.Codec.KeyFile == "" {
		return nil, nil
	}
	key, err := codec.LoadKey(t.Codec.KeyEnv, t.Codec.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("temporal.codec: %w", err)
	}
	c, err := codec.NewAESGCM(key, cmp.Or(t.Codec.KeyID, defaultKeyID))
	if err != nil {
		return nil, err
	}
	for i, spec := range t.Codec.DecryptKeys {
		id, key, err := loadDecryptKey(spec)
		if err == nil {
			_, err = c.WithDecryptKey(key, id)
		}
		if err != nil {
			return nil, fmt.Errorf("temporal.codec.decrypt_keys[%d]: %w", i, err)
		}
	}
	return c, nil
}

// ClientOptions are the Temporal client options for this configuration:
// address, namespace, TLS or mutual TLS, API key and data converter. Errors
// name the field and never hold a secret.
func (t TemporalConfig) ClientOptions(logger sdklog.Logger) (client.Options, error) {
	o := client.Options{HostPort: t.Address, Namespace: t.Namespace, Logger: logger}
	if t.TLS.Enabled {
		tc, err := t.TLS.config("temporal.tls")
		if err != nil {
			return o, err
		}
		o.ConnectionOptions.TLS = tc
	}
	switch {
	case t.APIKeyEnv != "":
		key, ok := os.LookupEnv(t.APIKeyEnv)
		if !ok {
			return o, fmt.Errorf("temporal.api_key_env: the environment variable %s is not set", t.APIKeyEnv)
		}
		o.Credentials = client.NewAPIKeyStaticCredentials(strings.TrimSpace(key))
	case t.APIKeyFile != "":
		b, err := os.ReadFile(t.APIKeyFile)
		if err != nil {
			return o, fmt.Errorf("temporal.api_key_file: %w", err)
		}
		o.Credentials = client.NewAPIKeyStaticCredentials(strings.TrimSpace(string(b)))
	}
	dc, err := t.DataConverter()
	if err != nil {
		return o, err
	}
	o.DataConverter = dc
	return o, nil
}

// Connections are the kafka and temporal sections of a bridge
// configuration file: what cmd/worker needs to reach the same cluster
// with the same security and payload encryption.
type Connections struct {
	Kafka    KafkaConfig
	Temporal TemporalConfig
}

// LoadConnections reads the kafka and temporal sections of the bridge
// configuration at path (the other sections are parsed, so unknown fields
// are still errors, but not required), applies overrides (flags), fills the
// defaults and checks them. An empty path reads no file: the defaults and
// the overrides. Errors name the file and the field.
func LoadConnections(path string, overrides ...Override) (Connections, error) {
	name, data := "flags", []byte(nil)
	if path != "" {
		name = path
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return Connections{}, fmt.Errorf("read config: %w", err)
		}
	}
	cfg, err := decodeConfig(data, overrides)
	if err != nil {
		return Connections{}, fmt.Errorf("config %s: %w", name, err)
	}
	var errs []error
	cfg.validateConnections(func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	})
	if err := errors.Join(errs...); err != nil {
		return Connections{}, fmt.Errorf("config %s: %w", name, err)
	}
	return Connections{Kafka: cfg.Kafka, Temporal: cfg.Temporal}, nil
}
