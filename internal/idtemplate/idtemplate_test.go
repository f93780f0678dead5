package idtemplate

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/event"
)

// A workflow ID can come from the payload or a header when the Kafka key
// is something else (a customer ID keys the topic, an order ID names the
// saga).
func TestPlaceholdersFromThePayloadAndHeaders(t *testing.T) {
	tpl, err := Parse("order-{json:order_id}-{header:region}")
	require.NoError(t, err)
	assert.True(t, tpl.UsesJSON())
	env := event.Envelope{Key: "customer-7", Value: json.RawMessage(`{"order_id":"o-42","n":3}`),
		Headers: []event.Header{{Key: "region", Value: []byte("eu")}}}
	id, err := tpl.Render(env)
	require.NoError(t, err)
	assert.Equal(t, "order-o-42-eu", id)

	num, err := Parse("order-{json:n}")
	require.NoError(t, err)
	id, err = num.Render(env)
	require.NoError(t, err)
	assert.Equal(t, "order-3", id, "a number's literal")

	for value, want := range map[string]string{
		`{"other":1}`:          "record has an empty {json:order_id}",
		`{"order_id":null}`:    "record has an empty {json:order_id}",
		`{"order_id":{"a":1}}`: `{json:order_id}: the field is {"a":1}, not a string or a number`,
		`[1,2]`:                "{json:order_id}: the value is not a JSON object",
	} {
		_, err := tpl.Render(event.Envelope{Value: json.RawMessage(value), Headers: env.Headers})
		assert.EqualError(t, err, want, value)
	}
	_, err = tpl.Render(event.Envelope{Value: env.Value})
	assert.EqualError(t, err, "record has an empty {header:region}")
}

func TestParseNamesTheBadPlaceholder(t *testing.T) {
	for text, want := range map[string]string{
		"o-{json:}":   `placeholder {json:} in "o-{json:}" names no field`,
		"o-{header:}": `placeholder {header:} in "o-{header:}" names no header`,
		"o-{id}":      `unknown placeholder {id} in "o-{id}" (allowed: {key}, {topic}, {type}, {json:field}, {header:name})`,
	} {
		_, err := Parse(text)
		assert.EqualError(t, err, want, text)
	}
	plain, err := Parse("o-{key}")
	require.NoError(t, err)
	assert.False(t, plain.UsesJSON())
}

// A {json:...} string that is not valid UTF-8, or has a lone surrogate
// escape, is refused: decoding it would turn each bad part into U+FFFD, and
// records of different entities would share one workflow. (Both rendered
// "o-\ufffd".)
func TestAJSONFieldThatIsNotValidTextIsRefused(t *testing.T) {
	tpl, err := Parse("o-{json:id}")
	require.NoError(t, err)
	for _, raw := range []string{`{"id":"\ud800"}`, `{"id":"\udbff"}`, "{\"id\":\"a\xff\"}", "{\"id\":\"a\xfe\"}",
		// An escaped backslash before "ufffd" is no replacement character
		// written: it allowed one bad part, and these three rendered one ID.
		"{\"id\":\"\\\\ufffd\xfe\"}", `{"id":"\\ufffd\ud800"}`, "{\"id\":\"\\\\ufffd\xff\"}"} {
		_, err := tpl.Render(event.Envelope{Value: json.RawMessage(raw)})
		assert.Error(t, err, "%q", raw)
	}
	for raw, want := range map[string]string{
		`{"id":"\ufffd"}`:       "o-\ufffd", // a replacement character the producer wrote is text like any other
		"{\"id\":\"\uFFFD\"}":   "o-\ufffd",
		`{"id":"\ud83d\ude00"}`: "o-\U0001F600", // a surrogate pair
		`{"id":"\\ufffd"}`:      `o-\ufffd`,     // six characters, not U+FFFD
	} {
		id, err := tpl.Render(event.Envelope{Value: json.RawMessage(raw)})
		require.NoError(t, err, "%q", raw)
		assert.Equal(t, want, id)
	}
}

// Two placeholders with nothing between them are refused: "{key}{type}"
// made one ID of key "ab" type "c" and key "a" type "bc", two entities
// sharing a workflow.
func TestPlaceholdersThatTouchAreRefused(t *testing.T) {
	for _, s := range []string{"{key}{type}", "o-{topic}{key}", "{header:tenant}{json:id}-x"} {
		_, err := Parse(s)
		if assert.Error(t, err, s) {
			assert.Contains(t, err.Error(), "touch: put a separator between them", s)
		}
	}
	_, err := Parse("{topic}-{key}")
	assert.NoError(t, err)
}
