package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the environment variable of every configuration field:
// the field's YAML path in capitals with "_" for ".", such as
// SAGABRIDGE_KAFKA_BROKERS for kafka.brokers or
// SAGABRIDGE_DISPATCH_DRAIN_TIMEOUT for dispatch.drain_timeout. Lists are
// comma-separated; routes are set only in the file.
const EnvPrefix = "SAGABRIDGE_"

// configField is one settable leaf of Config.
type configField struct {
	path  string // YAML path, "kafka.tls.ca_file"
	env   string
	index []int // reflect.Value.FieldByIndex
	typ   reflect.Type
}

// configFields lists the leaves of Config below its sections, in order.
func configFields() []configField {
	var out []configField
	var walk func(t reflect.Type, path string, index []int)
	walk = func(t reflect.Type, path string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || name == "routes" {
				continue
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type, p, idx)
				continue
			}
			out = append(out, configField{path: p, env: EnvPrefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_")), index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// FromEnv reads the SAGABRIDGE_* variables that lookup (os.LookupEnv)
// knows and returns the Override that applies them. It fails, naming the
// variable and the field, on a value that does not parse.
func FromEnv(lookup func(string) (string, bool)) (Override, error) {
	type set struct {
		f configField
		v reflect.Value
	}
	var sets []set
	var errs []error
	for _, f := range configFields() {
		raw, ok := lookup(f.env)
		if !ok {
			continue
		}
		v, err := parseValue(f.typ, raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", f.env, f.path, err))
			continue
		}
		sets = append(sets, set{f, v})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return func(c *Config) {
		cv := reflect.ValueOf(c).Elem()
		for _, s := range sets {
			cv.FieldByIndex(s.f.index).Set(s.v)
			c.markSet(s.f.path)
		}
	}, nil
}

func parseValue(t reflect.Type, raw string) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	switch {
	case t == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(raw)
		if err != nil {
			return v, err
		}
		v.SetInt(int64(d))
	case t.Kind() == reflect.String:
		v.SetString(raw)
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return v, err
		}
		v.SetBool(b)
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return v, err
		}
		v.SetInt(n)
	case t.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return v, err
		}
		v.SetFloat(f)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return v, fmt.Errorf("type %s cannot be set from the environment", t)
	}
	return v, nil
}

// YAML renders c as the configuration file it amounts to, in field order,
// durations as "10s"; print it Redacted.
func (c Config) YAML() ([]byte, error) {
	n, err := yamlNode(reflect.ValueOf(c))
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(n)
}

func yamlNode(v reflect.Value) (*yaml.Node, error) {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return &yaml.Node{Kind: yaml.ScalarNode, Value: time.Duration(v.Int()).String()}, nil
	}
	if v.Kind() != reflect.Struct {
		n := &yaml.Node{}
		return n, n.Encode(v.Interface())
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		child, err := yamlNode(v.Field(i))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, child)
	}
	return m, nil
}

// Redacted returns c with its inline secrets replaced, for printing: the
// only one is kafka.sasl.password (the other secret settings name an
// environment variable or a file, not the secret).
func (c Config) Redacted() Config {
	if c.Kafka.SASL.Password != "" {
		c.Kafka.SASL.Password = "REDACTED"
	}
	return c
}
