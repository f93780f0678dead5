// Package rpcerr reads the gRPC status code an error carries, through
// wrapping, whether it is a gRPC status error or one of the Temporal API's
// service errors (which carry a status but are no status error). The
// bridge's error classes and the eos Processor's outages both go by it.
package rpcerr

import (
	"errors"

	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Code is the gRPC status code err carries, Unknown if none.
func Code(err error) codes.Code {
	var se serviceerror.ServiceError
	if errors.As(err, &se) {
		return se.Status().Code()
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unknown
}
