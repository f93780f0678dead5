package kafkatxn

import (
	"errors"

	"github.com/IBM/sarama"
)

// accessErrors are Kafka's answers that refuse the client's own access:
// its authentication or its authorization.
var accessErrors = []error{
	sarama.ErrTopicAuthorizationFailed, sarama.ErrGroupAuthorizationFailed, sarama.ErrClusterAuthorizationFailed,
	sarama.ErrTransactionalIDAuthorizationFailed, sarama.ErrSASLAuthenticationFailed,
	sarama.ErrUnsupportedSASLMechanism, sarama.ErrIllegalSASLState, sarama.ErrDelegationTokenAuthorizationFailed,
}

// AccessDenied reports whether err, a send's included (SendErrors), says
// Kafka refused the client's own access: a fault of its set-up (an ACL, a
// credential), never of the record it was writing.
func AccessDenied(err error) bool {
	err = errors.Join(err, SendErrors(err))
	for _, denied := range accessErrors {
		if errors.Is(err, denied) {
			return true
		}
	}
	return false
}
