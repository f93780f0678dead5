package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// TLSConfig is TLS to the Kafka brokers (kafka.tls) or to the Temporal
// frontend (temporal.tls).
type TLSConfig struct {
	// Enabled turns TLS on. Optional, default false; setting any file
	// below requires it.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the servers'
	// certificates. Optional, default the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key, for
	// servers that require mutual TLS (Temporal Cloud's mTLS, for one).
	// Optional; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name to verify the servers' certificates against.
	// Optional, default the host of each address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. Never in
	// production; the bridge logs a warning at start. Optional, default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// KafkaSASLConfig is SASL authentication to the brokers.
type KafkaSASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty turns SASL
	// off. Use PLAIN only over TLS.
	Mechanism string `yaml:"mechanism"`
	// Username is the SASL user. Required with a mechanism.
	Username string `yaml:"username"`
	// The password comes from exactly one of: PasswordEnv (the name of an
	// environment variable that holds it), PasswordFile (a file whose
	// content, without a trailing newline, is it) or Password (inline;
	// keep such a file secret). Never logged or printed.
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	Password     string `yaml:"password"`
}

// saslMechanisms maps the accepted names to sarama's.
var saslMechanisms = map[string]sarama.SASLMechanism{
	"PLAIN":         sarama.SASLTypePlaintext,
	"SCRAM-SHA-256": sarama.SASLTypeSCRAMSHA256,
	"SCRAM-SHA-512": sarama.SASLTypeSCRAMSHA512,
}

// validate checks a TLS section named prefix ("kafka.tls").
func (t TLSConfig) validate(prefix string, bad func(field, format string, args ...any)) {
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		bad(prefix+".enabled", "must be true when other %s fields are set", prefix)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad(prefix+".cert_file", "cert_file and key_file go together")
	}
	for field, path := range map[string]string{prefix + ".ca_file": t.CAFile, prefix + ".cert_file": t.CertFile, prefix + ".key_file": t.KeyFile} {
		if path != "" {
			if _, err := os.Stat(path); err != nil {
				bad(field, "%v", err)
			}
		}
	}
}

// validateSecurity checks kafka.tls and kafka.sasl; bad names the field.
func (k KafkaConfig) validateSecurity(bad func(field, format string, args ...any)) {
	t := k.TLS
	t.validate("kafka.tls", bad)
	s := k.SASL
	if s.Mechanism == "" {
		if s.Username != "" || s.Password != "" || s.PasswordEnv != "" || s.PasswordFile != "" {
			bad("kafka.sasl.mechanism", "is required when other kafka.sasl fields are set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return
	}
	if _, ok := saslMechanisms[s.Mechanism]; !ok {
		bad("kafka.sasl.mechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)
	}
	if s.Username == "" {
		bad("kafka.sasl.username", "is required with a SASL mechanism")
	}
	sources := 0
	for _, v := range []string{s.Password, s.PasswordEnv, s.PasswordFile} {
		if v != "" {
			sources++
		}
	}
	if sources != 1 {
		bad("kafka.sasl.password", "give exactly one of password_env, password_file and password (got %d)", sources)
	}
	if s.PasswordEnv != "" {
		if _, ok := os.LookupEnv(s.PasswordEnv); !ok {
			bad("kafka.sasl.password_env", "the environment variable %s is not set", s.PasswordEnv)
		}
	}
	if s.PasswordFile != "" {
		if _, err := os.Stat(s.PasswordFile); err != nil {
			bad("kafka.sasl.password_file", "%v", err)
		}
	}
	if s.Mechanism == "PLAIN" && !t.Enabled {
		bad("kafka.sasl.mechanism", "PLAIN sends the password in clear text; enable kafka.tls")
	}
}

// ConnectError wraps err, a failure to reach or log in to the brokers,
// with how the bridge connected (brokers, TLS, SASL mechanism and user;
// never the password) and, with SASL on, a hint: brokers often answer bad
// credentials by closing the connection, which sarama reports as EOF.
func (k KafkaConfig) ConnectError(err error) error {
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

// applySecurity sets TLS and SASL on c from k. Errors name the field and
// never contain a secret.
// Secure applies k's TLS and SASL settings to c, for Kafka clients the
// bridge does not configure itself (the DLQ tool's).
func (k KafkaConfig) Secure(c *sarama.Config) error { return applySecurity(c, k) }

func applySecurity(c *sarama.Config, k KafkaConfig) error {
	if k.TLS.Enabled {
		tc, err := k.TLS.config("kafka.tls")
		if err != nil {
			return err
		}
		c.Net.TLS.Enable, c.Net.TLS.Config = true, tc
	}
	s := k.SASL
	if s.Mechanism == "" {
		return nil
	}
	password, err := s.password()
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

// config builds the crypto/tls configuration; errors name prefix's fields.
func (t TLSConfig) config(prefix string) (*tls.Config, error) {
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
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.cert_file/key_file: %w", prefix, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// password reads the configured password source.
func (s KafkaSASLConfig) password() (string, error) {
	switch {
	case s.PasswordEnv != "":
		v, ok := os.LookupEnv(s.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("kafka.sasl.password_env: the environment variable %s is not set", s.PasswordEnv)
		}
		return v, nil
	case s.PasswordFile != "":
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafka.sasl.password_file: %w", err)
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
		return fmt.Errorf("SCRAM client for user %q: %w", user, err)
	}
	x.conv = c.NewConversation()
	return nil
}

func (x *scramClient) Step(challenge string) (string, error) { return x.conv.Step(challenge) }
func (x *scramClient) Done() bool                            { return x.conv.Done() }
