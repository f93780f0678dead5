package bridge

// The bridge's sentinel and typed errors.

import (
	"errors"
	"fmt"
	"time"

	"github.com/sagabridge/sagabridge/dlq"
)

// ErrWorkflowClosed says a workflow ID has closed and, under the bridge's
// REJECT_DUPLICATE reuse policy, will not start again. A Temporal
// implementation returns it (wrapped) from SignalWithStart.
var ErrWorkflowClosed = errors.New("workflow closed")

// ErrAlreadyRun is returned by a second call of Bridge.Run: a Bridge's
// counters, windows and group session belong to one run; build another
// Bridge to run again.
var ErrAlreadyRun = errors.New("bridge: Run was already called on this Bridge")

// PoisonError says a record can never be delivered as it is: it goes to the
// DLQ with Class, and the partition moves on.
type PoisonError struct {
	Class dlq.Class
	Err   error
}

// Error says the class and the cause.
func (e *PoisonError) Error() string { return string(e.Class) + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *PoisonError) Unwrap() error { return e.Err }

// poison returns a *PoisonError of class with a formatted cause.
func poison(class dlq.Class, format string, args ...any) error {
	return &PoisonError{Class: class, Err: fmt.Errorf(format, args...)}
}

// errAbandoned says a unit was not finished because its partition was
// revoked or the bridge is stopping; its records will be redelivered.
var errAbandoned = errors.New("abandoned: partition revoked or bridge stopping")

// errResendAlone says Temporal rejected a call of several records: each
// goes again in a call of its own, so that a rejection names one record
// (dispatcher.resendAlone).
var errResendAlone = errors.New("Temporal rejected the batch: resending its records one at a time")

// errCircuitOpen says a call was not made because the circuit is open.
var errCircuitOpen = errors.New("circuit to Temporal is open")

// parkedError says a call was not made because its target's circuit is
// open: the units go back to their workflow's queue, parked until the
// circuit leaves the open state. gen is the circuit's unparks count when
// the call was refused (dispatcher.park).
type parkedError struct {
	c   *circuit
	gen uint64
}

func (e *parkedError) Error() string { return "circuit to Temporal " + e.c.key.String() + " is open" }

// heldError says a call must wait before it is made (again): until wake is
// closed (the answer to a question in flight to its workflow) or, with
// wake nil, for after (a backoff). The dispatcher puts its units back and
// schedules their workflow again then, so a waiting workflow holds no
// worker.
type heldError struct {
	after time.Duration
	wake  <-chan struct{}
	why   string // for Error: what the call waits for
}

func (e *heldError) Error() string { return "call held: " + e.why }
