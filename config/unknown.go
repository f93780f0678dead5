package config

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
	"go.yaml.in/yaml/v3"
)

// unknownFields reports every mapping key of the document that names no
// field, by its YAML path ("kafka.grup", "routes[1].topik") with its line
// and the closest known name, and every value that does not say what it
// seems to (see scalarError), as every other configuration error names its
// field. (yaml.v3's own errors name the Go type instead.) Merge keys
// ("<<: *anchor") are yaml's to resolve; the anchor is checked where it is
// defined.
func unknownFields(doc *yaml.Node) []error {
	var errs []error
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case n.Kind == yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, t, path)
			}
		case t.Kind() == reflect.Map && (n.Kind == yaml.SequenceNode || n.Kind == yaml.ScalarNode && n.Tag != "!!null"):
			errs = append(errs, &FieldError{Field: path, Msg: fmt.Sprintf("want a mapping, such as {name: value}, not %s (line %d)", kindName(n), n.Line)})
		case t.Kind() == reflect.Slice && n.Kind == yaml.MappingNode:
			errs = append(errs, &FieldError{Field: path, Msg: fmt.Sprintf("want a list, such as [a, b] or lines that start with \"- \", not %s (line %d)", kindName(n), n.Line)})
		case t.Kind() == reflect.Struct && (n.Kind == yaml.SequenceNode || n.Kind == yaml.ScalarNode && n.Tag != "!!null"):
			errs = append(errs, &FieldError{Field: path, Msg: fmt.Sprintf("want a section, its fields as a mapping such as {name: value}, not %s (line %d)", kindName(n), n.Line)})
		case (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) && single(t):
			errs = append(errs, &FieldError{Field: path, Msg: fmt.Sprintf("want a single value, not %s (line %d)", kindName(n), n.Line)})
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct && t != reflect.TypeFor[time.Duration]():
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, value := n.Content[i], n.Content[i+1]
				if key.Tag == "!!merge" {
					continue
				}
				p := key.Value
				if path != "" {
					p = path + "." + key.Value
				}
				ft, ok := fields[key.Value]
				if !ok {
					errs = append(errs, &FieldError{Field: p, Msg: fmt.Sprintf("unknown field (line %d)%s", key.Line, suggest(key.Value, fields))})
					continue
				}
				walk(value, ft, p)
			}
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map && t.Elem().Kind() == reflect.Struct:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value)
			}
		case t.Kind() == reflect.Interface || t.Kind() == reflect.Map && t.Elem().Kind() == reflect.Interface:
			// Free-form values (memo, a search attribute's value): only a
			// leading zero is wrong in them, read as octal.
			switch n.Kind {
			case yaml.MappingNode:
				for i := 0; i+1 < len(n.Content); i += 2 {
					walk(n.Content[i+1], reflect.TypeFor[any](), path+"."+n.Content[i].Value)
				}
			case yaml.SequenceNode:
				for i, c := range n.Content {
					walk(c, reflect.TypeFor[any](), fmt.Sprintf("%s[%d]", path, i))
				}
			case yaml.ScalarNode:
				if n.Tag == "!!int" && leadingZero.MatchString(n.Value) {
					errs = append(errs, &FieldError{Field: path, Msg: fmt.Sprintf("%s has a leading zero, which YAML reads as octal: write it without, or quote it for text (line %d)", n.Value, n.Line)})
				}
			}
		case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
			for i, c := range n.Content {
				walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		case n.Kind == yaml.ScalarNode:
			if msg := scalarError(n, t); msg != "" {
				errs = append(errs, &FieldError{Field: path, Msg: fmt.Sprintf("%s (line %d)", msg, n.Line)})
			}
		}
	}
	walk(doc, reflect.TypeFor[Config](), "")
	return errs
}

// single reports whether a field of type t holds one value (text, a
// number, a duration, true or false).
func single(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Float32, reflect.Float64:
		return true
	}
	return t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64
}

// kindName names what node n is, for an error: "a list", "a mapping" or
// its value quoted.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return strconv.Quote(n.Value)
}

// yamlOneOneBool reports whether v is one of YAML 1.1's words for true or
// false (yes, no, on, off, y, n), which yaml reads into a bool field.
func yamlOneOneBool(v string) bool {
	switch v {
	case "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off", "OFF":
		return true
	}
	return false
}

// leadingZero is a whole number YAML 1.1 reads as octal (0100 is 64),
// where the environment (SAGABRIDGE_*) reads it as decimal.
var leadingZero = regexp.MustCompile(`^[-+]?0(o?[0-9_]+)$`)

// scalarError says what is wrong with scalar n as a value of a field of
// type t, or "" when nothing is: an empty value (a template's missing
// value became a zero taken as set, overriding the default), a word where
// true or false or a number belongs, a duration
// without a unit, a fraction or a string where a whole number belongs
// (yaml truncated 1.5 to 1), a whole number with a leading zero, or a
// single value where a list belongs.
func scalarError(n *yaml.Node, t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Tag == "!!null" {
		switch t.Kind() {
		case reflect.Struct, reflect.Map, reflect.Slice: // an empty section or list
			return ""
		}
		return "has no value: remove the key to take the default, or give one"
	}
	switch {
	case t.Kind() == reflect.Bool:
		switch {
		case n.Tag == "!!bool" || yamlOneOneBool(n.Value):
		case n.Tag == "!!str" && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
			return fmt.Sprintf("%q is quoted text, not true or false: write it without quotes", n.Value)
		default:
			return fmt.Sprintf("%s is not true or false", n.Value)
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		if n.Tag != "!!int" && n.Tag != "!!float" {
			return fmt.Sprintf("%q is not a number", n.Value)
		}
	case t == reflect.TypeFor[time.Duration]():
		if n.Tag == "!!int" || n.Tag == "!!float" {
			return fmt.Sprintf("%s is not a duration: write it with a unit, such as 5ms or 5s", n.Value)
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			return fmt.Sprintf("%q is not a duration, such as 5ms or 5s", n.Value)
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		switch {
		case n.Tag == "!!float":
			if v, err := strconv.ParseFloat(n.Value, 64); err != nil || v != math.Trunc(v) || math.Abs(v) >= 1<<53 {
				return fmt.Sprintf("%s is not a whole number", n.Value) // 6e6 is, 1.5 is not
			}
		case n.Tag != "!!int":
			return fmt.Sprintf("%q is not a whole number", n.Value)
		case leadingZero.MatchString(n.Value):
			return fmt.Sprintf("%s has a leading zero, which YAML reads as octal: write it without", n.Value)
		}
	case t.Kind() == reflect.Slice:
		return fmt.Sprintf("want a list, such as [%s], not %q", n.Value, n.Value)
	}
	return ""
}

// yamlFields maps the YAML names of struct t's fields to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			out[name] = f.Type
		}
	}
	return out
}

// suggest names the known name closest to name, when one is close.
func suggest(name string, known map[string]reflect.Type) string {
	if best, ok := closest(name, slices.Collect(maps.Keys(known))); ok {
		return fmt.Sprintf("; did you mean %s?", best)
	}
	return ""
}

// closest is the candidate nearest to name in edit distance, if one is
// within a third of name's length (at least 2 edits); ties go to the first
// in sort order.
func closest(name string, candidates []string) (string, bool) {
	best, bestDist := "", max(2, len(name)/3)+1
	for _, c := range candidates {
		if d := levenshtein.ComputeDistance(name, c); d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	return best, best != ""
}
