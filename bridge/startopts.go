package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/sagabridge/sagabridge/config"
)

// SearchAttributeLister is implemented by a Temporal seam that can list
// the namespace's registered search attributes (temporalsdk.Client does).
// When the seam implements it, Run checks every route's search attributes
// against it before reading anything. Safe for concurrent use.
type SearchAttributeLister interface {
	// SearchAttributeTypes returns each registered search attribute's
	// type, by name, as the configuration names types ("keyword", ...).
	SearchAttributeTypes(ctx context.Context) (map[string]string, error)
}

// startOptions turns a route's start settings into what the seam is
// given; the configuration was validated, so every value fits its type.
func startOptions(r config.Route) StartOptions {
	o := StartOptions{RunTimeout: r.RunTimeout, ExecutionTimeout: r.ExecutionTimeout}
	if len(r.Memo) > 0 {
		o.Memo = maps.Clone(r.Memo)
	}
	if len(r.SearchAttributes) > 0 {
		o.SearchAttributes = map[string]SearchAttribute{}
		for name, a := range r.SearchAttributes {
			v, _ := a.Typed()
			o.SearchAttributes[name] = SearchAttribute{Type: a.Type, Value: v}
		}
	}
	return o
}

// cliTypes spells each search attribute type of the configuration as the
// Temporal CLI's --type takes it (it refuses keyword_list).
var cliTypes = map[string]string{
	config.SearchAttributeKeyword: "Keyword", config.SearchAttributeText: "Text", config.SearchAttributeInt: "Int",
	config.SearchAttributeDouble: "Double", config.SearchAttributeBool: "Bool", config.SearchAttributeDatetime: "Datetime",
	config.SearchAttributeKeywordList: "KeywordList",
}

// checkSearchAttributes checks, where the seam can list them, that every
// search attribute a route sets is registered in the namespace with the
// type the route gives it. An error names the field
// (routes[i].search_attributes.Name) and the fix; Temporal out of reach is
// logged and left to the first start, which Temporal refuses if an
// attribute is wrong: the route's target then counts as refusing the bridge
// (classify), and its records wait, paused, until the attribute is fixed.
func (b *Bridge) checkSearchAttributes(ctx context.Context) error {
	lister, ok := b.deps.Temporal.(SearchAttributeLister)
	if !ok || !slices.ContainsFunc(b.cfg.Routes, func(r config.Route) bool { return len(r.SearchAttributes) > 0 }) {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Dispatch.CallTimeout)
	defer cancel()
	types, err := lister.SearchAttributeTypes(cctx)
	if err != nil {
		b.log.Warn("cannot list the namespace's search attributes to check the routes' search_attributes; checking them at the first start",
			"namespace", b.cfg.Temporal.Namespace, "err", err)
		return nil
	}
	var errs []error
	for i, r := range b.cfg.Routes {
		for _, name := range slices.Sorted(maps.Keys(r.SearchAttributes)) {
			field := fmt.Sprintf("routes[%d].search_attributes.%s", i, name)
			want := r.SearchAttributes[name].Type
			switch got, ok := types[name]; {
			case !ok:
				errs = append(errs, &config.FieldError{Field: field, Msg: fmt.Sprintf(
					"no search attribute %s is registered in namespace %s (temporal operator search-attribute create --namespace %s --name %s --type %s)",
					name, b.cfg.Temporal.Namespace, b.cfg.Temporal.Namespace, name, cliTypes[want])})
			case got != want:
				errs = append(errs, &config.FieldError{Field: field, Msg: fmt.Sprintf(
					"is registered in namespace %s as %s, not %s", b.cfg.Temporal.Namespace, got, want)})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bridge routes: %w", err)
	}
	return nil
}
