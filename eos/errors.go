package eos

import (
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/IBM/sarama"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"

	"github.com/sagabridge/sagabridge/internal/kafkatxn"
	"github.com/sagabridge/sagabridge/internal/rpcerr"
)

// ErrFenced means another producer with the same transactional ID took over
// the partition (it was reassigned, or a second instance started): this
// Processor is a zombie for that partition and stops without committing.
var ErrFenced = errors.New("eos: producer fenced by a newer instance")

// ErrAlreadyRun is returned by a second call of Processor.Run; build
// another Processor to run again.
var ErrAlreadyRun = errors.New("eos: Run was already called on this Processor")

// permanentError marks a function error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err to say that retrying the record cannot help (it is
// malformed, say): the Processor dead-letters the record at once instead
// of retrying it Config.MaxAttempts times. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// outageError marks a function error that is not the record's fault.
type outageError struct{ err error }

func (e outageError) Error() string { return e.err.Error() }
func (e outageError) Unwrap() error { return e.err }

// Outage wraps err to say that the record is not at fault: a service the
// function calls is down, or refuses the Processor's own credentials or
// access. (The errors that say so by themselves need no wrapping; see
// IsOutage.) The Processor retries the record (backing off up to
// Config.RetryMax) for as long as the function says so, never counts it
// against Config.MaxAttempts and never dead-letters it: an outage waits in
// Kafka, it does not empty the input into the DLQ. Outage(nil) is nil.
func Outage(err error) error {
	if err == nil {
		return nil
	}
	return outageError{err}
}

// IsOutage reports whether the Processor treats err as an outage: it was
// wrapped by Outage, or, unless wrapped by Permanent, it says by itself
// that the function's access or reach failed, not the record (the list is
// in the package documentation).
func IsOutage(err error) bool {
	var o outageError
	return errors.As(err, &o) || (!IsPermanent(err) && accessOrReach(err))
}

// accessOrReach reports whether err, unwrapped, is about the function's
// own access (Kafka's authorization and SASL errors; gRPC's
// PermissionDenied and Unauthenticated, as a Temporal client or another
// gRPC service returns them; a Temporal namespace that is not there or not
// active here) or a service out of reach or overloaded (gRPC's Unavailable
// and ResourceExhausted, a connection refused, Kafka with no broker, no
// leader or too few in-sync replicas): never the record's fault, whether
// or not the function wrapped it in Outage. The errors of a sarama
// producer's send are read one by one (sarama.ProducerErrors hides them
// from errors.Is). A deadline exceeded is not among them: a record can
// make its call slow.
func accessOrReach(err error) bool {
	if kafkatxn.AccessDenied(err) {
		return true
	}
	err = errors.Join(err, kafkatxn.SendErrors(err)) // as it is, and a send's errors one by one
	for _, kafka := range []error{
		sarama.ErrOutOfBrokers, sarama.ErrNotConnected,
		sarama.ErrLeaderNotAvailable, sarama.ErrNotLeaderForPartition, sarama.ErrBrokerNotAvailable,
		sarama.ErrNotEnoughReplicas, sarama.ErrNotEnoughReplicasAfterAppend,
	} {
		if errors.Is(err, kafka) {
			return true
		}
	}
	var (
		nsNotFound  *serviceerror.NamespaceNotFound
		nsNotActive *serviceerror.NamespaceNotActive
		nsInvalid   *serviceerror.NamespaceInvalidState
	)
	if errors.As(err, &nsNotFound) || errors.As(err, &nsNotActive) || errors.As(err, &nsInvalid) {
		return true
	}
	switch rpcerr.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.Unavailable:
		return true
	case codes.ResourceExhausted: // overloaded, unless the record made a message too large (compressed or not)
		return !strings.Contains(err.Error(), "larger than max")
	}
	var op *net.OpError
	return (errors.As(err, &op) && op.Op == "dial") || errors.Is(err, syscall.ECONNREFUSED)
}

// isFenced and isStaleMember classify transaction errors; see kafkatxn.
var (
	isFenced      = kafkatxn.Fenced
	isStaleMember = kafkatxn.StaleMember
)
