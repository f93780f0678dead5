package connect

import (
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/config"
)

// A SCRAM password that SASLprep refuses (a control character, such as
// the trailing newline of a Kubernetes secret made from a file) fails the
// login, and the error must not hold the password: the SCRAM library's
// own error quotes it, and the bridge logs that error when it exits.
// (The error read "Error SASLprepping password 'S3cr3t\x01tail': ...".)
func TestARefusedSCRAMPasswordIsNotInTheError(t *testing.T) {
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		c := sarama.NewConfig()
		k := config.Kafka{SASL: config.SASL{Mechanism: mech, Username: "bridge", Password: "S3cr3t\x01tail"}}
		require.NoError(t, Secure(c, k))
		err := c.Net.SASL.SCRAMClientGeneratorFunc().Begin(c.Net.SASL.User, c.Net.SASL.Password, "")
		require.Error(t, err, mech)
		assert.NotContains(t, err.Error(), "S3cr3t", mech)
		assert.NotContains(t, err.Error(), "tail", mech)
		assert.Contains(t, err.Error(), `"bridge"`, mech)
		assert.Contains(t, err.Error(), "SASLprep", mech)
	}
}

// A password read from the environment loses a trailing newline, as one
// read from a file does: a secret made from a file (kubectl create secret
// --from-file) ends in one, which no typed password does.
func TestAPasswordFromTheEnvironmentLosesATrailingNewline(t *testing.T) {
	t.Setenv("SAGABRIDGE_TEST_KAFKA_PASSWORD", "S3cr3t\n")
	c := sarama.NewConfig()
	k := config.Kafka{SASL: config.SASL{Mechanism: "SCRAM-SHA-512", Username: "bridge", PasswordEnv: "SAGABRIDGE_TEST_KAFKA_PASSWORD"}}
	require.NoError(t, Secure(c, k))
	assert.Equal(t, "S3cr3t", c.Net.SASL.Password)
	require.NoError(t, c.Net.SASL.SCRAMClientGeneratorFunc().Begin(c.Net.SASL.User, c.Net.SASL.Password, ""))
}

// A password written where its variable's name goes is not echoed.
func TestAPasswordInPlaceOfItsVariableIsNotEchoed(t *testing.T) {
	c := sarama.NewConfig()
	err := Secure(c, config.Kafka{SASL: config.SASL{Mechanism: "SCRAM-SHA-512", Username: "u", PasswordEnv: "S3cr3t-Pa55!"}})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "S3cr3t")
	assert.Contains(t, err.Error(), "kafka.sasl.password_env")
}
