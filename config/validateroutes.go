package config

// The checks of the routes, one by one and together.

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sagabridge/sagabridge/internal/idtemplate"
	"github.com/sagabridge/sagabridge/internal/topicname"
)

// maxTopicLen is the longest topic name Kafka accepts.
const maxTopicLen = topicname.MaxLen

// legalTopic reports whether Kafka accepts name as a topic's name.
func legalTopic(name string) bool { return topicname.Check(name) == nil }

// ValidateRoutes checks routes (with their defaults filled) one by one and
// together: the routes of a topic agree on how the event type is read, at
// most one of them takes every type, no type is routed twice, and no route
// consumes a DLQ topic (dlqSuffix) and loops. Each error is a *FieldError.
func ValidateRoutes(routes []Route, dlqSuffix string) []error {
	var errs []error
	type topicRoutes struct {
		first    Route
		catchAll bool
		types    map[string]bool
	}
	topics := map[string]*topicRoutes{}
	names := map[string]int{}
	for i, r := range routes {
		at := fmt.Sprintf("routes[%d]", i)
		own := r.validate(at)
		errs = append(errs, own...)
		if len(own) > 0 {
			continue // reported; the checks across routes need valid routes
		}
		if j, dup := names[r.Name]; dup && r.Name != "" {
			errs = append(errs, &FieldError{Field: at + ".name", Msg: fmt.Sprintf("%q is the name of routes[%d] too; route names are unique", r.Name, j)})
		}
		names[r.Name] = i
		if !legalTopic(r.Topic) {
			errs = append(errs, &FieldError{Field: at + ".topic", Msg: fmt.Sprintf("%q is not a Kafka topic name: at most 249 letters, digits, '.', '_' and '-', and not \".\" or \"..\"", r.Topic)})
			continue
		}
		if d := r.Topic + dlqSuffix; dlqSuffix != "" && len(d) > maxTopicLen {
			errs = append(errs, &FieldError{Field: at + ".topic", Msg: fmt.Sprintf("its DLQ topic %s is longer than Kafka's %d characters", d, maxTopicLen)})
		}
		if dlqSuffix != "" && strings.HasSuffix(r.Topic, dlqSuffix) {
			errs = append(errs, &FieldError{Field: at + ".topic", Msg: fmt.Sprintf("%q is a DLQ topic (suffix %q); consuming it would loop", r.Topic, dlqSuffix)})
		}
		tr, ok := topics[r.Topic]
		if !ok {
			tr = &topicRoutes{first: r, types: map[string]bool{}}
			topics[r.Topic] = tr
		} else if tr.first.TypeHeader != r.TypeHeader || tr.first.TypeField != r.TypeField || tr.first.Payload != r.Payload {
			errs = append(errs, &FieldError{Field: at, Msg: fmt.Sprintf("routes of topic %q must agree on type_header, type_field and payload", r.Topic)})
			continue
		}
		if len(r.Types) == 0 {
			if tr.catchAll || len(tr.types) > 0 {
				errs = append(errs, &FieldError{Field: at + ".types", Msg: fmt.Sprintf("topic %q has several routes, so each must list its types", r.Topic)})
				continue
			}
			tr.catchAll = true
			continue
		}
		if tr.catchAll {
			errs = append(errs, &FieldError{Field: at + ".types", Msg: fmt.Sprintf("topic %q already has a route for all types", r.Topic)})
			continue
		}
		for j, t := range r.Types {
			if tr.types[t] {
				errs = append(errs, &FieldError{Field: fmt.Sprintf("%s.types[%d]", at, j), Msg: fmt.Sprintf("event type %q of topic %q is routed twice", t, r.Topic)})
				continue
			}
			tr.types[t] = true
		}
	}
	return errs
}

// validate checks one route on its own; at names it ("routes[2]").
func (r Route) validate(at string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: at + "." + field, Msg: fmt.Sprintf(format, args...)})
	}
	if r.Topic == "" {
		bad("topic", "is required")
	}
	if r.TypeHeader != "" && r.TypeField != "" {
		bad("type_field", "set type_header or type_field, not both")
	}
	switch r.Payload {
	case PayloadJSON:
	case PayloadBytes:
		if r.TypeField != "" {
			bad("type_field", "needs payload %q, the route has %q", PayloadJSON, r.Payload)
		}
	default:
		bad("payload", "must be %q or %q, not %q", PayloadJSON, PayloadBytes, r.Payload)
	}
	if len(r.Types) > 0 && r.TypeHeader == "" && r.TypeField == "" {
		bad("types", "needs type_header or type_field to read the event type from")
	}
	for j, t := range r.Types {
		if t == "" {
			bad(fmt.Sprintf("types[%d]", j), "must not be empty")
		}
	}
	if r.WorkflowType == "" {
		bad("workflow_type", "is required")
	}
	if r.TaskQueue == "" {
		bad("task_queue", "is required")
	} else if strings.HasPrefix(r.TaskQueue, "/_sys/") {
		bad("task_queue", "%q is in Temporal's reserved /_sys/ prefix", r.TaskQueue)
	}
	// Names matched exactly, by Temporal or against records: padding
	// matches nothing.
	names := map[string]string{"task_queue": r.TaskQueue, "workflow_type": r.WorkflowType, "type_header": r.TypeHeader,
		"type_field": r.TypeField, "signal": r.Signal, "name": r.Name}
	for j, t := range r.Types {
		names[fmt.Sprintf("types[%d]", j)] = t
	}
	for _, field := range slices.Sorted(maps.Keys(names)) {
		unpadded(bad, field, names[field])
	}
	// Names Temporal takes up to its limit.maxIDLength (1000 bytes by
	// default): over it, every call of the route is refused.
	for _, field := range []string{"task_queue", "workflow_type", "signal"} {
		if n := len(names[field]); n > maxTemporalName {
			bad(field, "%d bytes, over the %d Temporal takes (its limit.maxIDLength)", n, maxTemporalName)
		}
	}
	if r.WorkflowID == "" {
		bad("workflow_id", "is required")
	} else if t, err := idtemplate.Parse(r.WorkflowID); err != nil {
		bad("workflow_id", "%v", err)
	} else if n := t.LiteralBytes(); n > maxTemporalName {
		bad("workflow_id", "its literal text alone is %d bytes, over the %d Temporal takes (its limit.maxIDLength)", n, maxTemporalName)
	} else if t.MinBytes(r.Topic) > maxTemporalName {
		bad("workflow_id", "its literal text alone is %d bytes; with its placeholders every ID is over the %d Temporal takes (its limit.maxIDLength)", n, maxTemporalName)
	} else if t.UsesJSON() && r.Payload != PayloadJSON {
		bad("workflow_id", "%q reads the JSON value ({json:...}), which needs payload \"json\", not %q", r.WorkflowID, r.Payload)
	} else if t.UsesType() && r.TypeHeader == "" && r.TypeField == "" {
		bad("workflow_id", "%q uses {type}, which needs type_header or type_field to read the event type from", r.WorkflowID)
	}
	r.validateSettings(bad)
	return errs
}

// maxTemporalName is the longest workflow ID, task queue, workflow type or
// signal name Temporal takes by default (its dynamic config
// limit.maxIDLength).
const maxTemporalName = 1000
