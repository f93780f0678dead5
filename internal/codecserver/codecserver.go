// Package codecserver serves a Temporal payload codec over HTTP to the
// operators who read encrypted workflows: the Temporal CLI
// (--codec-endpoint) and the Temporal UI (its codec endpoint, called from
// the browser). It wraps the SDK's handler
// (converter.NewPayloadCodecHTTPHandler), which answers anyone, with what
// that handler lacks:
//
//   - /encode answers 404 unless Options.EnableEncode: whoever can reach
//     it could make ciphertexts under the namespace's key. A request that
//     holds no payloads makes none and is served: the Temporal CLI sends
//     one (`{}`) before every `temporal workflow query`.
//   - Request bodies are limited (Options.MaxBodyBytes); larger ones get
//     413 before they are read into memory. So is the number of payloads
//     one request holds (Options.MaxPayloads), counted before they are
//     parsed: a body of empty payloads ({}, three bytes each) costs about
//     60 times its size as protobuf messages.
//   - CORS for the Temporal UIs in Options.AllowedOrigins: their browsers'
//     preflight is answered, and a request from any other origin is
//     refused without CORS headers.
//   - An optional bearer token (Options.TokenFile), compared in constant
//     time: 401 with WWW-Authenticate: Bearer without it.
//   - X-Namespace: the key belongs to one namespace (Options.Namespace); a
//     request that names another gets 403.
//
// It is used by `bridge codec-server`. It must not import the bridge
// engine, the configuration or anything that reaches Kafka or Temporal:
// only the Temporal SDK's converter, the payload types (API, protobuf) and
// the standard library.
package codecserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

// DefaultMaxBodyBytes is the default of Options.MaxBodyBytes: 4 MiB, twice
// Temporal's default limit on one payload.
const DefaultMaxBodyBytes = 4 << 20

// DefaultMaxPayloads is the default of Options.MaxPayloads. The Temporal
// CLI and UI send the payloads of one field or event at a time: a few.
const DefaultMaxPayloads = 10_000

// Options configure New.
type Options struct {
	// Codec decodes payloads (and encodes them, with EnableEncode).
	// Required.
	Codec converter.PayloadCodec
	// Namespace is the Temporal namespace whose payloads the codec's key
	// protects. A request whose X-Namespace header names another namespace
	// is refused (403); one without the header, or with it empty (the
	// Temporal CLI 1.5 sends it so), is served. Required.
	Namespace string
	// EnableEncode serves /encode. Optional, default false: /encode
	// answers 404 to a request with payloads, so the server can only
	// decode.
	EnableEncode bool
	// MaxBodyBytes is the largest request body read; a larger one gets
	// 413. Optional, default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxPayloads is the most payloads one request may hold; one with
	// more gets 413 before they are parsed. Optional, default
	// DefaultMaxPayloads.
	MaxPayloads int
	// AllowedOrigins are the origins (scheme://host[:port]) of the
	// Temporal UIs whose pages may call the server from a browser.
	// Optional, default none: browsers are refused, the CLI is not (it
	// sends no Origin).
	AllowedOrigins []string
	// TokenFile holds the bearer token every request but a CORS preflight
	// must carry (Authorization: Bearer <token>); surrounding whitespace
	// is dropped. It is read by New, which fails if it is missing or
	// empty, and again at most once a second when it changes, so a token
	// rotated in the file is used without a restart (a file that turns
	// unreadable or empty keeps the last token, with a warning). Optional,
	// default no authentication.
	TokenFile string
	// Logger receives a line per refused request. Optional, default
	// discard.
	Logger *slog.Logger
}

// OptionError is New's error about one option.
type OptionError struct {
	// Option is the field of Options, such as "TokenFile".
	Option string
	Err    error
}

func (e *OptionError) Error() string {
	return "codecserver: Options." + e.Option + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *OptionError) Unwrap() error { return e.Err }

// server is the handler New returns.
type server struct {
	opts    Options
	sdk     http.Handler
	origins map[string]bool
	token   *tokenFile // nil: no authentication
	log     *slog.Logger
}

