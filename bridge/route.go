package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
)

// Target is the workflow a record is delivered to.
type Target struct {
	WorkflowType string
	WorkflowID   string
	TaskQueue    string
	Signal       string
	// NewRun allows a new run when the workflow ID has closed (the
	// on_closed_workflow "new_run" policy); otherwise a closed ID is rejected.
	NewRun bool
}

// PoisonError says a record can never be delivered as it is: it goes to the
// DLQ with Class, and the partition moves on.
type PoisonError struct {
	Class dlq.Class
	Err   error
}

func (e *PoisonError) Error() string { return string(e.Class) + ": " + e.Err.Error() }
func (e *PoisonError) Unwrap() error { return e.Err }

func poison(class dlq.Class, format string, args ...any) error {
	return &PoisonError{Class: class, Err: fmt.Errorf(format, args...)}
}

// Router maps records to workflows. It is immutable after NewRouter and safe
// for concurrent use.
type Router struct {
	topics map[string]*topicRoutes
}

// topicRoutes holds the routes of one topic. All share how the event type
// is read; byType holds routes that list types, catchAll the one that does not.
type topicRoutes struct {
	typeHeader string
	typeField  string
	payload    string
	byType     map[string]*compiledRoute
	catchAll   *compiledRoute
}

type compiledRoute struct {
	cfg RouteConfig
	id  template
}

// NewRouter compiles routes. It expects routes that passed Config.Validate.
func NewRouter(routes []RouteConfig, dlqSuffix string) (*Router, error) {
	return compileRoutes(routes, dlqSuffix)
}

