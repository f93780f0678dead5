package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
	"go.yaml.in/yaml/v3"
)

// unknownFields reports every mapping key of the document that names no
// field, by its YAML path ("kafka.grup", "routes[1].topik") with its line
// and the closest known name, as every other configuration error names
// its field. (yaml.v3's own error names the Go type instead.)
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
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct && t != reflect.TypeFor[time.Duration]():
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, value := n.Content[i], n.Content[i+1]
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
		case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
			for i, c := range n.Content {
				walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(doc, reflect.TypeFor[Config](), "")
	return errs
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
