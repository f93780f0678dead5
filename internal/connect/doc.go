// Package connect turns a configuration (package config) into the settings
// of real clients: sarama configurations for the consumer group and the
// DLQ and transactional producers, TLS and SASL, Temporal client options
// (TLS, API key, payload encryption) and the tracing interceptor.
//
// It builds settings and wraps connection errors; it dials nothing itself
// and holds no state. It must not import the bridge engine (package bridge)
// or anything that runs workflows.
package connect