func compileRoutes(routes []RouteConfig, dlqSuffix string) (*Router, error) {
	r := &Router{topics: map[string]*topicRoutes{}}
	var errs []error
	for i, rc := range routes {
		rc = routeDefaults(rc)
		at := fmt.Sprintf("routes[%d]", i)
		id, err := parseTemplate(rc.WorkflowID)
		if err != nil || rc.Topic == "" {
			continue // reported by RouteConfig.validate
		}
		if dlqSuffix != "" && strings.HasSuffix(rc.Topic, dlqSuffix) {
			errs = append(errs, &FieldError{Field: at + ".topic", Msg: fmt.Sprintf("%q is a DLQ topic (suffix %q); consuming it would loop", rc.Topic, dlqSuffix)})
		}
		cr := &compiledRoute{cfg: rc, id: id}
		tr, ok := r.topics[rc.Topic]
		if !ok {
			tr = &topicRoutes{typeHeader: rc.TypeHeader, typeField: rc.TypeField, payload: rc.Payload, byType: map[string]*compiledRoute{}}
			r.topics[rc.Topic] = tr
		} else if tr.typeHeader != rc.TypeHeader || tr.typeField != rc.TypeField || tr.payload != rc.Payload {
			errs = append(errs, &FieldError{Field: at, Msg: fmt.Sprintf("routes of topic %q must agree on type_header, type_field and payload", rc.Topic)})
			continue
		}
		if len(rc.Types) == 0 {
			if tr.catchAll != nil || len(tr.byType) > 0 {
				errs = append(errs, &FieldError{Field: at + ".types", Msg: fmt.Sprintf("topic %q has several routes, so each must list its types", rc.Topic)})
				continue
			}
			tr.catchAll = cr
			continue
		}
		if tr.catchAll != nil {
			errs = append(errs, &FieldError{Field: at + ".types", Msg: fmt.Sprintf("topic %q already has a route for all types", rc.Topic)})
			continue
		}
		for j, t := range rc.Types {
			if _, dup := tr.byType[t]; dup {
				errs = append(errs, &FieldError{Field: fmt.Sprintf("%s.types[%d]", at, j), Msg: fmt.Sprintf("event type %q of topic %q is routed twice", t, rc.Topic)})
				continue
			}
			tr.byType[t] = cr
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// Topics lists the topics the routes consume, sorted.
func (r *Router) Topics() []string {
	ts := make([]string, 0, len(r.topics))
	for t := range r.topics {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// Route decodes msg and finds its workflow. A record that cannot be decoded
// or routed yields a *PoisonError.
func (r *Router) Route(msg *sarama.ConsumerMessage) (Target, event.Envelope, error) {
	tr, ok := r.topics[msg.Topic]
	if !ok {
		return Target{}, event.Envelope{}, poison(dlq.ClassRoute, "no route for topic %q", msg.Topic)
	}
	env := event.Envelope{
		Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset,
		Key: string(msg.Key), Timestamp: msg.Timestamp.UTC(),
	}
	for _, h := range msg.Headers {
		if h != nil {
			env.Headers = append(env.Headers, event.Header{Key: string(h.Key), Value: h.Value})
		}
	}
	switch tr.payload {
	case PayloadJSON:
		if !json.Valid(msg.Value) {
			return Target{}, env, poison(dlq.ClassDecode, "value of %s/%d@%d is not valid JSON", msg.Topic, msg.Partition, msg.Offset)
		}
		env.Value = json.RawMessage(msg.Value)
	default:
		env.Raw = msg.Value
	}
	switch {
	case tr.typeHeader != "":
		v, ok := env.Header(tr.typeHeader)
		if !ok || len(v) == 0 {
			return Target{}, env, poison(dlq.ClassRoute, "record %s/%d@%d has no %q header for its event type", msg.Topic, msg.Partition, msg.Offset, tr.typeHeader)
		}
		env.Type = string(v)
	case tr.typeField != "":
		var fields map[string]json.RawMessage
		var typ string
		if err := json.Unmarshal(msg.Value, &fields); err != nil {
			return Target{}, env, poison(dlq.ClassDecode, "value of %s/%d@%d is not a JSON object: %v", msg.Topic, msg.Partition, msg.Offset, err)
		}
		if err := json.Unmarshal(fields[tr.typeField], &typ); err != nil || typ == "" {
			return Target{}, env, poison(dlq.ClassRoute, "record %s/%d@%d has no string field %q for its event type", msg.Topic, msg.Partition, msg.Offset, tr.typeField)
		}
		env.Type = typ
	}
	route := tr.catchAll
	if route == nil {
		route = tr.byType[env.Type]
	}
	if route == nil {
		return Target{}, env, poison(dlq.ClassRoute, "no route for event type %q on topic %q", env.Type, msg.Topic)
	}
	id, err := route.id.render(env)
	if err != nil {
		return Target{}, env, &PoisonError{Class: dlq.ClassRoute, Err: fmt.Errorf("record %s/%d@%d: workflow_id %q: %w", msg.Topic, msg.Partition, msg.Offset, route.cfg.WorkflowID, err)}
	}
	return Target{
		WorkflowType: route.cfg.WorkflowType, WorkflowID: id,
		TaskQueue: route.cfg.TaskQueue, Signal: route.cfg.Signal,
	}, env, nil
}

// template is a parsed workflow ID template: literal text and placeholders.
type template []templatePart

type templatePart struct {
	literal     string
	placeholder string // "key", "topic" or "type"; empty for a literal
}

var placeholders = []string{"key", "topic", "type"}

// parseTemplate parses text such as "order-{key}".
func parseTemplate(s string) (template, error) {
	var t template
	hasPlaceholder := false
	for rest := s; rest != ""; {
		open := strings.IndexByte(rest, '{')
		closeAt := strings.IndexByte(rest, '}')
		if open < 0 {
			if closeAt >= 0 {
				return nil, fmt.Errorf("unmatched '}' in %q", s)
			}
			t = append(t, templatePart{literal: rest})
			break
		}
		if closeAt >= 0 && closeAt < open {
			return nil, fmt.Errorf("unmatched '}' in %q", s)
		}
		if open > 0 {
			t = append(t, templatePart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unclosed '{' in %q", s)
		}
		name := rest[open+1 : open+end]
		if !slices.Contains(placeholders, name) {
			return nil, fmt.Errorf("unknown placeholder {%s} in %q (allowed: {key}, {topic}, {type})", name, s)
		}
		hasPlaceholder = true
		t = append(t, templatePart{placeholder: name})
		rest = rest[open+end+1:]
	}
	if !hasPlaceholder {
		return nil, fmt.Errorf("%q has no placeholder, so every record would go to one workflow; use {key}", s)
	}
	return t, nil
}

// render builds a workflow ID for env; an empty placeholder value is an error.
func (t template) render(env event.Envelope) (string, error) {
	var b strings.Builder
	for _, p := range t {
		var v string
		switch p.placeholder {
		case "":
			b.WriteString(p.literal)
			continue
		case "key":
			v = env.Key
		case "topic":
			v = env.Topic
		case "type":
			v = env.Type
		}
		if v == "" {
			return "", fmt.Errorf("record has an empty {%s}", p.placeholder)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}
