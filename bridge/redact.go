package bridge

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
)

// KeyHash is what log.redact_keys writes in place of a workflow ID or a
// record key: "sha256:" and the first 12 hex digits of the SHA-256 of v.
// It is the same for the same v in every process, so the lines of one key
// can still be found and correlated.
func KeyHash(v string) string {
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:])[:12]
}

// RedactKeys wraps h so that every log line it writes shows KeyHash of a
// workflow ID or key instead of the value: the attributes workflow_id, key
// and WorkflowID (the Temporal SDK's), in groups and in attributes added
// with Logger.With, and the same values wherever they appear in the
// message or in another attribute of the line (an error that names the
// workflow). It is how log.redact_keys is applied (New does it); wrapping
// twice is the same as once. Values that are not strings (a record key is
// always text here) are left alone.
func RedactKeys(h slog.Handler) slog.Handler {
	if _, ok := h.(*redactHandler); ok {
		return h
	}
	return &redactHandler{inner: h}
}

// redactHandler is the slog.Handler of RedactKeys.
type redactHandler struct {
	inner slog.Handler
	// held are the values of the redacted attributes added with With,
	// scrubbed from every later line too.
	held []string
}

// redactedAttr reports whether the attribute named key holds a workflow ID
// or a record key.
func redactedAttr(key string) bool {
	switch key {
	case "workflow_id", "key", "WorkflowID":
		return true
	}
	return false
}

// Enabled reports whether the wrapped handler logs at level.
func (h *redactHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle writes r with its workflow IDs and keys replaced by their hashes.
func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	secrets := slices.Clone(h.held)
	r.Attrs(func(a slog.Attr) bool {
		secrets = collect(a, secrets)
		return true
	})
	s := newScrubber(secrets)
	out := slog.NewRecord(r.Time, r.Level, s.text(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(s.attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

// WithAttrs returns a handler that writes attrs, redacted, on every line.
func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	held := slices.Clone(h.held)
	for _, a := range attrs {
		held = collect(a, held)
	}
	s := newScrubber(held)
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = s.attr(a)
	}
	return &redactHandler{inner: h.inner.WithAttrs(out), held: held}
}

// WithGroup returns a handler that puts later attributes in group name.
func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{inner: h.inner.WithGroup(name), held: h.held}
}

// collect appends the values of the redacted attributes in a (and in its
// groups) to secrets.
func collect(a slog.Attr, secrets []string) []string {
	v := a.Value.Resolve()
	switch {
	case v.Kind() == slog.KindGroup:
		for _, g := range v.Group() {
			secrets = collect(g, secrets)
		}
	case redactedAttr(a.Key) && v.Kind() == slog.KindString && v.String() != "":
		secrets = append(secrets, v.String())
	}
	return secrets
}

// scrubber replaces the secrets of one line by their hashes.
type scrubber struct {
	r *strings.Replacer // nil: nothing to replace
}

// newScrubber replaces secrets, the longest first where they overlap, in
// one pass (a hash written in is never scanned again).
func newScrubber(secrets []string) scrubber {
	if len(secrets) == 0 {
		return scrubber{}
	}
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	secrets = slices.Compact(secrets)
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, KeyHash(s))
	}
	return scrubber{r: strings.NewReplacer(pairs...)}
}

// text returns s with every secret replaced.
func (s scrubber) text(t string) string {
	if s.r == nil {
		return t
	}
	return s.r.Replace(t)
}

// attr returns a with a redacted attribute's value hashed and the secrets
// replaced in the text of every other string, error or Stringer value.
func (s scrubber) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch {
	case v.Kind() == slog.KindGroup:
		group := v.Group()
		out := make([]slog.Attr, len(group))
		for i, g := range group {
			out[i] = s.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case redactedAttr(a.Key) && v.Kind() == slog.KindString && v.String() != "":
		return slog.String(a.Key, KeyHash(v.String()))
	case s.r == nil:
		return slog.Attr{Key: a.Key, Value: v}
	case v.Kind() == slog.KindString:
		return slog.String(a.Key, s.text(v.String()))
	case v.Kind() == slog.KindAny:
		if text, ok := anyText(v.Any()); ok {
			if t := s.text(text); t != text {
				return slog.String(a.Key, t)
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// anyText is the text of an error or a Stringer; false for other values,
// and for a nil pointer whose method panics (the handler prints those as
// it would have).
func anyText(x any) (text string, ok bool) {
	defer func() {
		if recover() != nil {
			text, ok = "", false
		}
	}()
	switch x := x.(type) {
	case error:
		return x.Error(), true
	case interface{ String() string }:
		return x.String(), true
	}
	return "", false
}
