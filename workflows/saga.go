package workflows

import (
	"go.temporal.io/sdk/workflow"
)

// Compensation undoes one completed step.
type Compensation func(ctx workflow.Context) error

// CompensationResult is one compensation that ran, for the state query.
type CompensationResult struct {
	Name  string `json:"name"`
	Error string `json:"error,omitempty"`
}

// Saga collects compensations as steps complete. Add each compensation
// right after the step it undoes succeeds; Compensate runs them newest
// first. The zero value is ready to use; a Saga belongs to one workflow
// goroutine.
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
// all of them; the results are still listed newest first.
func (s *Saga) Compensate(ctx workflow.Context) []CompensationResult {
	n := len(s.fns)
	results := make([]CompensationResult, n)
	run := func(ctx workflow.Context, i int) {
		r := CompensationResult{Name: s.names[i]}
		if err := s.fns[i](ctx); err != nil {
			r.Error = err.Error()
			workflow.GetLogger(ctx).Error("compensation failed", "compensation", s.names[i], "err", err)
		}
		results[n-1-i] = r
	}
	if s.Parallel {
		wg := workflow.NewWaitGroup(ctx)
		for i := range n {
			wg.Add(1)
			workflow.Go(ctx, func(ctx workflow.Context) {
				defer wg.Done()
				run(ctx, i)
			})
		}
		wg.Wait(ctx)
	} else {
		for i := n - 1; i >= 0; i-- {
			run(ctx, i)
		}
	}
	s.names, s.fns = nil, nil
	return results
}
