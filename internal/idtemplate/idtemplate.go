// Package idtemplate parses and renders workflow ID templates such as
// "order-{key}": literal text and placeholders filled from a record: {key},
// {topic}, {type}, {json:field} (a top-level string or number field of a
// JSON value, for an ID carried in the payload while the key is another
// one) and {header:name} (a record header).
//
// It is a leaf: the configuration validates templates with it and the
// bridge's router renders them. It must not import the bridge, the
// configuration or any Kafka or Temporal client.
package idtemplate

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sagabridge/sagabridge/event"
)

// Template is a parsed workflow ID template.
type Template []part

type part struct {
	literal     string
	placeholder string // "key", "topic", "type", "json" or "header"; empty for a literal
	arg         string // the field of {json:...}, the header of {header:...}
}

// placeholders are the names a template may use without an argument.
var placeholders = []string{"key", "topic", "type"}

// UsesJSON reports whether t reads the record's JSON value ({json:...}),
// which needs payload "json".
func (t Template) UsesJSON() bool {
	return slices.ContainsFunc(t, func(p part) bool { return p.placeholder == "json" })
}

// UsesType reports whether t has a {type} placeholder.
func (t Template) UsesType() bool {
	return slices.ContainsFunc(t, func(p part) bool { return p.placeholder == "type" })
}

// LiteralBytes is the length of t's literal text: every ID it makes is at
// least that long.
func (t Template) LiteralBytes() int {
	n := 0
	for _, p := range t {
		n += len(p.literal)
	}
	return n
}

// MinBytes is the length of the shortest ID t makes for records of topic:
// its literal text, the topic's name for each {topic} and a byte for each
// other placeholder (Render refuses an empty one).
func (t Template) MinBytes(topic string) int {
	n := 0
	for _, p := range t {
		switch p.placeholder {
		case "":
			n += len(p.literal)
		case "topic":
			n += len(topic)
		default:
			n++
		}
	}
	return n
}

// name is the placeholder's name as written, "json:id" say.
func (p part) name() string {
	if p.arg != "" {
		return p.placeholder + ":" + p.arg
	}
	return p.placeholder
}

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
		p := part{placeholder: name}
		if kind, arg, ok := strings.Cut(name, ":"); ok && (kind == "json" || kind == "header") {
			if arg == "" {
				return nil, fmt.Errorf("placeholder {%s} in %q names no %s", name, s, map[string]string{"json": "field", "header": "header"}[kind])
			}
			p = part{placeholder: kind, arg: arg}
		} else if !slices.Contains(placeholders, name) {
			return nil, fmt.Errorf("unknown placeholder {%s} in %q (allowed: {key}, {topic}, {type}, {json:field}, {header:name})", name, s)
		}
		if n := len(t); n > 0 && t[n-1].placeholder != "" {
			return nil, fmt.Errorf("placeholders {%s} and {%s} touch: put a separator between them, or records of two entities could share a workflow (%q)",
				t[n-1].name(), p.name(), s)
		}
		hasPlaceholder = true
		t = append(t, p)
		rest = rest[open+end+1:]
	}
	if !hasPlaceholder {
		return nil, fmt.Errorf("%q has no placeholder, so every record would go to one workflow; use {key}", s)
	}
	for _, p := range t {
		if !utf8.ValidString(p.literal) {
			return nil, fmt.Errorf("%q is not valid UTF-8, which Temporal refuses in a workflow ID", s)
		}
		if i := strings.IndexFunc(p.literal, unicode.IsControl); i >= 0 {
			r, _ := utf8.DecodeRuneInString(p.literal[i:])
			return nil, fmt.Errorf("%q holds a control character (%U) in its text, which Temporal refuses in a workflow ID", s, r)
		}
	}
	return t, nil
}

// Render builds the workflow ID of env; an empty or missing placeholder
// value is an error that names the placeholder.
func (t Template) Render(env event.Envelope) (string, error) {
	var (
		b      strings.Builder
		fields map[string]json.RawMessage // env.Value's, decoded once
	)
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
		case "header":
			h, _ := env.Header(p.arg)
			v = string(h)
		case "json":
			if fields == nil {
				if err := json.Unmarshal(env.Value, &fields); err != nil || fields == nil {
					return "", fmt.Errorf("{json:%s}: the value is not a JSON object", p.arg)
				}
			}
			var err error
			if v, err = jsonScalar(fields[p.arg]); err != nil {
				return "", fmt.Errorf("{json:%s}: %w", p.arg, err)
			}
		}
		if v == "" {
			return "", fmt.Errorf("record has an empty {%s}", p.name())
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// jsonScalar is a JSON string's text or a number's literal; empty for a
// missing field or null.
func jsonScalar(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if !ValidText(s, raw) {
			return "", fmt.Errorf("the field is not valid UTF-8 text (an invalid byte or a lone surrogate escape in %s)", raw)
		}
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("the field is %s, not a string or a number", raw)
}

// ValidText reports whether s, decoded from the JSON string raw, is the
// text raw holds. Decoding turns each invalid byte and lone surrogate
// escape into U+FFFD, so such a value would read the same as others; only
// the replacement characters the producer wrote are text.
func ValidText(s string, raw json.RawMessage) bool {
	n := strings.Count(s, "\uFFFD")
	return n == 0 || n <= replacementsWritten(raw)
}

// replacementsWritten counts the U+FFFD a JSON string holds as written:
// the character itself, or its escape (not "\\ufffd", an escaped
// backslash before the text "ufffd").
func replacementsWritten(raw json.RawMessage) int {
	s, n := string(raw), 0
	for i := 0; i < len(s); {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == 'u':
			if i+6 <= len(s) && strings.EqualFold(s[i+2:i+6], "fffd") {
				n++
			}
			i += 6
		case s[i] == '\\':
			i += 2 // \\, \", \n...: one escaped character
		case strings.HasPrefix(s[i:], "\uFFFD"):
			n++
			i += len("\uFFFD")
		default:
			i++
		}
	}
	return n
}
