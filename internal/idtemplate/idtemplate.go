// Package idtemplate parses and renders workflow ID templates such as
// "order-{key}": literal text and placeholders filled from a record.
//
// It is a leaf: the configuration validates templates with it and the
// bridge's router renders them. It must not import the bridge, the
// configuration or any Kafka or Temporal client.
package idtemplate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sagabridge/sagabridge/event"
)

// Template is a parsed workflow ID template.
type Template []part

type part struct {
	literal     string
	placeholder string // "key", "topic" or "type"; empty for a literal
}

// placeholders are the names a template may use.
var placeholders = []string{"key", "topic", "type"}

// Parse parses text such as "order-{key}". A template needs at least one
// placeholder, or every record would go to one workflow.
func Parse(s string) (Template, error) {
	var t Template
	hasPlaceholder := false
	for rest := s; rest != ""; {
		open := strings.IndexByte(rest, '{')
		closeAt := strings.IndexByte(rest, '}')
		if open < 0 {
			if closeAt >= 0 {
				return nil, fmt.Errorf("unmatched '}' in %q", s)
			}
			t = append(t, part{literal: rest})
			break
		}
		if closeAt >= 0 && closeAt < open {
			return nil, fmt.Errorf("unmatched '}' in %q", s)
		}
		if open > 0 {
			t = append(t, part{literal: rest[:open]})
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
		t = append(t, part{placeholder: name})
		rest = rest[open+end+1:]
	}
	if !hasPlaceholder {
		return nil, fmt.Errorf("%q has no placeholder, so every record would go to one workflow; use {key}", s)
	}
	return t, nil
}

// Render builds the workflow ID of env; an empty placeholder value is an error.
func (t Template) Render(env event.Envelope) (string, error) {
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
