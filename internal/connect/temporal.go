package connect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/codec"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/secretname"
)

// DataConverter is the payload converter the configuration asks for: the
// default one, with AES-256-GCM encryption when temporal.codec has a key.
func DataConverter(t config.Temporal) (converter.DataConverter, error) {
	c, err := PayloadCodec(t)
	if err != nil || c == nil {
		return converter.GetDefaultDataConverter(), err
	}
	return codec.DataConverter(c), nil
}

// PayloadCodec is the temporal.codec encryption, or nil when it is off.
func PayloadCodec(t config.Temporal) (converter.PayloadCodec, error) {
	if t.Codec.KeyEnv == "" && t.Codec.KeyFile == "" {
		return nil, nil
	}
	key, err := codec.LoadKey(t.Codec.KeyEnv, t.Codec.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("temporal.codec: %w", err)
	}
	c, err := codec.NewAESGCM(key, cmp.Or(t.Codec.KeyID, config.DefaultKeyID))
	if err != nil {
		return nil, err
	}
	for i, spec := range t.Codec.DecryptKeys {
		id, key, err := codec.ParseKeySpec(spec)
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
// address, namespace, TLS or mutual TLS, API key, gRPC compression and
// data converter (DataConverter's, its decoding not counted by the SDK's
// workflow deadlock detector), and with the codec a failure converter that
// encrypts failure messages and stack traces. Errors name the field and never hold a secret.
func ClientOptions(t config.Temporal, logger sdklog.Logger) (client.Options, error) {
	o := client.Options{HostPort: t.Address, Namespace: t.Namespace, Logger: logger}
	gzip, err := t.Gzip()
	if err != nil {
		return o, fmt.Errorf("temporal.grpc_compression: %w", err)
	}
	if gzip {
		o.ConnectionOptions.GrpcCompression = &client.GrpcCompressionGzip{}
	} else {
		o.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	}
	if t.TLS.Enabled {
		tc, err := TLS(t.TLS, "temporal.tls")
		if err != nil {
			return o, err
		}
		o.ConnectionOptions.TLS = tc
	}
	switch {
	case t.APIKeyEnv != "":
		key, err := secretname.LookupEnv(t.APIKeyEnv)
		if err != nil {
			return o, fmt.Errorf("temporal.api_key_env: %w", err)
		}
		if strings.TrimSpace(key) == "" { // the SDK would send no key at all
			return o, errors.New("temporal.api_key_env: the variable is set but empty")
		}
		o.Credentials = client.NewAPIKeyStaticCredentials(strings.TrimSpace(key))
	case t.APIKeyFile != "":
		key := &fileKey{path: t.APIKeyFile, log: logger}
		if _, err := key.read(); err != nil {
			return o, err
		}
		o.Credentials = client.NewAPIKeyDynamicCredentials(func(context.Context) (string, error) { return key.read() })
	}
	dc, err := DataConverter(t)
	if err != nil {
		return o, err
	}
	// A worker on these options decodes signals inside workflow code; the
	// SDK's deadlock detector is paused while it does (see
	// sagaworker.DataConverter). Outside a workflow the wrapper does nothing.
	o.DataConverter = workflow.DataConverterWithoutDeadlockDetection(dc)
	if t.Codec.KeyEnv != "" || t.Codec.KeyFile != "" {
		// Failure messages and stack traces are business data too ("payment
		// declined: ..."): encrypted as payloads are, readable through the
		// codec server. Failure types stay in clear for retry policies.
		o.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter: o.DataConverter, EncodeCommonAttributes: true,
		})
	}
	return o, nil
}

// fileKey reads an API key from a file, again at most once a second, so a
// key rotated in the file (a mounted Kubernetes secret, say) is used
// without a restart. A file that cannot be read once a key was keeps that
// key, and is logged once until it is read again.
type fileKey struct {
	path string
	log  sdklog.Logger // nil: nothing is logged

	mu      sync.Mutex
	key     string
	readAt  time.Time
	failing bool // the last read failed and was reported
}

// keyReread is how long a key read from the file is used before the file
// is read again; a client certificate's files are looked at as often
// (keyPairFiles).
const keyReread = time.Second

func (k *fileKey) read() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key != "" && time.Since(k.readAt) < keyReread {
		return k.key, nil
	}
	b, err := os.ReadFile(k.path)
	key := strings.TrimSpace(string(b))
	if err == nil && key == "" {
		err = errors.New("the file is empty") // the SDK would send no key at all
	}
	if err != nil {
		err = fmt.Errorf("temporal.api_key_file: %w", secretname.FileError(err))
		if k.key == "" {
			return "", err
		}
		// A rotation in progress (missing, or truncated and not yet
		// written), or a secret unmounted: keep the last key, look again
		// on the same interval, and say so once.
		if !k.failing && k.log != nil {
			k.log.Warn("the API key file cannot be read; the last key read stays in use", "error", err)
		}
		k.failing, k.readAt = true, time.Now()
		return k.key, nil
	}
	if k.failing && k.log != nil {
		k.log.Info("the API key file is read again")
	}
	k.key, k.readAt, k.failing = key, time.Now(), false
	return k.key, nil
}
