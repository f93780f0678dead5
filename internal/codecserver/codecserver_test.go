package codecserver_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sagabridge/sagabridge/codec"
	"github.com/sagabridge/sagabridge/internal/codecserver"
)

const uiOrigin = "https://temporal.example.com"

// fixture is a codec server on a real HTTP listener and a payload
// encrypted with its key.
type fixture struct {
	url       string
	tokenFile string
	encrypted []byte // protojson Payloads, as the CLI and the UI send them
}

func newFixture(t *testing.T, mutate func(*codecserver.Options)) fixture {
	t.Helper()
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	c, err := codec.NewAESGCM(key, "test")
	require.NoError(t, err)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600))
	opts := codecserver.Options{Codec: c, Namespace: "orders", TokenFile: tokenFile, AllowedOrigins: []string{uiOrigin}}
	if mutate != nil {
		mutate(&opts)
	}
	h, err := codecserver.New(opts)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	plain, err := converter.GetDefaultDataConverter().ToPayload(map[string]string{"status": "confirmed"})
	require.NoError(t, err)
	enc, err := c.Encode([]*commonpb.Payload{plain})
	require.NoError(t, err)
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: enc})
	require.NoError(t, err)
	return fixture{url: srv.URL, tokenFile: tokenFile, encrypted: body}
}

// post sends body to path with headers ("Name: value").
func (f fixture) post(t *testing.T, path string, body []byte, headers ...string) (*http.Response, string) {
	t.Helper()
	return f.do(t, http.MethodPost, path, bytes.NewReader(body), headers...)
}

func (f fixture) do(t *testing.T, method, path string, body io.Reader, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, body)
	require.NoError(t, err)
	for _, h := range headers {
		if h == "" {
			continue
		}
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(out)
}

const (
	bearer = "Authorization: Bearer s3cret-token"
	asJSON = "Content-Type: application/json"
)

func TestDecodeNeedsTheBearerToken(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.post(t, "/decode", f.encrypted, asJSON, bearer, "X-Namespace: orders")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var decoded commonpb.Payloads
	require.NoError(t, protojson.Unmarshal([]byte(body), &decoded))
	var state map[string]string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(decoded.Payloads[0], &state))
	assert.Equal(t, "confirmed", state["status"])

	for name, auth := range map[string]string{
		"no token":        "",
		"a wrong token":   "Authorization: Bearer s3cret-tokeN",
		"a token prefix":  "Authorization: Bearer s3cret",
		"another scheme":  "Authorization: Basic s3cret-token",
		"the bare token":  "Authorization: s3cret-token",
		"an empty bearer": "Authorization: Bearer ",
	} {
		resp, body := f.post(t, "/decode", f.encrypted, asJSON, auth)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s: %s", name, body)
		assert.Equal(t, `Bearer realm="codec-server"`, resp.Header.Get("WWW-Authenticate"), name)
		assert.NotContains(t, body, "confirmed", name)
	}
}

func TestWithoutATokenFileEveryoneMayDecode(t *testing.T) {
	f := newFixture(t, func(o *codecserver.Options) { o.TokenFile = "" })
	resp, body := f.post(t, "/decode", f.encrypted, asJSON)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
}

