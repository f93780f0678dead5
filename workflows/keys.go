package workflows

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"unicode/utf8"
)

// keyDigestChange marks the runs that remember a long or binary
// idempotency key by its digest (rememberedKey). Runs recorded before it
// remembered every key whole: their carried state, and so when they
// continued as new, is sized that way on replay.
const keyDigestChange = "sagabridge.idempotency-key-digest"

// maxKeptKey is the longest idempotency key remembered as it is; a longer
// one is remembered by its digest (50 bytes).
const maxKeptKey = 64

// rememberedKey is how a key is remembered and carried: as it is when it is
// UTF-8 of at most maxKeptKey bytes, otherwise "sha256:" and the base64 of
// its SHA-256. Keys travel across ContinueAsNew as JSON strings, which turn
// each byte that is not UTF-8 into U+FFFD (so a binary key, a raw UUID, was
// not recognised by the next run), and the window bounds their number, not
// their bytes (1,000 keys of 1 KB filled the 1 MiB carry on their own).
// It is idempotent: a digest is short UTF-8, kept as it is.
func rememberedKey(k string) string {
	if utf8.ValidString(k) && len(k) <= maxKeptKey {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "sha256:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// recentKeys remembers the last window keys, oldest evicted first.
type recentKeys struct {
	window int
	digest bool // keys go through rememberedKey (keyDigestChange)
	order  []string
	seen   map[string]struct{}
}

func newRecentKeys(window int, digest bool, carried []string) *recentKeys {
	if window < 1 {
		window = 1
	}
	r := &recentKeys{window: window, digest: digest, seen: map[string]struct{}{}}
	for _, k := range carried {
		r.add(k)
	}
	return r
}

// add remembers k and reports false if it was already remembered.
func (r *recentKeys) add(k string) bool {
	if r.digest {
		k = rememberedKey(k)
	}
	if _, dup := r.seen[k]; dup {
		return false
	}
	r.seen[k] = struct{}{}
	r.order = append(r.order, k)
	if len(r.order) > r.window {
		delete(r.seen, r.order[0])
		r.order[0] = ""
		r.order = r.order[1:]
	}
	return true
}

// forget drops k, if remembered.
func (r *recentKeys) forget(k string) {
	if r.digest {
		k = rememberedKey(k)
	}
	if _, ok := r.seen[k]; !ok {
		return
	}
	delete(r.seen, k)
	if i := slices.Index(r.order, k); i >= 0 {
		r.order = slices.Delete(r.order, i, i+1)
	}
}

func (r *recentKeys) list() []string { return append([]string(nil), r.order...) }
