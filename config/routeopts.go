package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sagabridge/sagabridge/event"
)

// The types of a route's search attributes (routes[].search_attributes),
// as Temporal registers them.
const (
	SearchAttributeKeyword     = "keyword"
	SearchAttributeText        = "text"
	SearchAttributeInt         = "int"
	SearchAttributeDouble      = "double"
	SearchAttributeBool        = "bool"
	SearchAttributeDatetime    = "datetime"
	SearchAttributeKeywordList = "keyword_list"
)

// SearchAttributeTypes lists the accepted search attribute types.
func SearchAttributeTypes() []string {
	return []string{SearchAttributeKeyword, SearchAttributeText, SearchAttributeInt, SearchAttributeDouble,
		SearchAttributeBool, SearchAttributeDatetime, SearchAttributeKeywordList}
}

// Typed returns the attribute's value as the Go type of its Type: string
// (keyword, text), int64, float64, bool, time.Time or []string; an error
// says why the value does not fit the type.
func (a SearchAttribute) Typed() (any, error) {
	switch a.Type {
	case SearchAttributeKeyword, SearchAttributeText:
		if s, ok := a.Value.(string); ok {
			return s, nil
		}
	case SearchAttributeInt:
		switch v := a.Value.(type) {
		case int:
			return int64(v), nil
		case int64:
			return v, nil
		case uint64:
			if v <= 1<<63-1 {
				return int64(v), nil
			}
		}
	case SearchAttributeDouble:
		switch v := a.Value.(type) {
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%v is not a double value JSON can carry", v)
			}
			return v, nil
		case int:
			return float64(v), nil
		case int64:
			return float64(v), nil
		}
	case SearchAttributeBool:
		if v, ok := a.Value.(bool); ok {
			return v, nil
		}
	case SearchAttributeDatetime:
		switch v := a.Value.(type) {
		case time.Time:
			return v, nil
		case string:
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, fmt.Errorf("%q is not an RFC 3339 time (2006-01-02T15:04:05Z)", v)
			}
			return t, nil
		}
	case SearchAttributeKeywordList:
		switch v := a.Value.(type) {
		case []string:
			return v, nil
		case []any:
			out := make([]string, len(v))
			for i, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("item %d is %T, not a string", i, e)
				}
				out[i] = s
			}
			return out, nil
		}
	default:
		return nil, fmt.Errorf("type %q is not one of %s", a.Type, strings.Join(SearchAttributeTypes(), ", "))
	}
	if a.Value == nil {
		return nil, fmt.Errorf("a %s value is required", a.Type)
	}
	return nil, fmt.Errorf("%v (%T) is not a %s value", a.Value, a.Value, a.Type)
}

// validName says whether s is a route name: letters, digits, '.', '_', '-'.
func validName(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

// validateSettings checks a route's per-route settings (name, concurrency,
// start options) on their own; bad names the field below the route.
// Config.Validate checks concurrency against dispatch.concurrency.
func (r Route) validateSettings(bad func(field, format string, args ...any)) {
	if r.Name != "" && !validName(r.Name) {
		bad("name", "%q: use letters, digits, '.', '_' and '-'", r.Name)
	}
	if r.Concurrency < 1 {
		bad("concurrency", "must be at least 1")
	}
	if r.RunTimeout < 0 {
		bad("run_timeout", "must not be negative")
	}
	if r.ExecutionTimeout < 0 {
		bad("execution_timeout", "must not be negative")
	} else if r.ExecutionTimeout > 0 && r.RunTimeout > r.ExecutionTimeout {
		bad("execution_timeout", "must be at least run_timeout (%s)", r.RunTimeout)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Memo)) {
		switch {
		case k == "":
			bad("memo", "a memo key must not be empty")
		case k == event.MemoKey:
			bad("memo."+k, "is the bridge's own memo key (the workflows record their watermarks under it)")
		default:
			if _, err := json.Marshal(r.Memo[k]); err != nil {
				bad("memo."+k, "cannot be encoded as JSON: %v", err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.SearchAttributes)) {
		if name == "" || strings.ContainsAny(name, " \t\n") {
			bad("search_attributes", "%q is not a search attribute name", name)
			continue
		}
		if _, err := r.SearchAttributes[name].Typed(); err != nil {
			bad("search_attributes."+name, "%v", err)
		}
	}
}
