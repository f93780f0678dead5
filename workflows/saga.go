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
func (s *Saga) Compensate(ctx workflow.Context) []CompensationResult {
	results := make([]CompensationResult, 0, len(s.fns))
	for i := len(s.fns) - 1; i >= 0; i-- {
		r := CompensationResult{Name: s.names[i]}
		if err := s.fns[i](ctx); err != nil {
			r.Error = err.Error()
			workflow.GetLogger(ctx).Error("compensation failed", "compensation", s.names[i], "err", err)
		}
		results = append(results, r)
	}
	s.names, s.fns = nil, nil
	return results
}
