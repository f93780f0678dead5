// Package topicname checks Kafka topic names as brokers do, so that a name
// no broker takes is refused where it is written, naming it, instead of
// failing every request that carries it.
package topicname

import "fmt"

// MaxLen is the longest topic name Kafka accepts.
const MaxLen = 249

// Check returns nil when Kafka accepts name as a topic's name, and an
// error that says why not otherwise.
func Check(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > MaxLen {
		return fmt.Errorf("%q is not a Kafka topic name: at most %d letters, digits, '.', '_' and '-', and not \".\" or \"..\"", name, MaxLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q is not a Kafka topic name: at most %d letters, digits, '.', '_' and '-', and not \".\" or \"..\"", name, MaxLen)
		}
	}
	return nil
}