// The token file is read again (at most once a second) when it changes.
func TestARotatedTokenIsUsedWithoutARestart(t *testing.T) {
	var logs syncLog
	f := newFixture(t, func(o *codecserver.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	require.NoError(t, os.WriteFile(f.tokenFile, []byte("rotated\n"), 0o600))
	require.Eventually(t, func() bool {
		resp, _ := f.post(t, "/decode", f.encrypted, asJSON, "Authorization: Bearer rotated")
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 100*time.Millisecond, "the new token never worked")
	resp, _ := f.post(t, "/decode", f.encrypted, asJSON, bearer)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the old token still works")

	require.NoError(t, os.WriteFile(f.tokenFile, nil, 0o600)) // emptied by mistake
	// A request reads the file again once a second has passed: wait for
	// the read that found it empty, not for a second.
	require.Eventually(t, func() bool {
		_, _ = f.post(t, "/decode", f.encrypted, asJSON, "Authorization: Bearer rotated")
		return strings.Contains(logs.String(), "token file unreadable; keeping the last token")
	}, 5*time.Second, 100*time.Millisecond, "the emptied file was never read again")
	resp, _ = f.post(t, "/decode", f.encrypted, asJSON, "Authorization: Bearer rotated")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "an emptied file keeps the last token")
	resp, _ = f.post(t, "/decode", f.encrypted, asJSON, "Authorization: Bearer ")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "an emptied file lets an empty token in")
}

func TestEncodeIsNotFoundUnlessEnabled(t *testing.T) {
	plain, err := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{
		{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"minted"`)},
	}})
	require.NoError(t, err)
	f := newFixture(t, nil)
	for _, path := range []string{"/encode", "/default/encode"} {
		resp, body := f.post(t, path, plain, asJSON, bearer)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", path, body)
	}
	resp, _ := f.post(t, "/other", plain, asJSON, bearer)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = f.post(t, "/encode", []byte(`not json`), asJSON, bearer)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "a body that does not parse")
	// What `temporal workflow query` sends before every query: no payloads,
	// so no ciphertext.
	for _, empty := range []string{`{}`, `{"payloads":[]}`} {
		resp, body := f.post(t, "/encode", []byte(empty), asJSON, bearer)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", empty, body)
		assert.NotContains(t, body, "YmluYXJ5L2VuY3J5cHRlZA==", empty)
	}
	resp, _ = f.post(t, "/encode", []byte(`{}`), asJSON)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the empty encode needs the token too")

	f = newFixture(t, func(o *codecserver.Options) { o.EnableEncode = true })
	resp, body := f.post(t, "/encode", plain, asJSON, bearer)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "YmluYXJ5L2VuY3J5cHRlZA==", "binary/encrypted, base64") // the payload's encoding
}

func TestABodyOverTheLimitIs413(t *testing.T) {
	f := newFixture(t, func(o *codecserver.Options) { o.MaxBodyBytes = 1024 })
	big := bytes.Repeat([]byte(" "), 1025)
	resp, body := f.post(t, "/decode", big, asJSON, bearer)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "with Content-Length: %s", body)

	// Chunked, without a Content-Length: the limit holds while reading.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(big)
		_ = pw.Close()
	}()
	resp, body = f.do(t, http.MethodPost, "/decode", pr, asJSON, bearer)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "chunked: %s", body)

	resp, body = f.post(t, "/decode", f.encrypted, asJSON, bearer)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a body under the limit: %s", body)

	_, err := codecserver.New(codecserver.Options{Codec: &codec.AESGCM{}, Namespace: "n"})
	require.NoError(t, err, "the default limit")
}

// The Temporal UI's browser sends a preflight before its POST (it sets
// Content-Type: application/json and X-Namespace); the allowed origin gets
// the CORS answer, any other origin nothing.
func TestTheTemporalUIsPreflightIsAnswered(t *testing.T) {
	f := newFixture(t, nil)
	preflight := func(origin string) *http.Response {
		resp, _ := f.do(t, http.MethodOptions, "/decode", nil, "Origin: "+origin,
			"Access-Control-Request-Method: POST", "Access-Control-Request-Headers: content-type,x-namespace")
		return resp
	}
	resp := preflight(uiOrigin)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "POST, OPTIONS", resp.Header.Get("Access-Control-Allow-Methods"))
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	// Authorization-Extras: the UI's ID token beside its access token
	// (an OIDC login with "pass access token"); without it the browser
	// blocked every decode.
	for _, h := range []string{"content-type", "x-namespace", "authorization", "authorization-extras"} {
		assert.Contains(t, strings.Split(strings.ReplaceAll(allowed, " ", ""), ","), h)
	}
	assert.Equal(t, "true", resp.Header.Get("Access-Control-Allow-Credentials"))
	assert.Contains(t, resp.Header.Values("Vary"), "Origin")

	resp = preflight("https://evil.example.com")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	for name := range resp.Header {
		assert.False(t, strings.HasPrefix(name, "Access-Control-"), "a disallowed origin got %s", name)
	}

	// The POST that follows carries the origin and gets it back.
	resp, body := f.post(t, "/decode", f.encrypted, asJSON, bearer, "X-Namespace: orders", "Origin: "+uiOrigin)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	// A page of another origin is refused even with the token (a simple
	// request needs no preflight).
	resp, body = f.post(t, "/decode", f.encrypted, "Content-Type: text/plain", bearer, "Origin: https://evil.example.com")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, body)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
}

// An allowed origin written with its scheme's default port matches the
// Origin a browser sends, which never has it: every request of the UI was
// refused with 403.
func TestAnOriginWithItsDefaultPortMatches(t *testing.T) {
	f := newFixture(t, func(o *codecserver.Options) {
		o.AllowedOrigins = []string{"https://temporal.example.com:443", "http://ui.internal:80", "https://other.example.com:8443"}
	})
	for origin, want := range map[string]int{
		"https://temporal.example.com": http.StatusOK, "http://ui.internal": http.StatusOK,
		"https://other.example.com:8443": http.StatusOK, "https://other.example.com": http.StatusForbidden,
	} {
		resp, body := f.post(t, "/decode", f.encrypted, asJSON, bearer, "X-Namespace: orders", "Origin: "+origin)
		assert.Equal(t, want, resp.StatusCode, "%s: %s", origin, body)
	}
}

// The key belongs to one namespace: a request for another is refused.
func TestARequestForAnotherNamespaceIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.post(t, "/decode", f.encrypted, asJSON, bearer, "X-Namespace: payments")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, body)
	assert.Contains(t, body, "namespace orders")
	resp, body = f.post(t, "/decode", f.encrypted, asJSON, bearer, "X-Namespace: orders")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "its own namespace: %s", body)
	resp, body = f.post(t, "/decode", f.encrypted, asJSON, bearer, "X-Namespace: ")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "an empty X-Namespace (the Temporal CLI's): %s", body)
	resp, body = f.post(t, "/decode", f.encrypted, asJSON, bearer)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "no X-Namespace (curl): %s", body)
}

func TestOnlyPostAndThePreflightAreServed(t *testing.T) {
	f := newFixture(t, nil)
	resp, _ := f.do(t, http.MethodGet, "/decode", nil, bearer)
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "POST, OPTIONS", resp.Header.Get("Allow"))
}

func TestNewNamesTheBadOption(t *testing.T) {
	c := &codec.AESGCM{}
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	for want, opts := range map[string]codecserver.Options{
		"Options.Codec":          {Namespace: "n"},
		"Options.Namespace":      {Codec: c},
		"Options.MaxBodyBytes":   {Codec: c, Namespace: "n", MaxBodyBytes: -1},
		"Options.AllowedOrigins": {Codec: c, Namespace: "n", AllowedOrigins: []string{"https://ui.example.com/path"}},
		"Options.TokenFile":      {Codec: c, Namespace: "n", TokenFile: empty},
	} {
		_, err := codecserver.New(opts)
		require.Error(t, err, want)
		assert.Contains(t, err.Error(), want)
	}
	for _, bad := range []string{"*", "temporal.example.com", "ftp://x", "https://user@x"} {
		_, err := codecserver.New(codecserver.Options{Codec: c, Namespace: "n", AllowedOrigins: []string{bad}})
		assert.Error(t, err, bad)
	}
}

// syncLog is a log destination safe for the server's goroutines.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// A body under the size limit made of empty payloads ({}, three bytes
// each) cost about 60 times its size to parse, even on the /encode that
// refuses it; the number of payloads is bounded before they are parsed,
// however the body spells them (review: a second "payloads" member, one
// named in another case, or a fault after the items let protojson parse
// them all before it failed).
func TestManyPayloadsUnderTheSizeLimitAreRefusedBeforeTheyAreParsed(t *testing.T) {
	f := newFixture(t, nil)
	n := (codecserver.DefaultMaxBodyBytes - 40) / 3
	items := strings.Repeat("{},", n-1) + "{}"
	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"plain", `{"payloads":[` + items + `]}`, http.StatusRequestEntityTooLarge},
		{"a second member", `{"payloads":[` + items + `],"payloads":[]}`, http.StatusRequestEntityTooLarge},
		{"another case", `{"payloads":[` + items + `],"Payloads":[]}`, http.StatusRequestEntityTooLarge},
		{"a number last", `{"payloads":[` + items + `,1]}`, http.StatusRequestEntityTooLarge},
		{"text after the object", `{"payloads":[` + items + `]} x`, http.StatusBadRequest},
		{"not closed", `{"payloads":[` + items, http.StatusBadRequest},
		// The decoder keeps a frame per level: 113 MiB for 4 MiB of these.
		{"nested", `{"x":` + strings.Repeat("[", n*3/2) + strings.Repeat("]", n*3/2) + `}`, http.StatusBadRequest},
		{"nested in the list", `{"payloads":[` + strings.Repeat("[", n*3/2) + strings.Repeat("]", n*3/2) + `]}`, http.StatusBadRequest},
	} {
		for _, path := range []string{"/decode", "/encode"} {
			want := c.status
			if path == "/encode" {
				want = http.StatusNotFound // off: refused before the count matters
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			resp, body := f.post(t, path, []byte(c.body), asJSON, bearer)
			runtime.ReadMemStats(&after)
			assert.Equal(t, want, resp.StatusCode, "%s %s: %.200s", c.name, path, body)
			if want == http.StatusRequestEntityTooLarge {
				assert.True(t, strings.Contains(body, "payloads, over 10000"), "%s %s: %.200s", c.name, path, body)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			assert.Less(t, alloc, uint64(8*len(c.body)), "%s %s: a %d-byte body allocated %d MiB", c.name, path, len(c.body), alloc>>20)
		}
	}
	// At the limit, served.
	at := []byte(`{"payloads":[` + strings.TrimSuffix(strings.Repeat(`{"data":"eA=="},`, codecserver.DefaultMaxPayloads), ",") + `]}`)
	resp, body := f.post(t, "/decode", at, asJSON, bearer)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%.200s", body)
}
