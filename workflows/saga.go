package workflows

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagabridge/sagabridge/event"
)

// Compensation undoes one completed step.
type Compensation func(ctx workflow.Context) error

// CompensationResult is one compensation that ran, for the state query.
type CompensationResult struct {
	Name  string `json:"name"`
	Error string `json:"error,omitempty"`
	// Skipped is true when the compensation did not run because an earlier
	// one failed and the saga stops on failure.
	Skipped bool `json:"skipped,omitempty"`
	// DeadLettered is true when the failed compensation's record went to the DLQ.
	DeadLettered bool `json:"dead_lettered,omitempty"`
	// Undo is the compensation that failed or was skipped, kept so that an
	// operator can see what to run by hand. Entity only.
	Undo *Undo `json:"undo,omitempty"`
}

// Undo is the compensation of a completed step, as data: an activity and
// its input. Being data, it survives ContinueAsNew and shows in the state
// query (Snapshot.PendingCompensations). Make one with UndoActivity.
type Undo struct {
	// Name names the compensation in the state, e.g. "RefundPayment".
	Name string `json:"name"`
	// Activity is the registered activity type to run.
	Activity string `json:"activity"`
	// Input is the activity's JSON input; absent for none.
	Input json.RawMessage `json:"input,omitempty"`
	// DeadLetter sends the step's record to the DLQ when the compensation
	// fails for good (retries exhausted), so an operator sees it. Only steps
	// completed by a record's handler have a record; from a timeout or an
	// update handler it does nothing.
	DeadLetter bool `json:"dead_letter,omitempty"`
	// Record is the record whose handler completed the step, kept when
	// DeadLetter is set.
	Record *event.Envelope `json:"record,omitempty"`
	// Invalid holds why the undo could not be built (its input did not
	// encode); running it then fails with this error.
	Invalid string `json:"invalid,omitempty"`
}

// UndoActivity returns the Undo that runs activity with input. activity is
// a registered activity function or method value (a.RefundPayment), named
// as the SDK registers it (the function or method name), or its registered
// name as a string; pass the string when the activity is registered under a
// custom name. The name is kept in the state and carried across
// ContinueAsNew, so keep an activity registered under it while runs that
// may compensate with it are open. input is encoded as JSON (nil for none).
func UndoActivity(name string, activity any, input any) Undo {
	u := Undo{Name: name, Activity: activityName(activity)}
	if input != nil {
		b, err := json.Marshal(input)
		if err != nil {
			u.Invalid = fmt.Sprintf("encode input of %s: %v", name, err)
		}
		u.Input = b
	}
	return u
}

// WithDeadLetter returns u with DeadLetter set.
func (u Undo) WithDeadLetter() Undo {
	u.DeadLetter = true
	return u
}

// activityName is the name the SDK registers activity under: the method or
// function name for a function value, the string itself for a string.
func activityName(activity any) string {
	if s, ok := activity.(string); ok {
		return s
	}
	v := reflect.ValueOf(activity)
	if v.Kind() != reflect.Func {
		return fmt.Sprint(activity)
	}
	name := strings.TrimSuffix(runtime.FuncForPC(v.Pointer()).Name(), "-fm")
	if i := strings.LastIndex(name, "."); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// run executes the undo's activity.
func (u Undo) run(ctx workflow.Context) error {
	if u.Invalid != "" {
		return temporal.NewNonRetryableApplicationError(u.Invalid, "InvalidUndo", nil)
	}
	var args []any
	if len(u.Input) > 0 {
		// Decoded generically and re-encoded by the SDK's converter; numbers
		// stay json.Number so that int64 values survive exactly.
		dec := json.NewDecoder(bytes.NewReader(u.Input))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("decode input of %s: %w", u.Name, err)
		}
		args = append(args, v)
	}
	return workflow.ExecuteActivity(ctx, u.Activity, args...).Get(ctx, nil)
}

// undoOptions are the options of compensation activities: opts, with a
// 30 s start-to-close timeout and a policy that retries until the undo is
// done (backing off to a minute; only a non-retryable error ends it) where
// opts set none. An undo that gives up leaves the saga half undone while
// its status says compensated; the default gave up after 10 attempts,
// about 5 minutes.
func undoOptions(opts workflow.ActivityOptions) workflow.ActivityOptions {
	if opts.StartToCloseTimeout == 0 && opts.ScheduleToCloseTimeout == 0 {
		opts.StartToCloseTimeout = 30 * time.Second
	}
	if opts.RetryPolicy == nil {
		opts.RetryPolicy = &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute}
	}
	return opts
}

