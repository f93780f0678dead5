package topicname

import (
	"strings"
	"testing"
)

func TestCheckAcceptsWhatKafkaAccepts(t *testing.T) {
	for name, ok := range map[string]bool{
		"orders": true, "orders.dlq": true, "a_b-C.9": true, strings.Repeat("t", MaxLen): true,
		"": false, ".": false, "..": false, strings.Repeat("t", MaxLen+1): false, "a b": false, "a/b": false, "ö": false,
	} {
		if err := Check(name); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want accepted %v", name, err, ok)
		}
	}
}
