package config

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// updateDocsEnv, when set, makes TestConfigReferenceIsUpToDate rewrite
// docs/CONFIG.md instead of comparing it.
const updateDocsEnv = "SAGABRIDGE_UPDATE_DOCS"

// fieldDocs reads the doc comment of every field of every struct type in
// this package's source, by type and field name. A field without a comment
// shares the previous field's ("CertFile and KeyFile are ...").
func fieldDocs(t *testing.T) map[string]map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	docs := map[string]map[string]string{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			byField := map[string]string{}
			prev := ""
			for _, fld := range st.Fields.List {
				doc := strings.Join(strings.Fields(fld.Doc.Text()), " ")
				if doc == "" {
					doc = prev
				}
				prev = doc
				for _, name := range fld.Names {
					byField[name.Name] = doc
				}
			}
			docs[ts.Name.Name] = byField
			return true
		})
	}
	return docs
}

// configReference renders docs/CONFIG.md.
func configReference(t *testing.T) string {
	docs := fieldDocs(t)
	var b strings.Builder
	b.WriteString(`# Configuration reference

Generated from the doc comments of the configuration types in ` + "`config/`" + ` by
` + "`SAGABRIDGE_UPDATE_DOCS=1 go test ./config -run TestConfigReferenceIsUpToDate`" + `; the test fails
when this file is out of date.

` + "`cmd/bridge -config bridge.yaml`" + ` reads every field below; ` + "`cmd/worker -config bridge.yaml`" + ` reads the
` + "`kafka`" + `, ` + "`temporal`" + ` and ` + "`dlq`" + ` sections (` + "`dlq.suffix`" + ` and ` + "`dlq.max_message_bytes`" + ` for its dead letters). Precedence, lowest first: the defaults, the file, the
environment (` + "`SAGABRIDGE_<PATH>`" + `: the field's path in capitals with ` + "`_`" + ` for ` + "`.`" + `; lists
comma-separated), the command-line flags (` + "`-kafka-brokers`" + `, ` + "`-temporal-address`" + `; the worker's
` + "`-namespace`" + `). Unknown fields are errors, and so are unknown ` + "`SAGABRIDGE_*`" + ` variables (unless a ` + "`*_env`" + ` field names them, or they have the shape of the variables Kubernetes sets for a Service, ` + "`SAGABRIDGE_BRIDGE_METRICS_SERVICE_HOST`" + `); every error names the field, or the variable, with the closest known name. A key with no value is an error (remove it to take the default), and so is an empty text for a field with a default (` + "`namespace: \"\"`" + `, as a template renders a missing value) and a value YAML would read as something else: a duration without a unit, a fraction or a leading zero in a whole number, a word where a number belongs or one other than YAML's true, false, yes, no, on and off where true or false does (the environment takes Go's true, false, 1 and 0). ` + "`bridge -print-config`" + `
prints the result with secrets redacted. Routes are set only in the file.

| field | environment | type | meaning |
| --- | --- | --- | --- |
`)
	row := func(path, env string, typ reflect.Type, doc string) {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", path, env, typeName(typ), strings.ReplaceAll(doc, "|", `\|`))
	}
	var walk func(t reflect.Type, path string, env bool)
	walk = func(t reflect.Type, path string, env bool) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			doc := docs[t.Name()][f.Name]
			switch {
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				walk(f.Type.Elem(), p+"[]", false)
			case f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct:
				row(p, "file only", f.Type, doc)
				walk(f.Type.Elem(), p+".<name>", false)
			case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]():
				walk(f.Type, p, env)
			default:
				e := "file only"
				if env {
					e = "`" + EnvPrefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_")) + "`"
				}
				row(p, e, f.Type, doc)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", true)
	return b.String()
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration (`10s`)"
	case t.Kind() == reflect.Slice:
		return "list of " + t.Elem().Kind().String()
	case t.Kind() == reflect.Map && t.Elem().Kind() == reflect.Struct:
		return "map of name to " + t.Elem().Name()
	case t.Kind() == reflect.Map:
		return "map of name to value"
	case t.Kind() == reflect.Interface:
		return "value"
	case t.Kind() == reflect.Int64 || t.Kind() == reflect.Int:
		return "integer"
	case t.Kind() == reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

func TestConfigReferenceIsUpToDate(t *testing.T) {
	want := configReference(t)
	path := filepath.Join("..", "docs", "CONFIG.md")
	if os.Getenv(updateDocsEnv) != "" {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		return
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, string(got), "docs/CONFIG.md is out of date: run %s=1 go test ./config -run TestConfigReferenceIsUpToDate", updateDocsEnv)
}

func TestEveryConfigFieldIsDocumented(t *testing.T) {
	for line := range strings.Lines(configReference(t)) {
		if strings.HasPrefix(line, "| `") && strings.HasSuffix(strings.TrimSpace(line), "|  |") {
			t.Errorf("no doc comment: %s", strings.TrimSpace(line))
		}
	}
}