// New checks opts and returns the codec server's handler. Its errors are
// *OptionError, naming the option.
func New(opts Options) (http.Handler, error) {
	if opts.Codec == nil {
		return nil, &OptionError{"Codec", errors.New("is required")}
	}
	if opts.Namespace == "" {
		return nil, &OptionError{"Namespace", errors.New("is required")}
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxBodyBytes < 0 {
		return nil, &OptionError{"MaxBodyBytes", fmt.Errorf("must be positive, not %d", opts.MaxBodyBytes)}
	}
	if opts.MaxPayloads == 0 {
		opts.MaxPayloads = DefaultMaxPayloads
	}
	if opts.MaxPayloads < 0 {
		return nil, &OptionError{"MaxPayloads", fmt.Errorf("must be positive, not %d", opts.MaxPayloads)}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	origins, err := parseOrigins(opts.AllowedOrigins)
	if err != nil {
		return nil, &OptionError{"AllowedOrigins", err}
	}
	s := &server{opts: opts, sdk: converter.NewPayloadCodecHTTPHandler(opts.Codec), origins: origins, log: opts.Logger}
	if opts.TokenFile != "" {
		if s.token, err = newTokenFile(opts.TokenFile, opts.Logger); err != nil {
			return nil, &OptionError{"TokenFile", err}
		}
	}
	return s, nil
}

// ServeHTTP checks, in order: the origin (CORS), the method, the token,
// the namespace, the path, the body's size and its number of payloads;
// then the SDK's handler encodes or decodes.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.cors(w, r) {
		s.refuse(w, r, http.StatusForbidden, "origin not allowed")
		return
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", allowMethods)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", allowMethods)
		s.refuse(w, r, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if s.token != nil && !s.token.matches(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="codec-server"`)
		s.refuse(w, r, http.StatusUnauthorized, "a bearer token is required")
		return
	}
	if ns := namespaces(r); len(ns) > 0 && (len(ns) > 1 || ns[0] != s.opts.Namespace) {
		s.refuse(w, r, http.StatusForbidden, fmt.Sprintf("this codec server serves namespace %s, not %q", s.opts.Namespace, strings.Join(ns, ", ")))
		return
	}
	encode := strings.HasSuffix(r.URL.Path, "/encode")
	if !encode && !strings.HasSuffix(r.URL.Path, "/decode") {
		s.refuse(w, r, http.StatusNotFound, "404 page not found")
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	n := countPayloads(body)
	if encode && !s.opts.EnableEncode && (n != 0 || !noPayloads(body)) {
		s.refuse(w, r, http.StatusNotFound, "404 page not found")
		return
	}
	switch {
	case n < 0: // protojson would parse up to the fault, however far
		s.refuse(w, r, http.StatusBadRequest, `the request body is not one JSON object of payloads ({"payloads": [...]})`)
		return
	case n > s.opts.MaxPayloads:
		s.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request holds %d payloads, over %d", n, s.opts.MaxPayloads))
		return
	}
	s.sdk.ServeHTTP(w, r)
}

// noPayloads reports whether body is a request without payloads, such as
// the `{}` the Temporal CLI encodes before every `workflow query`: it
// makes no ciphertext, so it is served with /encode off.
func noPayloads(body []byte) bool {
	var p commonpb.Payloads
	return protojson.Unmarshal(body, &p) == nil && len(p.Payloads) == 0
}

// countPayloads returns the number of items in body's payloads lists, or
// -1 if body is not one JSON object. It counts at least what protojson
// would parse before it failed: the items of every member whose name is
// "payloads" in any case (protojson refuses a duplicate or a name in
// another case, after parsing what came before), whatever their kind, and
// a body with anything after its object is -1 (protojson fails only after
// parsing the object). It reads tokens, allocating next to nothing for
// items (an empty payload is two delimiters).
func countPayloads(body []byte) int {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return -1
	}
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return -1
		}
		if name, _ := key.(string); !strings.EqualFold(name, "payloads") {
			if skipValue(dec) != nil {
				return -1
			}
			continue
		}
		t, err := dec.Token()
		if err != nil {
			return -1
		}
		if t != json.Delim('[') {
			if d, ok := t.(json.Delim); ok && skipRest(dec, d) != nil {
				return -1
			}
			continue
		}
		for dec.More() {
			n++
			if skipValue(dec) != nil {
				return -1
			}
		}
		if _, err := dec.Token(); err != nil { // ]
			return -1
		}
	}
	if _, err := dec.Token(); err != nil { // }
		return -1
	}
	if _, err := dec.Token(); err != io.EOF {
		return -1
	}
	return n
}

// skipValue reads the next value of dec, whole.
func skipValue(dec *json.Decoder) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); ok {
		return skipRest(dec, d)
	}
	return nil
}

// maxDepth bounds how deep a request's JSON nests: a payload is two
// levels below its list (an object, its metadata map). The decoder keeps
// a frame per level: 4 MiB of [[[[... cost 113 MiB.
const maxDepth = 32

// skipRest reads the rest of the array or object opened by d, refusing
// one nested deeper than maxDepth.
func skipRest(dec *json.Decoder, d json.Delim) error {
	if d != '{' && d != '[' {
		return fmt.Errorf("unexpected %v", d)
	}
	for depth := 1; depth > 0; {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			if depth++; depth > maxDepth {
				return fmt.Errorf("nested deeper than %d", maxDepth)
			}
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// namespaces returns the non-empty values of r's X-Namespace headers (the
// Temporal CLI sends the header empty).
func namespaces(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("X-Namespace") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// readBody reads the whole body, at most MaxBodyBytes, into memory, puts
// it back for the SDK's handler (which answers 400 to any read error, so
// the limit is enforced here) and returns it. It answers 413 and returns
// false when the body is larger.
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	tooLarge := func() ([]byte, bool) {
		s.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over %d bytes", s.opts.MaxBodyBytes))
		return nil, false
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return tooLarge()
	case err != nil:
		s.refuse(w, r, http.StatusBadRequest, "read the request body: "+err.Error())
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, true
}

// refuse answers status with msg and logs it.
func (s *server) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.log.Info("codec request refused", "status", status, "method", r.Method, "path", r.URL.Path,
		"remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "reason", msg)
	http.Error(w, msg, status)
}
