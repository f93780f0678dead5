package sagaworker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
)

// Keyword returns names as Keyword search attributes, the type
// workflows.Entity.StatusSearchAttribute needs, for Worker.SearchAttributes.
func Keyword(names ...string) map[string]enumspb.IndexedValueType {
	m := make(map[string]enumspb.IndexedValueType, len(names))
	for _, n := range names {
		m[n] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	return m
}

// RequireSearchAttributes checks that namespace has each search attribute
// in want with its type. A workflow that upserts an unregistered attribute
// fails every workflow task until someone registers it, so a worker checks
// at start; the error names each missing attribute with the command that
// registers it (`temporal operator search-attribute create ...`).
func RequireSearchAttributes(ctx context.Context, c client.Client, namespace string, want map[string]enumspb.IndexedValueType) error {
	if len(want) == 0 {
		return nil
	}
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	return checkSearchAttributes(namespace, resp.GetCustomAttributes(), want)
}

// checkSearchAttributes compares the custom attributes a namespace has with
// those wanted, one problem per attribute, sorted by name.
func checkSearchAttributes(namespace string, have, want map[string]enumspb.IndexedValueType) error {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		got, ok := have[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("search attribute %s is not registered on namespace %s: run `%s`",
				name, namespace, CreateSearchAttributeCommand(namespace, name, want[name])))
		case got != want[name]:
			problems = append(problems, fmt.Sprintf("search attribute %s on namespace %s has type %s, want %s (a search attribute's type cannot change: use another name)",
				name, namespace, typeName(got), typeName(want[name])))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// CreateSearchAttributeCommand is the Temporal CLI command that registers
// search attribute name of type typ on namespace.
func CreateSearchAttributeCommand(namespace, name string, typ enumspb.IndexedValueType) string {
	return fmt.Sprintf("temporal operator search-attribute create --namespace %s --name %s --type %s", namespace, name, typeName(typ))
}

// typeName is typ as the CLI spells it ("Keyword", "KeywordList"), which
// is how the API's enum prints itself.
func typeName(typ enumspb.IndexedValueType) string { return typ.String() }
