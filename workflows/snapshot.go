package workflows

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sagabridge/sagabridge/event"
)

// Snapshot is an entity's state with what the runtime keeps across runs. It is
// the workflow's input on a continued run (nil on the first), its result,
// and the answer to the state query: a documented JSON contract
// (ContractVersion, docs/STATE.md).
type Snapshot[S any] struct {
	// Version is ContractVersion.
	Version int `json:"version"`
	// Key is the record key of the entity's events (of the first record applied).
	Key string `json:"key"`
	Progress
	// State is the user's state.
	State S `json:"state"`
	// Watermarks are the highest applied offset per "topic/partition".
	Watermarks event.Watermarks `json:"watermarks"`
	// Applied lists the positions of the last Entity.KeepApplied records
	// applied (including rejected ones), oldest first.
	Applied []AppliedEvent `json:"applied,omitempty"`
	// Stats counts what the entity has done over all its runs.
	Stats EntityStats `json:"stats"`
	// PendingCompensations are the undos of the completed steps, oldest first.
	PendingCompensations []Undo `json:"pending_compensations,omitempty"`
	// Timeouts are the step timeouts running, by name.
	Timeouts []Timeout `json:"timeouts,omitempty"`
	// RecentKeys are the remembered idempotency keys, oldest first.
	RecentKeys []string `json:"recent_keys,omitempty"`
	// RecentUpdates are the remembered update results, oldest first.
	RecentUpdates []UpdateResult `json:"recent_updates,omitempty"`
	// Held are the records handlers held (Ctx.Hold), in arrival order,
	// waiting for their precondition; they are handed to their handler
	// again after each record, update or timeout handled.
	Held []HeldRecord `json:"held,omitempty"`
	// Inbox holds records that arrived but were not yet applied when the
	// run continued as new; the next run applies them first.
	Inbox []event.Envelope `json:"inbox,omitempty"`
	// InboxAdmitted is how many of Inbox's first records the run that
	// carried them had admitted already: records that arrived after the
	// final status, handed to a new run, which applies them without
	// checking the watermarks.
	InboxAdmitted int `json:"inbox_admitted,omitempty"`
	// LateWatermarks are the watermarks of the closed run that handed its
	// late records to this new one: they cover those records and any it
	// dead-lettered or dropped after them, and the new run starts from
	// them. Watermarks stays rewound to just before the first late record,
	// as workers from before these fields read it (they admit the inbox
	// against it).
	LateWatermarks event.Watermarks `json:"late_watermarks,omitempty"`
	// PreviousRunError is the error Entity.Finish returned in the run
	// whose late records started this one (on_closed_workflow: new_run).
	// That run closed continued-as-new, so its failure shows here, cut to
	// 1,000 bytes.
	PreviousRunError string `json:"previous_run_error,omitempty"`
	// OnClosed is the bridge's closed-workflow policy
	// (dispatch.on_closed_workflow) as its last batch said, carried with
	// Inbox so a carried record that comes after the final status follows
	// it.
	OnClosed string `json:"on_closed,omitempty"`
}

// Progress is where a saga stands.
type Progress struct {
	// Status is set by handlers (Ctx.SetStatus, Ctx.Fail); StatusNew at first.
	Status string `json:"status"`
	// CurrentStep is the step begun and not completed (Ctx.Begin).
	CurrentStep string `json:"current_step,omitempty"`
	// CompletedSteps lists the last 1,000 completed steps in order
	// (Ctx.Completed).
	CompletedSteps []string `json:"completed_steps"`
	// Compensations lists the last 1,000 compensations that ran, in the
	// order they ran, with an error where one failed.
	Compensations []CompensationResult `json:"compensations"`
	// LastError is the failure that made the saga compensate, if any.
	LastError string `json:"last_error,omitempty"`
	// Rejected lists the last 100 records and timeouts that were applied
	// but could not be acted on (unknown type, undecodable value, handler
	// error, or the entity was already done), with the reason; Stats.Rejected
	// counts them all. Nothing is dropped silently.
	Rejected []Rejection `json:"rejected,omitempty"`
}

// Rejection is a record or timeout the entity could not act on, and why.
type Rejection struct {
	// AppliedEvent is the record's position; absent for a timeout.
	*AppliedEvent
	// Timeout names the timeout whose handler failed, for timeouts.
	Timeout string `json:"timeout,omitempty"`
	// Update names the update whose handler misused Fail, for updates.
	Update string `json:"update,omitempty"`
	// Reason says why.
	Reason string `json:"reason"`
}

// Timeout is a running step timeout.
type Timeout struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// UpdateResult is a remembered update outcome.
type UpdateResult struct {
	// ID is the update ID.
	ID string `json:"id"`
	// Name is the update's name.
	Name string `json:"name"`
	// Result is the answer, as JSON; absent when the update failed.
	Result json.RawMessage `json:"result,omitempty"`
	// Error is the update's error, if it failed.
	Error string `json:"error,omitempty"`
	// ErrorType and NonRetryable are the type and flag of the application
	// error the update's handler returned itself (not one wrapped in
	// another error), so that a retry is answered with them again; absent
	// for other errors (a retry gets "UpdateFailed", retryable).
	ErrorType    string `json:"error_type,omitempty"`
	NonRetryable bool   `json:"non_retryable,omitempty"`
}

// UnmarshalJSON decodes an UpdateResult, whose result is the answer's JSON
// or, as runs before contract version 1 said it (and carried it across
// ContinueAsNew), that JSON base64-encoded: a JSON string that is padded
// standard base64 of valid JSON is taken for the latter. (An answer that is
// itself such a string, like "MQ==", decodes as what it encodes; only a
// retried update's repeated answer could notice.)
func (u *UpdateResult) UnmarshalJSON(b []byte) error {
	type plain UpdateResult // without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("decode update result: %w", err)
	}
	p.Result = fromBase64(p.Result)
	*u = UpdateResult(p)
	return nil
}

// fromBase64 returns the JSON that raw encodes in base64, or raw when it is
// not a JSON string holding base64 of valid JSON.
func fromBase64(raw json.RawMessage) json.RawMessage {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil || len(s)%4 != 0 {
		return raw
	}
	dec, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(dec) == 0 || !json.Valid(dec) {
		return raw
	}
	return dec
}

// EntityStats counts what an entity has done over all its runs.
type EntityStats struct {
	// Applied counts records applied (including rejected ones).
	Applied int `json:"applied"`
	// Deduped counts redelivered records dropped by offset.
	Deduped int `json:"deduped"`
	// DedupedByKey counts records dropped by idempotency key.
	DedupedByKey int `json:"deduped_by_key"`
	// Rejected counts records and timeouts rejected (see Progress.Rejected).
	Rejected int `json:"rejected"`
	// Updates counts updates applied.
	Updates int `json:"updates"`
	// DedupedUpdates counts updates answered from a remembered result.
	DedupedUpdates int `json:"deduped_updates"`
	// Runs counts this run and the ones it continued from.
	Runs int `json:"runs"`
}

// fresh reports whether c starts a new entity rather than continuing one:
// no input, or the input of a new run of a closed workflow (an
// event.StartInput from the bridge, or late records handed on; see
// runner.late), which carries watermarks and records but no contract
// version and no status.
func (c *Snapshot[S]) fresh() bool {
	return c == nil || (c.Version == 0 && c.Status == "")
}

// Carry is the former name of Snapshot, kept so code written against it
// still compiles; the JSON is the same.
//
// Deprecated: use Snapshot.
type Carry[S any] = Snapshot[S]
