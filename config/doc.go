// Package config is sagabridge's configuration: the types of the bridge's
// YAML file (shared by cmd/bridge, cmd/worker and `bridge dlq`), their
// defaults, the SAGABRIDGE_* environment, and validation.
//
// Precedence, lowest first: the defaults, the file, the environment, the
// overrides (command-line flags). Every default is applied in one place,
// Config.WithDefaults (defaults.go); a zero the file or the environment sets
// on purpose is kept. Every validation error is a *FieldError that names the
// field by its YAML path ("routes[1].workflow_id"). docs/CONFIG.md is
// generated from the doc comments here (configdoc_test.go).
//
// This package only describes and checks a configuration; it opens no
// connection. It must not import the bridge engine (package bridge),
// internal/connect, or the Temporal SDK's client; package connect turns a
// Config into Kafka and Temporal client settings.
package config
