// Package signup is the starting point for a saga of your own: a
// subscription signup fed by Kafka through sagabridge. Copy this directory
// into your module, rename, and replace the simulated services in
// activities.go with yours. README.md (next to this file) and the guide at
// the top of the repository's README.md walk through it.
//
// Events (record key = user ID, event type in the "event-type" header, an
// idempotency key in the "idempotency-key" header, value = JSON) on topic
// "signups":
//
//	SignupRequested     {"email":"ann@example.com","plan":"pro"}
//	PaymentMethodAdded  {"payment_method":"pm_visa"}
//	TrialEnded          {}
//	SignupCancelled     {"reason":"changed my mind"}
//
// The workflow (type SignupSaga, ID "signup-<key>") creates the account and
// starts the trial (a TrialPeriod timeout). When the trial ends (TrialEnded,
// or the timeout) it charges the first month and activates the
// subscription; if the charge or the activation fails, or the signup is
// cancelled, it undoes what was done, newest first (refund, then close the
// account). The Update "change-plan" switches the plan during the trial; its
// validator refuses an unknown plan or a signup past its trial before
// anything is written to history. A TrialEnded or SignupCancelled that comes
// before its SignupRequested is held (Ctx.Hold) and applied once the signup
// is in; a PaymentMethodAdded is simply kept.
//
// It answers the "state" query with workflows.Snapshot[Signup] as JSON and
// keeps the SagaStatus search attribute equal to its status.
//
// The simulated services fail on purpose: an email without "@" cannot get
// an account, payment method "pm_declined" is declined, and plan
// "enterprise" cannot be activated without a contract.
package signup

import (
	"time"

	"github.com/sagabridge/sagabridge/workflows"
)

// Names the bridge configuration, the worker and producers share.
const (
	// WorkflowType is the registered workflow name; the bridge route's
	// workflow_type must be the same.
	WorkflowType = "SignupSaga"
	// TaskQueue is the task queue the worker polls and the route names.
	TaskQueue = "signups"
	// Topic is the topic the signup events arrive on.
	Topic = "signups"
	// TypeHeader is the record header holding the event type (the route's
	// type_header).
	TypeHeader = "event-type"
	// IdempotencyHeader is the record header holding the producer's
	// idempotency key: a record whose key the saga saw recently is dropped,
	// even at a new offset (a producer that retried a send it thought had
	// failed writes the record twice).
	IdempotencyHeader = "idempotency-key"
	// StatusSearchAttribute is the Keyword search attribute holding each
	// signup's status; the worker checks the namespace has it.
	StatusSearchAttribute = "SagaStatus"
	// UpdateChangePlan is the Temporal Update that switches the plan
	// during the trial; it answers with a PlanChanged.
	UpdateChangePlan = "change-plan"
	// TimeoutTrial ends the trial TrialPeriod after the signup.
	TimeoutTrial = "trial-end"
	// TrialPeriod is how long a trial lasts: minutes, for trying it out (a
	// real trial lasts days; the timer is durable either way).
	TrialPeriod = 2 * time.Minute
)

// Event types (the TypeHeader values).
const (
	SignupRequested    = "SignupRequested"
	PaymentMethodAdded = "PaymentMethodAdded"
	TrialEnded         = "TrialEnded"
	SignupCancelled    = "SignupCancelled"
)

// Statuses. Active, Failed and Cancelled are final: the workflow closes
// after reaching one.
const (
	StatusNew       = workflows.StatusNew // no SignupRequested yet
	StatusTrial     = "trial"             // account created, trial running
	StatusActive    = "active"            // first month charged, subscription active
	StatusFailed    = "failed"            // a step failed; what was done is undone
	StatusCancelled = "cancelled"         // cancelled by the user; what was done is undone
)

// Steps, as they appear in the state's completed_steps.
const (
	StepCreateAccount = "CreateAccount"
	StepCharge        = "ChargeFirstMonth"
	StepActivate      = "ActivateSubscription"
)

// Signup is the saga's own data (under "state" in the state query).
type Signup struct {
	Email         string `json:"email,omitempty"`
	Plan          string `json:"plan,omitempty"`
	PriceCents    int64  `json:"price_cents,omitempty"`
	PaymentMethod string `json:"payment_method,omitempty"`
	AccountID     string `json:"account_id,omitempty"`
	ChargeID      string `json:"charge_id,omitempty"`
}

// State is the answer to the "state" query and the workflow's result.
type State = workflows.Snapshot[Signup]

// SignupRequestedEvent starts a signup.
type SignupRequestedEvent struct {
	Email string `json:"email"`
	Plan  string `json:"plan"`
}

// PaymentMethodAddedEvent gives the card to charge when the trial ends.
type PaymentMethodAddedEvent struct {
	PaymentMethod string `json:"payment_method"`
}

// ReasonEvent says why a signup was cancelled.
type ReasonEvent struct {
	Reason string `json:"reason"`
}

// ChangePlan is the input of the change-plan Update.
type ChangePlan struct {
	Plan string `json:"plan"`
}

// PlanChanged is the answer to the change-plan Update.
type PlanChanged struct {
	Plan       string `json:"plan"`
	PriceCents int64  `json:"price_cents"`
}

// PriceCents returns the monthly price of plan, and whether plan exists.
func PriceCents(plan string) (int64, bool) {
	switch plan {
	case "basic":
		return 900, true
	case "pro":
		return 1900, true
	case "enterprise":
		return 9900, true
	}
	return 0, false
}
