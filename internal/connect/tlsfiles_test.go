package connect

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
)

// writePair writes a self-signed certificate for cn and its key, returning
// the key's PEM.
func writePair(t *testing.T, certFile, keyFile, cn string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	if keyFile != "" {
		require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	}
	return string(keyPEM)
}

// presented is the common name of the certificate tc presents on a new
// connection.
func presented(t *testing.T, tc *tls.Config) string {
	t.Helper()
	require.NotNil(t, tc.GetClientCertificate)
	c, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{})
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	require.NoError(t, err)
	return leaf.Subject.CommonName
}

// A client certificate rotated in its files (cert-manager, a mounted
// secret) is what the next connection presents; one caught half written
// keeps the pair last read. (The pair was read once at start: once the old
// certificate expired, every reconnection failed until a restart.)
func TestARotatedClientCertificateIsPresentedByTheNextConnection(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, cf, kf, "old")
	tc, err := TLS(config.TLS{Enabled: true, CertFile: cf, KeyFile: kf}, "temporal.tls")
	require.NoError(t, err)
	assert.Equal(t, "old", presented(t, tc))

	writePair(t, cf, kf, "new")
	require.Eventually(t, func() bool { return presented(t, tc) == "new" }, 3*time.Second, 50*time.Millisecond,
		"a new connection still presents the certificate read at start")
}

// A rotation caught half written (the certificate replaced, its key not
// yet) keeps the pair last read, and the next look takes the whole new one.
func TestACertificateRotationCaughtHalfWrittenKeepsThePairLastRead(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, cf, kf, "old")
	p := &keyPairFiles{certFile: cf, keyFile: kf, prefix: "kafka.tls"}
	require.NoError(t, p.load())
	cn := func() string {
		p.checked = time.Time{} // look at the files now
		c, err := p.get(&tls.CertificateRequestInfo{})
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		require.NoError(t, err)
		return leaf.Subject.CommonName
	}
	writePair(t, cf, "", "half") // the certificate rotated, its key not yet
	assert.Equal(t, "old", cn())
	writePair(t, cf, kf, "new")
	assert.Equal(t, "new", cn())
}

// A private key written where its file's path goes (a variable filled from
// a Kubernetes secret) is never echoed, neither at the check of the
// configuration nor at the start. (Both errors quoted the path.)
func TestATLSKeyWrittenInPlaceOfItsPathIsNotEchoed(t *testing.T) {
	cf := filepath.Join(t.TempDir(), "c.pem")
	keyPEM := writePair(t, cf, "", "c")
	_, err := TLS(config.TLS{Enabled: true, CertFile: cf, KeyFile: keyPEM}, "temporal.tls")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "temporal.tls.key_file")
	assert.NotContains(t, err.Error(), "PRIVATE KEY")

	_, err = config.Parse([]byte("kafka: {brokers: [\"h:1\"], group: g}\ntemporal:\n  tls:\n    enabled: true\n    cert_file: " + cf + "\n    key_file: |\n" +
		indent(keyPEM) + "routes: [{topic: t, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q}]\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "temporal.tls.key_file")
	assert.NotContains(t, err.Error(), "PRIVATE KEY")
}

// indent indents every line of s by six spaces, for a YAML block scalar.
func indent(s string) string {
	return "      " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ") + "\n"
}
