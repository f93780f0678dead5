package sagaworker

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
)

func TestAMissingSearchAttributeNamesTheCommandThatRegistersIt(t *testing.T) {
	err := checkSearchAttributes("prod", map[string]enumspb.IndexedValueType{}, Keyword("SagaStatus"))
	require.Error(t, err)
	assert.Equal(t, "search attribute SagaStatus is not registered on namespace prod: run "+
		"`temporal operator search-attribute create --namespace prod --name SagaStatus --type Keyword`", err.Error())
}

func TestASearchAttributeOfTheWrongTypeIsReported(t *testing.T) {
	have := map[string]enumspb.IndexedValueType{"SagaStatus": enumspb.INDEXED_VALUE_TYPE_TEXT}
	err := checkSearchAttributes("default", have, Keyword("SagaStatus"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "search attribute SagaStatus on namespace default has type Text, want Keyword")
}

func TestEveryProblemIsReportedInNameOrder(t *testing.T) {
	want := Keyword("B", "A")
	want["C"] = enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST
	err := checkSearchAttributes("default", map[string]enumspb.IndexedValueType{"B": enumspb.INDEXED_VALUE_TYPE_KEYWORD}, want)
	require.Error(t, err)
	assert.Equal(t, "search attribute A is not registered on namespace default: run "+
		"`temporal operator search-attribute create --namespace default --name A --type Keyword`; "+
		"search attribute C is not registered on namespace default: run "+
		"`temporal operator search-attribute create --namespace default --name C --type KeywordList`", err.Error())
}

func TestRegisteredSearchAttributesPass(t *testing.T) {
	have := map[string]enumspb.IndexedValueType{"SagaStatus": enumspb.INDEXED_VALUE_TYPE_KEYWORD, "Other": enumspb.INDEXED_VALUE_TYPE_INT}
	assert.NoError(t, checkSearchAttributes("default", have, Keyword("SagaStatus")))
	assert.NoError(t, checkSearchAttributes("default", nil, nil))
}

func TestTypeNamesAreSpelledAsTheCLIWantsThem(t *testing.T) {
	for typ, want := range map[enumspb.IndexedValueType]string{
		enumspb.INDEXED_VALUE_TYPE_KEYWORD: "Keyword", enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
		enumspb.INDEXED_VALUE_TYPE_DATETIME: "Datetime", enumspb.INDEXED_VALUE_TYPE_BOOL: "Bool",
	} {
		assert.Equal(t, want, typeName(typ))
	}
}
