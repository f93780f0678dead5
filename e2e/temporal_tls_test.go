package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.yaml.in/yaml/v3"

	"github.com/sagabridge/sagabridge/activities"
	"github.com/sagabridge/sagabridge/codec"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/examples/saga"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/devstack"
)

// pki is a fresh test CA with a server certificate for 127.0.0.1 and a
// client certificate; the CA and the client's certificate and key are
// written to files.
type pki struct {
	caFile, certFile, keyFile string
	serverCert                tls.Certificate
	clientCAs                 *x509.CertPool
}

// serverTLS is the server side; with requireClientCert, mutual TLS.
func (p pki) serverTLS(requireClientCert bool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{p.serverCert}}
	if requireClientCert {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, p.clientCAs
	}
	return c
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sagabridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprintf("sagabridge test %d", serial)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		return der, key
	}
	srvDER, srvKey := issue(2, x509.ExtKeyUsageServerAuth)
	cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return path
	}
	cliKeyDER, err := x509.MarshalECPrivateKey(cliKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pki{
		caFile:     write("ca.pem", "CERTIFICATE", caDER),
		certFile:   write("client.pem", "CERTIFICATE", cliDER),
		keyFile:    write("client-key.pem", "EC PRIVATE KEY", cliKeyDER),
		serverCert: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
		clientCAs:  pool,
	}
}

// startTLSProxy terminates TLS (with client certificates required) on a
// free port and forwards each connection to target in plaintext: the
// Temporal CLI's dev server cannot serve TLS itself. It stops with the test.
func startTLSProxy(t *testing.T, target string, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer in.Close()
				if err := in.(*tls.Conn).Handshake(); err != nil {
					return // no or untrusted client certificate
				}
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				<-done
			})
		}
	})
	return ln.Addr().String()
}

// The bridge binary and a worker reach Temporal only over mutual TLS, with
// every payload encrypted by the AES-GCM codec: the sagas complete; the
// history holds ciphertext, which a client without the key cannot read;
// `bridge codec-server` lets the real Temporal CLI show the state to an
// operator who has the key; a client without a certificate is refused.
func TestTemporalOverMutualTLSWithEncryptedPayloads(t *testing.T) {
	e := newEnv(t, 2)
	e.stopWorker() // the plain worker cannot read encrypted signals
	p := newPKI(t)
	proxy := startTLSProxy(t, stack.Temporal.Address, p.serverTLS(true))

	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "codec.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
	tcfg := config.Temporal{
		Address: proxy, Namespace: "default",
		TLS:   config.TLS{Enabled: true, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile},
		Codec: config.Codec{KeyFile: keyFile, KeyID: "e2e"},
	}

	// The worker, through the proxy, with the codec.
	opts, err := connect.ClientOptions(tcfg, quietLogger())
	require.NoError(t, err)
	wc, err := client.Dial(opts)
	require.NoError(t, err, "mutual TLS through the proxy")
	t.Cleanup(wc.Close)
	w := worker.New(wc, e.taskQueue, worker.Options{MaxConcurrentWorkflowTaskPollers: 8})
	saga.RegisterWith(w, e.acts, &activities.Publisher{Producer: e.outcomes})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	temporalSection := map[string]any{
		"address": proxy, "namespace": "default",
		"tls":   map[string]any{"enabled": true, "ca_file": p.caFile, "cert_file": p.certFile, "key_file": p.keyFile},
		"codec": map[string]any{"key_file": keyFile, "key_id": "e2e"},
	}
	var out syncBuffer
	proc := e.startBridgeProcessWith(e.topic, proxy, map[string]any{"temporal": temporalSection}, &out)
	orders := saga.Orders(e.id+"-", 6, 5)
	at := e.produce(orders)
	for _, o := range orders {
		var st saga.State
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return wc.GetWorkflow(ctx, saga.WorkflowID(o.ID), "").Get(ctx, &st) == nil
		}, 90*time.Second, 200*time.Millisecond, "order %s never finished; bridge output:\n%s", o.ID, lastLines(out.String(), 20))
		assertOutcome(t, o, st, at[o.ID])
	}
	require.NoError(t, proc.Stop(20*time.Second))

	// At rest: the signal that carried the first order's events is ciphertext.
	o := orders[0]
	iter := e.tc.GetWorkflowHistory(context.Background(), saga.WorkflowID(o.ID), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	signals := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
			signals++
			for _, pl := range a.GetInput().GetPayloads() {
				assert.Equal(t, codec.EncodingEncrypted, string(pl.GetMetadata()["encoding"]))
				assert.False(t, bytes.Contains(pl.GetData(), []byte(o.ID)), "the order ID is in clear text in the history")
			}
		}
	}
	require.Positive(t, signals)
	t.Logf("%d signals of %s, every payload encrypted", signals, saga.WorkflowID(o.ID))
	var plain saga.State
	assert.Error(t, e.tc.GetWorkflow(context.Background(), saga.WorkflowID(o.ID), "").Get(context.Background(), &plain),
		"a client without the key cannot read the result")

	// The operator's view: the real CLI through the codec server.
	cfgPath := filepath.Join(t.TempDir(), "bridge.yaml")
	data, err := yaml.Marshal(map[string]any{"kafka": map[string]any{"brokers": stack.Kafka.Brokers, "group": e.topic}, "temporal": temporalSection})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgPath, data, 0o600))
	ports, err := devstack.FreePorts(1)
	require.NoError(t, err)
	codecAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	var codecOut syncBuffer
	cs, err := devstack.StartProcess(&codecOut, bridgeBin, "codec-server", "-config", cfgPath, "-listen", codecAddr)
	require.NoError(t, err)
	t.Cleanup(cs.Kill)
	waitListening(t, codecAddr, &codecOut)
	query := func(extra ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := append([]string{"workflow", "query", "--address", proxy, "--tls",
			"--tls-ca-path", p.caFile, "--tls-cert-path", p.certFile, "--tls-key-path", p.keyFile,
			"--workflow-id", saga.WorkflowID(o.ID), "--type", saga.QueryState, "--output", "json"}, extra...)
		return exec.CommandContext(ctx, stack.Temporal.Bin, args...).CombinedOutput()
	}
	raw, err := query("--codec-endpoint", "http://"+codecAddr)
	require.NoError(t, err, "temporal workflow query with the codec: %s", raw)
	var resp struct {
		QueryResult []saga.State `json:"queryResult"`
	}
	require.NoError(t, json.Unmarshal(raw, &resp), "CLI output: %s", raw)
	require.Len(t, resp.QueryResult, 1)
	assertOutcome(t, o, resp.QueryResult[0], at[o.ID])
	t.Logf("with the codec server the CLI shows: %s", bytes.Join(bytes.Fields(raw), []byte(" ")))
	raw, err = query()
	t.Logf("without it (err %v): %s", err, bytes.Join(bytes.Fields(raw), []byte(" ")))
	assert.NotContains(t, string(raw), `"status"`, "without the codec the CLI shows ciphertext, not the state")

	// mTLS is required: a client without a certificate is refused.
	noCert := tcfg
	noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
	o2, err := connect.ClientOptions(noCert, quietLogger())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = client.DialContext(ctx, o2)
	require.Error(t, err, "a client without a certificate got through")
}
