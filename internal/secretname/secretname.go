// Package secretname keeps the name of a secret's source (an environment
// variable, a file) out of errors when it may be the secret itself: a
// secret written in its place, a natural slip, must not reach a log.
package secretname

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Hidden is what an error says instead of a name that may be the secret.
const Hidden = "names no environment variable that is set (not shown: it is not an UPPER_SNAKE_CASE name, so it may be the secret itself)"

// LookupEnv is os.LookupEnv of name, a secret's variable: a variable
// that is set is used whatever its name, and the error for one that is
// not names it only when it reads as a variable name (Env); otherwise it
// says Hidden.
func LookupEnv(name string) (string, error) {
	if v, ok := os.LookupEnv(name); ok {
		return v, nil
	}
	if !Env(name) {
		return "", errors.New(Hidden)
	}
	return "", fmt.Errorf("the environment variable %s is not set", name)
}

// FileError is err, from reading or checking a secret's file, without the
// file's path, which may be the secret itself written in its place (a
// password, an API key): the caller names the field instead.
func FileError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s (path not shown): %w", pe.Op, pe.Err)
	}
	return err
}

// Env reports whether name reads as an environment variable's name, as
// they are conventionally written: an upper-case letter or '_', then
// upper-case letters, digits and '_', at most 128 bytes. Passwords and API
// keys made of letters and digits only are common ("Summer2026",
// "sk_live_51Hx..."), and a lower-case letter is what tells them apart.
func Env(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
