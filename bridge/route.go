package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/event"
	"github.com/sagabridge/sagabridge/internal/idtemplate"
)

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
	cfg   config.Route
	index int // in the configuration's routes
	id    idtemplate.Template
	fn    RouteFunc // names the workflow instead of id when set (WithRouteFunc)
	// target is where the route's records go, with the route's start
	// options, but for the workflow ID; held records point to it rather
	// than each carrying a copy.
	target Target
}

// NewRouter checks routes (config.ValidateRoutes, with their defaults
// filled) and compiles them; dlqSuffix names the DLQ topics no route may
// consume.
func NewRouter(routes []config.Route, dlqSuffix string) (*Router, error) {
	filled := make([]config.Route, len(routes))
	for i, rc := range routes {
		filled[i] = config.Config{Routes: []config.Route{rc}}.WithDefaults().Routes[0]
	}
	if errs := config.ValidateRoutes(filled, dlqSuffix); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r := &Router{topics: map[string]*topicRoutes{}}
	for i, rc := range filled {
		id, err := idtemplate.Parse(rc.WorkflowID)
		if err != nil {
			return nil, err // ValidateRoutes parsed it already
		}
		cr := &compiledRoute{cfg: rc, index: i, id: id,
			target: Target{WorkflowType: rc.WorkflowType, TaskQueue: rc.TaskQueue, Signal: rc.Signal, Start: startOptions(rc)}}
		tr, ok := r.topics[rc.Topic]
		if !ok {
			tr = &topicRoutes{typeHeader: rc.TypeHeader, typeField: rc.TypeField, payload: rc.Payload, byType: map[string]*compiledRoute{}}
			r.topics[rc.Topic] = tr
		}
		if len(rc.Types) == 0 {
			tr.catchAll = cr
		}
		for _, t := range rc.Types {
			tr.byType[t] = cr
		}
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
	target, env, _, err := r.resolve(msg)
	return target, env, err
}

// resolve is Route, also returning the record's route.
func (r *Router) resolve(msg *sarama.ConsumerMessage) (Target, event.Envelope, *compiledRoute, error) {
	target, env, route, err := r.decode(msg)
	if err != nil {
		return Target{}, env, nil, err
	}
	var id string
	if route.fn != nil {
		id, err = routeByFunc(route, msg)
	} else {
		id, err = route.id.Render(env)
	}
	if err == nil {
		err = checkWorkflowID(id)
	}
	if err != nil {
		how := fmt.Sprintf("workflow_id %q", route.cfg.WorkflowID)
		if route.fn != nil {
			how = fmt.Sprintf("route %q", route.cfg.Name)
		}
		return Target{}, env, nil, &PoisonError{Class: dlq.ClassRoute, Err: fmt.Errorf("record %s/%d@%d: %s: %w", msg.Topic, msg.Partition, msg.Offset, how, err)}
	}
	target.WorkflowID = id
	return target, env, route, nil
}

// decode decodes msg, reads its event type and finds its route; the
// target it returns lacks the workflow ID.
func (r *Router) decode(msg *sarama.ConsumerMessage) (Target, event.Envelope, *compiledRoute, error) {
	tr, ok := r.topics[msg.Topic]
	if !ok {
		return Target{}, event.Envelope{}, nil, poison(dlq.ClassRoute, "no route for topic %q", msg.Topic)
	}
	env := event.Envelope{
		Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset,
		Timestamp: msg.Timestamp.UTC(),
	}
	env.SetKey(string(msg.Key))
	env.KeyNull = msg.Key == nil
	if y := env.Timestamp.Year(); y < 0 || y > 9999 {
		// A JSON time (RFC 3339) has four digits of year: the SDK could
		// not encode the record's batch, on any try.
		return Target{}, env, nil, poison(dlq.ClassDecode, "record %s/%d@%d has the timestamp %d ms (year %d), which JSON cannot carry (years 0 to 9999)",
			msg.Topic, msg.Partition, msg.Offset, msg.Timestamp.UnixMilli(), y)
	}
	for _, h := range msg.Headers {
		if h != nil {
			env.Headers = append(env.Headers, event.Header{Key: string(h.Key), Value: h.Value})
		}
	}
	switch tr.payload {
	case config.PayloadJSON:
		if !json.Valid(msg.Value) {
			return Target{}, env, nil, poison(dlq.ClassDecode, "value of %s/%d@%d is not valid JSON", msg.Topic, msg.Partition, msg.Offset)
		}
		env.Value = json.RawMessage(msg.Value)
	default:
		env.Raw = msg.Value
		env.ValueEmpty = msg.Value != nil && len(msg.Value) == 0
	}
	switch {
	case tr.typeHeader != "":
		v, ok := env.Header(tr.typeHeader)
		if !ok || len(v) == 0 {
			return Target{}, env, nil, poison(dlq.ClassRoute, "record %s/%d@%d has no %q header for its event type", msg.Topic, msg.Partition, msg.Offset, tr.typeHeader)
		}
		if !utf8.Valid(v) {
			return Target{}, env, nil, poison(dlq.ClassRoute, "record %s/%d@%d: its %q header (the event type) is not valid UTF-8", msg.Topic, msg.Partition, msg.Offset, tr.typeHeader)
		}
		env.Type = string(v)
	case tr.typeField != "":
		var fields map[string]json.RawMessage
		var typ string
		if err := json.Unmarshal(msg.Value, &fields); err != nil {
			return Target{}, env, nil, poison(dlq.ClassDecode, "value of %s/%d@%d is not a JSON object: %v", msg.Topic, msg.Partition, msg.Offset, err)
		}
		if err := json.Unmarshal(fields[tr.typeField], &typ); err != nil || typ == "" {
			return Target{}, env, nil, poison(dlq.ClassRoute, "record %s/%d@%d has no string field %q for its event type", msg.Topic, msg.Partition, msg.Offset, tr.typeField)
		}
		if !idtemplate.ValidText(typ, fields[tr.typeField]) {
			return Target{}, env, nil, poison(dlq.ClassRoute, "record %s/%d@%d: its field %q (the event type) is not valid UTF-8 text", msg.Topic, msg.Partition, msg.Offset, tr.typeField)
		}
		env.Type = typ
	}
	route := tr.catchAll
	if route == nil {
		route = tr.byType[env.Type]
	}
	if route == nil {
		return Target{}, env, nil, poison(dlq.ClassRoute, "no route for event type %q on topic %q", env.Type, msg.Topic)
	}
	return route.target, env, route, nil
}

// route decodes and routes m; a record too large for one Temporal payload
// is poison too.
func (b *Bridge) route(f *flow, m *sarama.ConsumerMessage) (routed, error) {
	target, env, route, err := b.router.resolve(m)
	if err != nil {
		return routed{}, err
	}
	env.TopicID = f.topicID
	wire := wireSize(env)
	if wire > b.cfg.Dispatch.MaxCallBytes {
		return routed{}, &PoisonError{Class: dlq.ClassRejected, Err: fmt.Errorf(
			"record %s/%d@%d is %d bytes as sent to Temporal (JSON, binary values in base64), over dispatch.max_call_bytes (%d)",
			m.Topic, m.Partition, m.Offset, wire, b.cfg.Dispatch.MaxCallBytes)}
	}
	return routed{record: newRecord(env, wire, m.Key == nil), id: target.WorkflowID, base: &route.target, size: int32(heldSize(m)), route: int32(route.index)}, nil
}

// poison queues m for the DLQ; it is finished once the DLQ holds it. The
// write happens off the read loop, in offset order per partition.
func (b *Bridge) poison(f *flow, m *sarama.ConsumerMessage, err error) {
	var p *PoisonError
	if !errors.As(err, &p) {
		p = &PoisonError{Class: dlq.ClassDecode, Err: err}
	}
	b.queueDeadLetter(f, m.Offset, heldSize(m), dlq.FromMessage(m, p.Class, err, 1, b.deps.Now()))
}

// MaxWorkflowIDBytes is the longest workflow ID the bridge sends: Temporal's
// default limit.maxIDLength.
const MaxWorkflowIDBytes = 1000

// checkWorkflowID refuses an ID Temporal would refuse, so the record goes
// to the DLQ at once rather than failing every call: not valid UTF-8 (a
// binary key from an Avro or Protobuf serializer: the gRPC layer refuses
// it as Internal, which is retried), too long, or with control characters.
func checkWorkflowID(id string) error {
	switch {
	case !utf8.ValidString(id):
		return errors.New("the workflow ID is not valid UTF-8 (is the key binary? route by a text key)")
	case len(id) > MaxWorkflowIDBytes:
		return fmt.Errorf("the workflow ID is %d bytes, over Temporal's limit of %d", len(id), MaxWorkflowIDBytes)
	case strings.ContainsFunc(id, unicode.IsControl):
		return errors.New("the workflow ID holds control characters")
	}
	return nil
}

// wireSize is the size of env as the bridge sends it to Temporal: JSON,
// with header values and bytes payloads in base64 and escapes counted.
func wireSize(env event.Envelope) int { return env.JSONSize() }
