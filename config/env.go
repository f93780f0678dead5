package config

import (
	"regexp"
	"slices"

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

// toolEnv reports whether name is a SAGABRIDGE_* variable that the
// development tools and tests read (devstack, the e2e tests, the docs
// generator), not configuration: FromEnv lets those be.
func toolEnv(name string) bool {
	switch name {
	case "SAGABRIDGE_TEMPORAL", "SAGABRIDGE_SEED", "SAGABRIDGE_UPDATE_DOCS", "SAGABRIDGE_RECORD_HISTORIES":
		return true
	}
	return false
}

// serviceLinkRE matches the variables Kubernetes gives a pod for each
// Service of its namespace (service links, on unless a pod sets
// enableServiceLinks: false): FOO_SERVICE_HOST, FOO_SERVICE_PORT,
// FOO_SERVICE_PORT_<port name>, FOO_PORT and FOO_PORT_<n>_<protocol> with
// _PROTO, _PORT or _ADDR, for a Service foo.
var serviceLinkRE = regexp.MustCompile(`^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`)

// serviceLinkEnv reports whether name has the shape of a Kubernetes
// service-link variable: a Service named sagabridge-* (the manifests'
// sagabridge-bridge-metrics) gives every pod of its namespace
// SAGABRIDGE_* variables, and refusing them kept the bridge and the
// worker from starting there. No configuration variable has that shape.
func serviceLinkEnv(name string) bool { return serviceLinkRE.MatchString(name) }

// FromEnv reads the SAGABRIDGE_* variables of environ (os.Environ(),
// "NAME=value") and returns the Override that applies them. It fails,
// naming the variable and the field, on a value that does not parse. A
// SAGABRIDGE_* variable that names no field is refused too, naming the
// closest one (a misspelled SAGABRIDGE_KAFKA_BROKERZ would otherwise be
// ignored in silence), when the configuration is loaded: unless a *_env
// field (kafka.sasl.password_env, temporal.api_key_env, ...) names it, it
// is one the development tools read, or it has the shape of a variable
// Kubernetes sets for a Service (SAGABRIDGE_BRIDGE_METRICS_SERVICE_HOST).
func FromEnv(environ []string) (Override, error) {
	vars := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			vars[k] = v
		}
	}
	type set struct {
		f configField
		v reflect.Value
	}
	var sets []set
	var errs []error
	known := map[string]bool{}
	for _, f := range configFields() {
		known[f.env] = true
		raw, ok := vars[f.env]
		if !ok {
			continue
		}
		if strings.TrimSpace(raw) == "" {
			// It says nothing: taken as set, it would replace the file's
			// value with the default (an empty codec key_env turns the
			// payload encryption off).
			errs = append(errs, fmt.Errorf("%s (%s): set but empty; unset it to keep the file's value or the default", f.env, f.path))
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
	var unknown []string
	for k := range vars {
		if !known[k] && !toolEnv(k) && !serviceLinkEnv(k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	return func(c *Config) {
		cv := reflect.ValueOf(c).Elem()
		for _, s := range sets {
			cv.FieldByIndex(s.f.index).Set(s.v)
			c.markSet(s.f.path)
		}
		c.envUnknown = unknown
	}, nil
}

// checkEnv refuses the SAGABRIDGE_* variables that name no field
// (Config.envUnknown), unless a *_env field of c names them.
func (c Config) checkEnv() error {
	named := map[string]bool{
		c.Kafka.SASL.PasswordEnv: true, c.Temporal.APIKeyEnv: true, c.Temporal.Codec.KeyEnv: true,
	}
	for _, k := range c.Temporal.Codec.DecryptKeys {
		if _, ref, ok := strings.Cut(k, "=env:"); ok {
			named[ref] = true
		}
	}
	var errs []error
	fieldOf := map[string]string{}
	for _, f := range configFields() {
		fieldOf[f.env] = f.path
	}
	for field, name := range map[string]string{
		"kafka.sasl.password_env": c.Kafka.SASL.PasswordEnv, "temporal.api_key_env": c.Temporal.APIKeyEnv, "temporal.codec.key_env": c.Temporal.Codec.KeyEnv,
	} {
		if path, ok := fieldOf[name]; ok {
			errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(
				"%s is the variable of %s itself (it would set both): name another variable here, or drop %s and set %s alone", name, path, field, name)})
		}
	}
	for _, name := range c.envUnknown {
		if named[name] {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: not a configuration variable%s", name, closestEnv(name)))
	}
	return errors.Join(errs...)
}

// closestEnv names the configuration variable closest to name, if one is close.
func closestEnv(name string) string {
	byName := map[string]configField{}
	var names []string
	for _, f := range configFields() {
		n := strings.TrimPrefix(f.env, EnvPrefix)
		byName[n] = f
		names = append(names, n)
	}
	best, ok := closest(strings.TrimPrefix(name, EnvPrefix), names)
	if !ok {
		return " (see docs/CONFIG.md for the variables)"
	}
	return fmt.Sprintf("; did you mean %s (%s)?", byName[best].env, byName[best].path)
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
		parts := strings.Split(raw, ",")
		for i, s := range parts {
			if s = strings.TrimSpace(s); s == "" {
				if i == len(parts)-1 && i > 0 {
					break // a trailing comma, as YAML's flow lists take
				}
				return v, fmt.Errorf("item %d of the list is empty", i+1)
			}
			items = append(items, s)
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
