package codecserver

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sagabridge/sagabridge/internal/secretname"
)

// tokenRecheck is how often the token file is looked at again.
const tokenRecheck = time.Second

// tokenFile is the bearer token of Options.TokenFile. Safe for concurrent
// use: one mutex guards the token and when it was read.
type tokenFile struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	digest  [sha256.Size]byte // of the token; compared, never the token itself
	raw     []byte            // the file's content, to tell a change
	checked time.Time
}

// newTokenFile reads path; a missing, unreadable or empty file is an error.
func newTokenFile(path string, log *slog.Logger) (*tokenFile, error) {
	t := &tokenFile{path: path, log: log}
	raw, token, err := readToken(path)
	if err != nil {
		return nil, err
	}
	t.raw, t.digest, t.checked = raw, sha256.Sum256(token), time.Now()
	return t, nil
}

// readToken returns the file's content and the token in it.
func readToken(path string) (raw, token []byte, err error) {
	raw, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read the token: %w", secretname.FileError(err))
	}
	token = bytes.TrimSpace(raw)
	if len(token) == 0 {
		return nil, nil, errors.New(path + " is empty: it must hold the bearer token")
	}
	return raw, token, nil
}

// matches reports whether the Authorization header carries the token, in
// constant time (both sides are hashed first, so neither the token's bytes
// nor its length show in the timing).
func (t *tokenFile) matches(authorization string) bool {
	scheme, got, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	gotDigest := sha256.Sum256([]byte(strings.TrimSpace(got)))
	want := t.current()
	return subtle.ConstantTimeCompare(gotDigest[:], want[:]) == 1
}

// current returns the digest of the token, reading the file again if it
// was last read over tokenRecheck ago.
func (t *tokenFile) current() [sha256.Size]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(t.checked) < tokenRecheck {
		return t.digest
	}
	t.checked = time.Now()
	raw, token, err := readToken(t.path)
	switch {
	case err != nil:
		t.log.Warn("codec server token file unreadable; keeping the last token", "file", t.path, "err", err)
	case !bytes.Equal(raw, t.raw):
		t.raw, t.digest = raw, sha256.Sum256(token)
		t.log.Info("codec server token file changed; using the new token", "file", t.path)
	}
	return t.digest
}
