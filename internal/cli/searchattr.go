package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
)

// RequireSearchAttributes checks that namespace has each search attribute
// in want with its type. A workflow that upserts an unregistered attribute
// fails every workflow task until someone registers it, so a worker checks
// at start and names the command that fixes it.
func RequireSearchAttributes(ctx context.Context, c client.Client, namespace string, want map[string]enumspb.IndexedValueType) error {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	have := resp.GetCustomAttributes()
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		got, ok := have[name]
		typ := strings.TrimPrefix(want[name].String(), "INDEXED_VALUE_TYPE_")
		typ = strings.ToUpper(typ[:1]) + strings.ToLower(typ[1:])
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("search attribute %s is not registered on namespace %s: run `temporal operator search-attribute create --namespace %s --name %s --type %s`",
				name, namespace, namespace, name, typ))
		case got != want[name]:
			problems = append(problems, fmt.Sprintf("search attribute %s on namespace %s has type %s, want %s", name, namespace, got, want[name]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
