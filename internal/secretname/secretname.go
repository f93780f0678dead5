// Package secretname checks what a configuration gives as the name of a
// secret's source (an environment variable, a file) before an error
// repeats it: a secret written in its place, a natural slip, must not
// reach a log.
package secretname

import (
	"encoding/base64"
	"strings"
)

// Hidden is what an error says instead of a name that may be the secret.
const Hidden = "is not the name of an environment variable (letters, digits and '_'; not shown, since it may be the secret itself)"

// Env reports whether name is an environment variable's name: a letter or
// '_', then letters, digits and '_'.
func Env(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// KeyLike reports whether s reads as a 32-byte key in base64, the form
// of the payload codec's keys: a file path that does is not shown.
func KeyLike(s string) bool {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	return err == nil && len(b) == 32
}
