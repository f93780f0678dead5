package signup

import (
	"context"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Activities simulate the account and billing services. Replace them with
// calls to yours; keep each one idempotent (Temporal retries an activity
// whose answer was lost), and return a non-retryable error for a business
// "no", so the saga compensates at once instead of retrying.
type Activities struct{}

// AccountInput names the account of a user.
type AccountInput struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// ChargeInput is one charge of the first month.
type ChargeInput struct {
	UserID        string `json:"user_id"`
	PaymentMethod string `json:"payment_method"`
	AmountCents   int64  `json:"amount_cents"`
}

// ActivateInput names the subscription to activate.
type ActivateInput struct {
	UserID string `json:"user_id"`
	Plan   string `json:"plan"`
}

// Error types of the simulated services' business failures.
const (
	ErrInvalidEmail     = "InvalidEmail"
	ErrCardDeclined     = "CardDeclined"
	ErrContractRequired = "ContractRequired"
)

// CreateAccount opens the user's account and returns its ID. An email
// without "@" is refused.
func (a *Activities) CreateAccount(ctx context.Context, in AccountInput) (string, error) {
	if !strings.Contains(in.Email, "@") {
		return "", temporal.NewNonRetryableApplicationError("not an email address: "+in.Email, ErrInvalidEmail, nil)
	}
	activity.GetLogger(ctx).Info("account created", "user_id", in.UserID)
	return "acct-" + in.UserID, nil
}

// CloseAccount closes the user's account (the undo of CreateAccount).
func (a *Activities) CloseAccount(ctx context.Context, in AccountInput) error {
	activity.GetLogger(ctx).Info("account closed", "user_id", in.UserID)
	return nil
}

// ChargeFirstMonth charges the first month and returns the charge ID.
// Payment method "pm_declined" is declined.
func (a *Activities) ChargeFirstMonth(ctx context.Context, in ChargeInput) (string, error) {
	if in.PaymentMethod == "pm_declined" {
		return "", temporal.NewNonRetryableApplicationError("card declined", ErrCardDeclined, nil)
	}
	activity.GetLogger(ctx).Info("first month charged", "user_id", in.UserID, "amount_cents", in.AmountCents)
	return "ch-" + in.UserID, nil
}

// RefundFirstMonth refunds the first month (the undo of ChargeFirstMonth).
// It is registered before the charge runs (whose answer may be lost after
// it went through), so it must refund only what was charged: a real
// payment API is asked to refund the charge made for this user's first
// month (the charge's idempotency key, UserID here), and does nothing when
// there is none, as after a declined card. The simulation only logs.
func (a *Activities) RefundFirstMonth(ctx context.Context, in ChargeInput) error {
	activity.GetLogger(ctx).Info("first month refunded", "user_id", in.UserID, "amount_cents", in.AmountCents)
	return nil
}

// ActivateSubscription activates the plan. Plan "enterprise" needs a
// signed contract first and is refused.
func (a *Activities) ActivateSubscription(ctx context.Context, in ActivateInput) error {
	if in.Plan == "enterprise" {
		return temporal.NewNonRetryableApplicationError("enterprise plans need a signed contract", ErrContractRequired, nil)
	}
	activity.GetLogger(ctx).Info("subscription active", "user_id", in.UserID, "plan", in.Plan)
	return nil
}
