package activities

import (
	"testing"

	"github.com/sagabridge/sagabridge/activities/contract"
	"github.com/sagabridge/sagabridge/dlq"
)

// The classes workflow code writes through package contract are the DLQ's
// own, string for string (the header value is the contract).
func TestContractClassesAreTheDLQClasses(t *testing.T) {
	for got, want := range map[contract.Class]dlq.Class{
		contract.ClassActivity:       dlq.ClassActivity,
		contract.ClassWorkflowClosed: dlq.ClassWorkflowClosed,
	} {
		if dlq.Class(got) != want {
			t.Errorf("contract class %q, dlq class %q", got, want)
		}
	}
	if DeadLetterActivity != "DeadLetter" {
		t.Errorf("DeadLetterActivity = %q: renaming it breaks running workflows", DeadLetterActivity)
	}
}
