package connect

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/secretname"
)

// saslMechanisms maps the accepted names to sarama's.
var saslMechanisms = map[string]sarama.SASLMechanism{
	"PLAIN":         sarama.SASLTypePlaintext,
	"SCRAM-SHA-256": sarama.SASLTypeSCRAMSHA256,
	"SCRAM-SHA-512": sarama.SASLTypeSCRAMSHA512,
}

// KafkaError wraps err, a failure to reach or log in to the brokers,
// with how the client connected (brokers, TLS, SASL mechanism and user;
// never the password) and, with SASL on, a hint: brokers often answer bad
// credentials by closing the connection, which sarama reports as EOF.
func KafkaError(k config.Kafka, err error) error {
	how := "plaintext"
	if k.TLS.Enabled {
		how = "TLS"
	}
	if k.SASL.Mechanism != "" {
		how += fmt.Sprintf(", SASL %s user %q", k.SASL.Mechanism, k.SASL.Username)
		return fmt.Errorf("connect to Kafka %v (%s): %w; check kafka.sasl (mechanism, username, password) and kafka.tls", k.Brokers, how, err)
	}
	return fmt.Errorf("connect to Kafka %v (%s): %w", k.Brokers, how, err)
}

// The warnings every program that connects logs at start when a TLS
// section accepts any certificate (insecure_skip_verify).
const (
	InsecureKafka    = "kafka.tls.insecure_skip_verify is on: the brokers' certificates are NOT verified, so anyone on the path can read and change the traffic; never use it in production"
	InsecureTemporal = "temporal.tls.insecure_skip_verify is on: the frontend's certificate is NOT verified; never use it in production"
)

// Insecure returns the warnings (InsecureKafka, InsecureTemporal) that k
// and t call for, if any.
func Insecure(k config.Kafka, t config.Temporal) []string {
	var out []string
	if k.TLS.Enabled && k.TLS.InsecureSkipVerify {
		out = append(out, InsecureKafka)
	}
	if t.TLS.Enabled && t.TLS.InsecureSkipVerify {
		out = append(out, InsecureTemporal)
	}
	return out
}

// Secure sets k's TLS and SASL settings on c. Errors name the field and
// never contain a secret.
func Secure(c *sarama.Config, k config.Kafka) error {
	if k.TLS.Enabled {
		tc, err := TLS(k.TLS, "kafka.tls")
		if err != nil {
			return err
		}
		c.Net.TLS.Enable, c.Net.TLS.Config = true, tc
	}
	s := k.SASL
	if s.Mechanism == "" {
		return nil
	}
	password, err := saslPassword(s)
	if err != nil {
		return err
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.Mechanism = saslMechanisms[s.Mechanism]
	c.Net.SASL.User, c.Net.SASL.Password = s.Username, password
	switch s.Mechanism {
	case "SCRAM-SHA-256":
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case "SCRAM-SHA-512":
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	}
	return nil
}

// TLS builds the crypto/tls configuration of t; errors name prefix's
// fields ("kafka.tls").
func TLS(t config.TLS, prefix string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} // InsecureSkipVerify: opt-in, warned about at start
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca_file: %s holds no PEM certificate", prefix, t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		pair := &keyPairFiles{certFile: t.CertFile, keyFile: t.KeyFile, prefix: prefix}
		if err := pair.load(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = pair.get
	}
	return tc, nil
}

// keyPairFiles is a client certificate and key read from files, read again
// when either file changes (at most once a second): a certificate rotated
// in its files (cert-manager, a mounted secret) is presented by the next
// connection, as the API key file is read again, where one read at start
// made every reconnection fail once the old one expired. A rotation caught
// half written (the key not yet matching) keeps the pair last read.
type keyPairFiles struct {
	certFile, keyFile, prefix string

	mu                sync.Mutex
	cert              *tls.Certificate
	checked           time.Time
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// load reads the pair; errors name the fields, and never the key file's
// path, which may be the key itself written in its place.
func (p *keyPairFiles) load() error {
	// Looked at before they are read: files replaced in between are read
	// again at the next look, not taken for the pair read.
	certMod, certSize := modified(p.certFile)
	keyMod, keySize := modified(p.keyFile)
	certPEM, err := os.ReadFile(p.certFile)
	if err != nil {
		return fmt.Errorf("%s.cert_file: %w", p.prefix, err)
	}
	keyPEM, err := os.ReadFile(p.keyFile)
	if err != nil {
		return fmt.Errorf("%s.key_file: %w", p.prefix, secretname.FileError(err))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("%s.cert_file/key_file: %w", p.prefix, err)
	}
	p.cert = &cert
	p.certMod, p.certSize, p.keyMod, p.keySize = certMod, certSize, keyMod, keySize
	return nil
}

// modified is a file's modification time and size (zero when it cannot be
// read).
func modified(path string) (time.Time, int64) {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}, 0
	}
	return fi.ModTime(), fi.Size()
}

// get is tls.Config.GetClientCertificate: the pair, read again if its
// files changed since they were last looked at, a second ago or more.
func (p *keyPairFiles) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.checked) >= keyReread {
		p.checked = time.Now()
		certMod, certSize := modified(p.certFile)
		keyMod, keySize := modified(p.keyFile)
		if !certMod.Equal(p.certMod) || !keyMod.Equal(p.keyMod) || certSize != p.certSize || keySize != p.keySize {
			old := p.cert
			if err := p.load(); err != nil {
				p.cert = old // half written, or gone: the pair last read
			}
		}
	}
	return p.cert, nil
}

// saslPassword reads the configured password source.
func saslPassword(s config.SASL) (string, error) {
	switch {
	case s.PasswordEnv != "":
		v, err := secretname.LookupEnv(s.PasswordEnv)
		if err != nil {
			return "", fmt.Errorf("kafka.sasl.password_env: %w", err)
		}
		// A secret made from a file (kubectl create secret --from-file)
		// ends in its newline, which no typed password does.
		return strings.TrimRight(v, "\r\n"), nil
	case s.PasswordFile != "":
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafka.sasl.password_file: %w", secretname.FileError(err))
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return s.Password, nil
}

// scramClient is sarama's SCRAMClient over github.com/xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (x *scramClient) Begin(user, password, authzID string) error {
	c, err := x.hash.NewClient(user, password, authzID)
	if err != nil {
		// The library's error quotes what SASLprep refused, the password
		// included; it must never reach a log.
		if password != "" && strings.Contains(err.Error(), password) {
			return fmt.Errorf("SCRAM client for user %q: the password is refused by SASLprep (RFC 4013): it holds a character SCRAM does not allow, such as a control character or a trailing newline", user)
		}
		return fmt.Errorf("SCRAM client for user %q: %w", user, err)
	}
	x.conv = c.NewConversation()
	return nil
}

func (x *scramClient) Step(challenge string) (string, error) { return x.conv.Step(challenge) }
func (x *scramClient) Done() bool                            { return x.conv.Done() }
