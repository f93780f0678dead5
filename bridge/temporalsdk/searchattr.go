package temporalsdk

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/sagabridge/sagabridge/bridge"
	"github.com/sagabridge/sagabridge/config"
)

// SearchAttributeTypes lists the search attributes registered in the
// namespace (custom and system), each with its type as the configuration
// names it (config.SearchAttributeKeyword, ...); it implements
// bridge.SearchAttributeLister.
func (t Client) SearchAttributeTypes(ctx context.Context) (map[string]string, error) {
	resp, err := t.Client.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: t.namespace()})
	if err != nil {
		return nil, fmt.Errorf("list the search attributes of namespace %s: %w", t.namespace(), err)
	}
	out := map[string]string{}
	for _, m := range []map[string]enumspb.IndexedValueType{resp.GetSystemAttributes(), resp.GetCustomAttributes()} {
		for name, typ := range m {
			out[name] = typeName(typ)
		}
	}
	return out, nil
}

// typeName is the configuration's name of a search attribute type.
func typeName(t enumspb.IndexedValueType) string {
	switch t {
	case enumspb.INDEXED_VALUE_TYPE_KEYWORD:
		return config.SearchAttributeKeyword
	case enumspb.INDEXED_VALUE_TYPE_TEXT:
		return config.SearchAttributeText
	case enumspb.INDEXED_VALUE_TYPE_INT:
		return config.SearchAttributeInt
	case enumspb.INDEXED_VALUE_TYPE_DOUBLE:
		return config.SearchAttributeDouble
	case enumspb.INDEXED_VALUE_TYPE_BOOL:
		return config.SearchAttributeBool
	case enumspb.INDEXED_VALUE_TYPE_DATETIME:
		return config.SearchAttributeDatetime
	case enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST:
		return config.SearchAttributeKeywordList
	}
	return t.String()
}

// typedSearchAttributes builds the SDK's typed search attributes.
func typedSearchAttributes(m map[string]bridge.SearchAttribute) (temporal.SearchAttributes, error) {
	var updates []temporal.SearchAttributeUpdate
	for name, a := range m {
		var u temporal.SearchAttributeUpdate
		ok := true
		switch a.Type {
		case config.SearchAttributeKeyword:
			var v string
			if v, ok = a.Value.(string); ok {
				u = temporal.NewSearchAttributeKeyKeyword(name).ValueSet(v)
			}
		case config.SearchAttributeText:
			var v string
			if v, ok = a.Value.(string); ok {
				u = temporal.NewSearchAttributeKeyString(name).ValueSet(v)
			}
		case config.SearchAttributeInt:
			var v int64
			if v, ok = a.Value.(int64); ok {
				u = temporal.NewSearchAttributeKeyInt64(name).ValueSet(v)
			}
		case config.SearchAttributeDouble:
			var v float64
			if v, ok = a.Value.(float64); ok {
				u = temporal.NewSearchAttributeKeyFloat64(name).ValueSet(v)
			}
		case config.SearchAttributeBool:
			var v bool
			if v, ok = a.Value.(bool); ok {
				u = temporal.NewSearchAttributeKeyBool(name).ValueSet(v)
			}
		case config.SearchAttributeDatetime:
			var v time.Time
			if v, ok = a.Value.(time.Time); ok {
				u = temporal.NewSearchAttributeKeyTime(name).ValueSet(v)
			}
		case config.SearchAttributeKeywordList:
			var v []string
			if v, ok = a.Value.([]string); ok {
				u = temporal.NewSearchAttributeKeyKeywordList(name).ValueSet(v)
			}
		default:
			return temporal.SearchAttributes{}, fmt.Errorf("%s: unknown type %q", name, a.Type)
		}
		if !ok {
			return temporal.SearchAttributes{}, fmt.Errorf("%s: %T is not a %s value", name, a.Value, a.Type)
		}
		updates = append(updates, u)
	}
	return temporal.NewSearchAttributes(updates...), nil
}
