package bridge

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// Option changes how New builds a bridge, beyond what the configuration
// file can say.
type Option interface{ apply(*options) }

// options are what the Options set.
type options struct {
	routeFuncs map[string]RouteFunc
	errs       []error
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// RouteFunc names the workflow a record goes to, in Go, for a route whose
// workflow ID a template cannot say. It is called from the partition's
// reading goroutine, one record at a time per partition and concurrently
// across partitions, so it must be safe for concurrent use and quick; it
// must not keep rec. An error, an empty ID, an ID Temporal would refuse
// (not UTF-8, over 1000 bytes, control characters) or a panic sends the
// record to the DLQ with class "route", as a missing {json:field} does,
// and the partition moves on.
type RouteFunc func(rec *sarama.ConsumerMessage) (workflowID string, err error)

// WithRouteFunc routes the records of the route named route (routes[].name)
// with fn instead of the route's workflow_id template. New fails when no
// route has that name, when fn is nil, or when a route is given two.
func WithRouteFunc(route string, fn RouteFunc) Option {
	return optionFunc(func(o *options) {
		switch {
		case fn == nil:
			o.errs = append(o.errs, fmt.Errorf("WithRouteFunc(%q): the function is nil", route))
		case o.routeFuncs[route] != nil:
			o.errs = append(o.errs, fmt.Errorf("WithRouteFunc(%q): the route has a function already", route))
		default:
			if o.routeFuncs == nil {
				o.routeFuncs = map[string]RouteFunc{}
			}
			o.routeFuncs[route] = fn
		}
	})
}

// setFuncs gives the named routes their functions; the router is not yet
// in use.
func (r *Router) setFuncs(o options) error {
	errs := o.errs
	byName := map[string]*compiledRoute{}
	for _, tr := range r.topics {
		for _, cr := range tr.byType {
			byName[cr.cfg.Name] = cr
		}
		if tr.catchAll != nil {
			byName[tr.catchAll.cfg.Name] = tr.catchAll
		}
	}
	for name, fn := range o.routeFuncs {
		cr := byName[name]
		if name == "" || cr == nil {
			errs = append(errs, fmt.Errorf("WithRouteFunc(%q): no route has that name (routes[].name)", name))
			continue
		}
		cr.fn = fn
	}
	return errors.Join(errs...)
}

// routeByFunc calls the route's function for msg, turning an error, an
// empty ID or a panic into the error that dead-letters the record.
func routeByFunc(cr *compiledRoute, msg *sarama.ConsumerMessage) (id string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the routing function panicked: %v", p)
		}
	}()
	id, err = cr.fn(msg)
	switch {
	case err != nil:
		return "", fmt.Errorf("the routing function failed: %w", err)
	case id == "":
		return "", errors.New("the routing function returned an empty workflow ID")
	}
	return id, nil
}
