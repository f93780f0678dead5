package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// Override changes a decoded configuration before defaults are filled and
// it is validated, for example to apply command-line flags.
type Override func(*Config)

// Load reads the YAML file at path, applies the overrides, fills the
// defaults and validates the result. Unknown fields are errors. Every
// error names the file and the field.
func Load(path string, overrides ...Override) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data, overrides...)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads YAML, applies the overrides, fills the defaults and
// validates the result.
func Parse(data []byte, overrides ...Override) (Config, error) {
	cfg, err := decode(data, overrides)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// decode reads YAML (unknown fields are errors; an empty document sets
// nothing), applies overrides, then fills what is still unset.
func decode(data []byte, overrides []Override) (Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	if errs := unknownFields(&doc); len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // the backstop for what unknownFields does not walk
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	// One document: a second (after "---") would be read by no one, its
	// settings silently dropped.
	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Config{}, fmt.Errorf("parse: %w", err)
		}
		if c := more.Content; len(c) > 0 && (c[0].Tag != "!!null" || c[0].Value != "") { // a trailing "---" is an empty document
			return Config{}, fmt.Errorf("parse: a second YAML document (after \"---\", its content from line %d) would be ignored: keep the whole configuration in one document", c[0].Line)
		}
	}
	cfg.set = map[string]bool{}
	markPaths(&doc, "", cfg.set)
	for _, o := range overrides {
		o(&cfg)
	}
	if err := cfg.checkEnv(); err != nil {
		return Config{}, err
	}
	if errs := cfg.emptyDefaulted(); len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg.WithDefaults(), nil
}

// emptyDefaulted reports every text field with a default that the file
// names with an empty value ("", as a template renders a missing value):
// it would take the default silently, another namespace say.
func (c Config) emptyDefaulted() []error {
	var errs []error
	empty := func(path, value string) {
		if value == "" && c.set[path] {
			errs = append(errs, &FieldError{Field: path, Msg: "is empty: remove the key to take the default, or give a value"})
		}
	}
	cv := reflect.ValueOf(&c).Elem()
	for _, d := range defaults() {
		if f := cv.FieldByIndex(fieldIndex(d.path)); f.Kind() == reflect.String {
			empty(d.path, f.String())
		}
	}
	for i, r := range c.Routes {
		empty(fmt.Sprintf("routes[%d].payload", i), r.Payload)
		empty(fmt.Sprintf("routes[%d].signal", i), r.Signal)
	}
	return errs
}

// markPaths records the dotted path of every key the document sets, with
// list items indexed: "dispatch.concurrency", "routes[1].concurrency".
func markPaths(n *yaml.Node, prefix string, set map[string]bool) {
	switch n.Kind {
	case yaml.SequenceNode:
		for i, c := range n.Content {
			markPaths(c, fmt.Sprintf("%s[%d]", prefix, i), set)
		}
	case yaml.AliasNode:
		markPaths(n.Alias, prefix, set)
	case yaml.DocumentNode:
		for _, c := range n.Content {
			markPaths(c, prefix, set)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			path := n.Content[i].Value
			if prefix != "" {
				path = prefix + "." + path
			}
			set[path] = true
			markPaths(n.Content[i+1], path, set)
		}
	}
}

// markSet records that path was set explicitly.
func (c *Config) markSet(path string) {
	if c.set == nil {
		c.set = map[string]bool{}
	}
	c.set[path] = true
}

// Connections are the kafka, temporal and dlq sections of a bridge
// configuration file: what cmd/worker needs to reach the same cluster
// with the same security and payload encryption, and to write its dead
// letters where the bridge writes its own.
type Connections struct {
	Kafka    Kafka
	Temporal Temporal
	// DLQ is the dlq section: its suffix and max_message_bytes say where
	// and how large a worker's dead letters (activities.DeadLetterer) are
	// written, as the bridge's are; its transactional settings are the
	// bridge's alone.
	DLQ DLQ
}

// LoadCodec reads the temporal section of the bridge configuration at
// path for the codec server (bridge codec-server): the namespace and the
// codec (temporal.codec), the only fields it uses and checks. The bridge's
// own secrets (its Kafka password, its Temporal API key, TLS files) need
// not be there where an operator runs it. Errors name the file and the
// field.
func LoadCodec(path string, overrides ...Override) (Temporal, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Temporal{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := decode(data, overrides)
	if err != nil {
		return Temporal{}, fmt.Errorf("config %s: %w", path, err)
	}
	var errs []error
	cfg.Temporal.Codec.validate(func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	})
	if err := errors.Join(errs...); err != nil {
		return Temporal{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg.Temporal, nil
}

// LoadConnections reads the kafka, temporal and dlq sections of the bridge
// configuration at path (the other sections are parsed, so unknown fields
// are still errors, but not required), applies overrides (flags), fills the
// defaults and checks them. An empty path reads no file: the defaults and
// the overrides. Errors name the file and the field.
func LoadConnections(path string, overrides ...Override) (Connections, error) {
	name, data := "flags", []byte(nil)
	if path != "" {
		name = path
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return Connections{}, fmt.Errorf("read config: %w", err)
		}
	}
	cfg, err := decode(data, overrides)
	if err != nil {
		return Connections{}, fmt.Errorf("config %s: %w", name, err)
	}
	var errs []error
	cfg.validateConnections(func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	})
	if err := errors.Join(errs...); err != nil {
		return Connections{}, fmt.Errorf("config %s: %w", name, err)
	}
	return Connections{Kafka: cfg.Kafka, Temporal: cfg.Temporal, DLQ: cfg.DLQ}, nil
}

// LoadForKafkaTools reads the bridge configuration at path for the tools
// that talk to Kafka only (bridge offsets, bridge dlq): the whole file is
// parsed (unknown fields are still errors) and the defaults filled, but
// only the kafka section (how to reach it and how the group reads) and the
// DLQ's topic settings are checked. The
// temporal section, and the files and variables its secrets name, are
// not: an operator runs the tools where those are not mounted. The routes
// come back as written (the offsets tool reads their topics). Errors name
// the file and the field.
func LoadForKafkaTools(path string, overrides ...Override) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := decode(data, overrides)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	cfg.validateKafkaConnection(bad)
	cfg.validateGroupReading(bad)
	cfg.validateDLQWrites(bad)
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}
