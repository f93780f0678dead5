package workflows

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stateDoc is the documented contract of the state query.
const stateDoc = "../docs/STATE.md"

// jsonFields lists the JSON names of t's fields, embedded structs' included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if tag != "-" && f.IsExported() {
			out = append(out, tag)
		}
	}
	return out
}

// docExamples returns the JSON examples of docs/STATE.md.
func docExamples(t *testing.T, doc string) []string {
	t.Helper()
	var out []string
	for _, block := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(doc, -1) {
		out = append(out, block[1])
	}
	require.NotEmpty(t, out, "%s has no JSON example", stateDoc)
	return out
}

// docs/STATE.md documents every field of the Snapshot, and nothing else.
func TestStateDocListsEveryField(t *testing.T) {
	b, err := os.ReadFile(stateDoc)
	require.NoError(t, err)
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		documented = append(documented, m[1])
	}
	fields := jsonFields(reflect.TypeFor[Snapshot[struct{}]]())
	slices.Sort(documented)
	slices.Sort(fields)
	assert.Equal(t, fields, documented, "the table in %s", stateDoc)
}

// Each JSON example in docs/STATE.md is what the code writes: decoded into
// a Snapshot and encoded again, it is the same JSON (no field misnamed,
// none the code would add or leave out, [] where the code writes []).
func TestStateDocExamplesAreWhatTheCodeWrites(t *testing.T) {
	b, err := os.ReadFile(stateDoc)
	require.NoError(t, err)
	for i, example := range docExamples(t, string(b)) {
		dec := json.NewDecoder(strings.NewReader(example))
		dec.DisallowUnknownFields()
		var s Snapshot[json.RawMessage]
		require.NoError(t, dec.Decode(&s), "example %d", i+1)
		en := &Entity[json.RawMessage]{Final: []string{"completed", "compensated", "cancelled"}}
		r := &runner[json.RawMessage]{en: en, c: s, timers: map[string]*timer{}}
		snap := r.snapshot()
		snap.Timeouts = s.Timeouts // the runner lists the timers it runs
		out, err := json.Marshal(snap)
		require.NoError(t, err)
		assert.JSONEq(t, example, string(out), "example %d of %s", i+1, stateDoc)
	}
}