// compensate runs the pending compensations and forgets them once they
// have all run.
func (r *runner[S]) compensate() []CompensationResult {
	o := r.en.Compensation
	opts := undoOptions(o.ActivityOptions)
	// Disconnected: compensations run even when the workflow is cancelled.
	dctx, _ := workflow.NewDisconnectedContext(r.ctx)
	ctx := workflow.WithActivityOptions(dctx, opts)
	// They stay listed (the state query) until they have all run.
	undos := r.c.PendingCompensations
	r.compensating = true
	defer func() { r.compensating = false }()
	names := make([]string, len(undos))
	for i, u := range undos {
		names[i] = u.Name
	}
	results := runCompensations(ctx, names, o.Parallel, o.StopOnFailure, func(ctx workflow.Context, i int) CompensationResult {
		u := undos[i]
		res := CompensationResult{Name: u.Name}
		err := u.run(ctx)
		if err == nil {
			return res
		}
		res.Error, res.Undo = Describe(err), &u
		if u.DeadLetter && u.Record != nil && RetriesExhausted(err) {
			if dlErr := DeadLetter(ctx, *u.Record, err, int(opts.RetryPolicy.MaximumAttempts)); dlErr != nil {
				res.Error += "; " + dlErr.Error()
			} else {
				res.DeadLettered = true
			}
		}
		return res
	})
	r.c.PendingCompensations = nil
	// A skipped one keeps its undo, as a failed one does, so an operator
	// can run it by hand: its pending compensation is gone.
	keep, asked := workflow.DefaultVersion, false
	for i := range results {
		if results[i].Skipped && results[i].Undo == nil {
			if !asked { // only when one was skipped
				keep, asked = workflow.GetVersion(r.ctx, keepSkippedUndoChange, workflow.DefaultVersion, 1), true
			}
			if keep >= 1 {
				results[i].Undo = &undos[len(undos)-1-i] // results are newest first
			}
		}
	}
	return results
}

// keepSkippedUndoChange is the workflow.GetVersion change ID that guards
// keeping a skipped compensation's undo in its result (older runs dropped
// it, and a state's size can decide what a run carries).
const keepSkippedUndoChange = "sagabridge.keep-skipped-undo"

// runCompensations runs the named compensations, newest (last) first, or
// all at once when parallel, and lists the results newest first. A failed
// one is logged; with stop the older ones are skipped.
func runCompensations(ctx workflow.Context, names []string, parallel, stop bool, run func(ctx workflow.Context, i int) CompensationResult) []CompensationResult {
	n := len(names)
	results := make([]CompensationResult, n)
	one := func(ctx workflow.Context, i int) bool {
		r := run(ctx, i)
		if r.Error != "" {
			workflow.GetLogger(ctx).Error("compensation failed", "compensation", r.Name, "err", r.Error)
		}
		results[n-1-i] = r
		return r.Error == ""
	}
	if parallel {
		wg := workflow.NewWaitGroup(ctx)
		for i := range n {
			wg.Add(1)
			workflow.Go(ctx, func(ctx workflow.Context) {
				defer wg.Done()
				one(ctx, i)
			})
		}
		wg.Wait(ctx)
		return results
	}
	failed := false
	for i := n - 1; i >= 0; i-- {
		if failed && stop {
			results[n-1-i] = CompensationResult{Name: names[i], Skipped: true, Error: "skipped after an earlier compensation failed"}
			continue
		}
		failed = !one(ctx, i) || failed
	}
	return results
}

// compensateDisconnectedChange is the workflow.GetVersion change ID that
// guards Saga.Compensate's disconnected context, so histories recorded
// when it compensated on the cancelled context replay as they ran.
const compensateDisconnectedChange = "sagabridge.saga-compensate-disconnected"

// compensateAlwaysDisconnectedChange guards the disconnected context of a
// Compensate that begins before any cancellation, so a cancellation
// arriving while it runs does not cut the undoing short; histories
// recorded when such a cancellation failed the remaining compensations
// replay as they ran.
const compensateAlwaysDisconnectedChange = "sagabridge.saga-compensate-always-disconnected"

// Saga collects compensations as closures, for workflows that do not use
// Entity (whose Ctx.Completed and Ctx.Fail keep compensations as data that
// survive ContinueAsNew). Add each compensation right after the step it
// undoes succeeds; Compensate runs them newest first. The zero value is
// ready to use; a Saga belongs to one workflow goroutine.
type Saga struct {
	// Parallel runs the compensations concurrently (for independent
	// steps, such as a flight, a hotel and a car) instead of newest first.
	// Optional, default false.
	Parallel bool

	names []string
	fns   []Compensation
}

// Add registers the compensation of a step that just completed.
func (s *Saga) Add(name string, fn Compensation) {
	s.names = append(s.names, name)
	s.fns = append(s.fns, fn)
}

// Pending lists the registered compensations, oldest first.
func (s *Saga) Pending() []string { return append([]string(nil), s.names...) }

// Compensate runs every registered compensation in reverse order and
// forgets them. A failing compensation is reported and the rest still run,
// so one stuck undo does not strand the others.
//
// With Parallel the compensations run concurrently and Compensate waits for
// all of them; the results are still listed newest first. The
// compensations run on a context disconnected from ctx, as an Entity's do:
// a workflow asked to cancel (the usual reason to compensate), before or
// while they run, still has every one of them run; on ctx each would fail
// at once.
func (s *Saga) Compensate(ctx workflow.Context) []CompensationResult {
	if ctx.Err() != nil {
		if workflow.GetVersion(ctx, compensateDisconnectedChange, workflow.DefaultVersion, 1) >= 1 {
			ctx, _ = workflow.NewDisconnectedContext(ctx)
		}
	} else if workflow.GetVersion(ctx, compensateAlwaysDisconnectedChange, workflow.DefaultVersion, 1) >= 1 {
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	names, fns := s.names, s.fns
	s.names, s.fns = nil, nil
	return runCompensations(ctx, names, s.Parallel, false, func(ctx workflow.Context, i int) CompensationResult {
		r := CompensationResult{Name: names[i]}
		if err := fns[i](ctx); err != nil {
			r.Error = err.Error()
		}
		return r
	})
}
